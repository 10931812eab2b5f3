import { IsOptional, IsString, Matches, MaxLength } from 'class-validator';
import { z } from 'zod';
import { apiView, timestamp, typedSchema } from '../common/api-responses';
import { PageQuery } from '../common/pagination';
import { Optional } from '../common/validation';
import { StoredAuditEvent, VerifyResult } from './audit-chain';

export class AuditListQuery extends PageQuery {
  @IsOptional() @IsString() @MaxLength(100) @Matches(/^[a-z_.]+$/) type?: string;
  @IsOptional() @IsString() @MaxLength(100) @Matches(/^[a-z_]+$/) subjectType?: string;
  @IsOptional() @IsString() @MaxLength(200) subjectId?: string;
  @IsOptional() @IsString() @MaxLength(200) actorId?: string;
}

/** `?headSeq=&headHash=` from an earlier verify, kept outside the database: proves nothing was cut off since. */
export class VerifyQuery {
  @Optional() @IsString() @Matches(/^\d{1,18}$/, { message: 'headSeq must be a decimal sequence number' }) headSeq?: string;
  @Optional() @IsString() @Matches(/^[0-9a-f]{64}$/, { message: 'headHash must be 64 hex characters' }) headHash?: string;
}

export const AuditEventView = apiView(
  'AuditEventView',
  z.object({
    id: z.string().describe('The event id (a decimal sequence, as a string).'),
    at: timestamp(),
    type: z.string().describe('e.g. `checkout.approved`, `account.rotated`.'),
    actorId: z.string().nullable().describe('The user or service token that acted; null for the vault itself.'),
    subjectType: z.string(),
    subjectId: z.string().nullable(),
    outcome: z.string(),
    details: z.record(z.string(), z.unknown()).describe('What happened, by event type; never a secret.'),
    sealed: z.boolean().describe('Whether the event is in the hash chain yet (sealed events are what verify checks).'),
  }),
);
export type AuditEventView = z.output<typeof AuditEventView>;

/** `GET /v1/audit-events/verify` (src/audit/audit-chain.ts defines the result; the compiler keeps this schema equal to it). */
export const AuditVerifyView = apiView(
  'AuditVerifyView',
  typedSchema<VerifyResult>()(
    z.union([
      z.object({ ok: z.literal(true), count: z.number().int(), headSeq: z.string(), headHash: z.string().describe('Keep it (with headSeq) outside the vault to prove later that nothing was cut off.') }),
      z.object({ ok: z.literal(false), firstInvalidId: z.string().nullable(), reason: z.string() }),
    ]),
  ),
);

export function mapAuditEvent(e: StoredAuditEvent): AuditEventView {
  return {
    id: e.id,
    at: new Date(e.at).toISOString(),
    type: e.type,
    actorId: e.actorId,
    subjectType: e.subjectType,
    subjectId: e.subjectId,
    outcome: e.outcome,
    details: e.details,
    sealed: e.seq !== null,
  };
}

import { IsIn, IsOptional, IsUUID } from 'class-validator';
import { z } from 'zod';
import { apiView, timestamp, uuid } from '../../common/api-responses';
import { PageQuery } from '../../common/pagination';
import type { RecordingRow } from './recording-store';
import { RECORDING_STATUSES } from './recording-store';
import type { GatewaySessionRow } from './sessions-query';

/** `GET /v1/sessions` filters (operators and vendors see their own sessions whatever they ask). */
export class SessionListQuery extends PageQuery {
  @IsOptional() @IsUUID() userId?: string;
  @IsOptional() @IsUUID() targetId?: string;
  @IsOptional() @IsUUID() checkoutId?: string;
  @IsOptional() @IsUUID() ephemeralId?: string;
  /** `true`: sessions still open; `false`: ended ones. */
  @IsOptional() @IsIn(['true', 'false']) live?: 'true' | 'false';
}

/** Inline in SessionView (a named component cannot be nullable in OpenAPI 3.0). */
export const RecordingView = z
  .object({
    status: z.enum(RECORDING_STATUSES).describe('`recording` while the session runs, `complete` once sealed, `failed` when it could not be written (the session was ended).'),
    format: z.literal('asciicast-v2'),
    size: z.number().int().describe('Bytes of the asciicast file stored (the sealed size once complete).'),
    sha256: z.string().nullable().describe('SHA-256 (hex) of the asciicast file, once complete; the `gateway.session_ended` audit event carries it too.'),
    chunks: z.number().int(),
    recordInput: z.boolean().describe('Whether what the user typed is recorded (account policy `recordInput`).'),
    width: z.number().int(),
    height: z.number().int(),
    endedAt: timestamp().nullable(),
    failure: z.string().nullable().describe('Why the recording failed (never recorded text).'),
  })
  .describe("A gateway session's recording (asciicast v2, stored encrypted in chunks); null when it has none.");
export type RecordingView = z.output<typeof RecordingView>;

export const SessionView = apiView(
  'SessionView',
  z.object({
    id: uuid(),
    userId: uuid().describe('Who connected.'),
    checkoutId: uuid().nullable(),
    ephemeralId: uuid().nullable().describe('The one-time account, for a vendor session.'),
    targetId: uuid(),
    account: z.string().describe('The account (user name) on the target.'),
    clientAddress: z.string().nullable(),
    startedAt: timestamp(),
    endedAt: timestamp().nullable(),
    endReason: z.string().nullable().describe('client_closed, upstream_closed, checked_in, expired, revoked, terminated, recording_failed, shutdown or error.'),
    endRequestedAt: timestamp().nullable().describe('An admin asked to terminate it (it ends within about a second).'),
    live: z.boolean().describe('Not ended yet.'),
    recording: RecordingView.nullable(),
  }),
  'A session brokered by the SSH gateway.',
);
export type SessionView = z.output<typeof SessionView>;

export const RecordingVerifyView = apiView(
  'RecordingVerifyView',
  z.object({
    ok: z.boolean().describe('The stored chunks decrypt, and hash to what the audit chain vouches for.'),
    computedSha256: z.string().nullable().describe('SHA-256 of the stored chunks, decrypted now (null when there is no recording).'),
    storedSha256: z.string().nullable().describe("The hash sealed on the recording's row."),
    auditedSha256: z.string().nullable().describe('The hash in the `gateway.session_ended` audit event.'),
    computedSize: z.number().int().nullable(),
    auditEventId: z.string().nullable().describe('The `gateway.session_ended` event (see /v1/audit-events/{id}).'),
    problems: z.array(z.string()).describe('What does not match, in words; empty when ok.'),
  }),
  "A recording checked against the hash in its session's closing audit event (and that event against the chain).",
);
export type RecordingVerifyView = z.output<typeof RecordingVerifyView>;

const iso = (d: Date | string | null) => (d === null ? null : new Date(d).toISOString());

export function mapRecording(r: RecordingRow): RecordingView {
  return {
    status: r.status,
    format: 'asciicast-v2',
    size: Number(r.size),
    sha256: r.sha256,
    chunks: r.chunkCount,
    recordInput: r.recordInput,
    width: r.width,
    height: r.height,
    endedAt: iso(r.endedAt),
    failure: r.failure,
  };
}

export function mapSession(s: GatewaySessionRow, r: RecordingRow | null): SessionView {
  return {
    id: s.id,
    userId: s.userId,
    checkoutId: s.checkoutId,
    ephemeralId: s.ephemeralId,
    targetId: s.targetId,
    account: s.account,
    clientAddress: s.clientAddress,
    startedAt: new Date(s.startedAt).toISOString(),
    endedAt: iso(s.endedAt),
    endReason: s.endReason,
    endRequestedAt: iso(s.endRequestedAt),
    live: s.endedAt === null,
    recording: r ? mapRecording(r) : null,
  };
}

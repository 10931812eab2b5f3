import { Type } from 'class-transformer';
import { IsIn, IsInt, IsObject, IsOptional, IsString, IsUUID, Matches, Max, MaxLength, Min, MinLength, ValidateNested } from 'class-validator';
import { z } from 'zod';
import { mapApprovals } from '../approvals/approvals';
import { ApprovalViewSchema } from '../approvals/approvals.dto';
import { apiView, timestamp, typedSchema, uuid } from '../common/api-responses';
import { PageQuery } from '../common/pagination';
import { READABLE_TEXT, READABLE_TEXT_MESSAGE } from '../common/text';
import { Optional } from '../common/validation';
import type { EphemeralAccess } from '../connectors/connector.interface';
import { EphemeralAccessDto, EphemeralPolicy } from './ephemeral-policy';
import { EPHEMERAL_STATUSES } from './ephemeral-states';
import { EphemeralAccountEntity, EphemeralApprovalEntity, EphemeralStatus } from './ephemeral.entity';

const WEEK = 7 * 24 * 3600;
/** Free text for people: printable, newlines and tabs allowed, no other control characters. */
const TEXT = READABLE_TEXT;

export class CreateEphemeralDto {
  @IsUUID() targetId: string;
  /** The user (role vendor) who will claim it. */
  @IsUUID() vendorUserId: string;
  /** The account's lifetime from the claim, at most the target's ephemeral policy maxTtlSeconds. */
  @IsInt() @Min(60) @Max(WEEK) ttlSeconds: number;
  @IsString() @MinLength(3) @MaxLength(1000) @Matches(TEXT, { message: `justification ${READABLE_TEXT_MESSAGE}` }) justification: string;
  @Optional() @IsObject() @ValidateNested() @Type(() => EphemeralAccessDto) access?: EphemeralAccessDto;
}

export class EphemeralListQuery extends PageQuery {
  @IsOptional() @IsIn(EPHEMERAL_STATUSES) status?: EphemeralStatus;
  @IsOptional() @IsUUID() targetId?: string;
  @IsOptional() @IsUUID() vendorId?: string;
}

export const ClaimView = apiView(
  'ClaimView',
  z.object({
    id: uuid(),
    username: z.string(),
    password: z.string().optional().describe("Absent when the target's ephemeral policy is brokered only: connect through the SSH gateway."),
    host: z.string(),
    port: z.number().int(),
    expiresAt: timestamp(),
    brokeredOnly: z.boolean(),
  }),
  "The one answer that carries the password: the vendor's claim (none when brokered only).",
);
export type ClaimView = z.output<typeof ClaimView>;

const grants = () => z.array(z.object({ privileges: z.array(z.string()), on: z.string().describe('db.table (either may be *)') }));

/** What a one-time account may do (src/connectors/connector.interface.ts; the compiler keeps this schema equal to it). */
const EphemeralAccessView = apiView(
  'EphemeralAccess',
  typedSchema<EphemeralAccess>()(
    z.object({
      groups: z.array(z.string()).optional().describe('SSH: supplementary groups.'),
      database: z.string().optional().describe('PostgreSQL: database to grant CONNECT on.'),
      grantRoles: z.array(z.string()).optional().describe('PostgreSQL: roles to grant.'),
      grants: grants().optional().describe('MySQL: GRANT statements.'),
    }),
  ),
);

/** A target's ephemeral policy (src/ephemeral/ephemeral-policy.ts; the compiler keeps this schema equal to it). */
export const EphemeralPolicyView = apiView(
  'EphemeralPolicy',
  typedSchema<EphemeralPolicy>()(
    z.object({
      approvalsRequired: z.number().int(),
      maxTtlSeconds: z.number().int(),
      allowedGroups: z.array(z.string()).describe('SSH: supplementary groups that may be given.'),
      allowedDatabases: z.array(z.string()).describe('PostgreSQL: databases CONNECT may be granted on.'),
      allowedRoles: z.array(z.string()).describe('PostgreSQL: roles that may be granted.'),
      allowedGrants: grants().describe('MySQL: grants that may be given (a request\'s grant must be covered by one with the same `on`).'),
      brokeredOnly: z.boolean().describe('SSH: the claim answers no password; the vendor connects through the gateway only.'),
      allowPortForwarding: z.boolean().describe('SSH: gateway sessions may forward local ports (direct-tcpip).'),
      recordInput: z.boolean().describe('SSH: gateway recordings keep what the user typed too.'),
    }),
  ),
);

export const EphemeralView = apiView(
  'EphemeralView',
  z.object({
    id: uuid(),
    targetId: uuid(),
    vendorId: uuid(),
    vendorName: z.string().nullable().describe("The vendor's username (null if the user was removed)."),
    requesterId: uuid(),
    requesterName: z.string().nullable().describe("The requester's username (null if the user was removed)."),
    status: z.enum(EPHEMERAL_STATUSES),
    justification: z.string(),
    ttlSeconds: z.number().int(),
    access: EphemeralAccessView,
    approvalsRequired: z.number().int(),
    approvals: z.array(ApprovalViewSchema),
    requestDigest: z.string(),
    requestedAt: timestamp(),
    requestDeadline: timestamp(),
    username: z.string().nullable(),
    claimedAt: timestamp().nullable(),
    expiresAt: timestamp().nullable(),
    endedAt: timestamp().nullable(),
    endedBy: z.string().nullable(),
    endReason: z.enum(['revoked', 'expired', 'request_timeout', 'denied', 'reaped', 'create_failed']).nullable(),
    removalAttempts: z.number().int(),
    lastError: z.string().nullable(),
  }),
  'A one-time account; never contains a password (the vault keeps it, encrypted, only while the account is active, for the SSH gateway).',
);
export type EphemeralView = z.output<typeof EphemeralView>;

const iso = (d: Date | null) => (d ? d.toISOString() : null);

export function mapEphemeral(e: EphemeralAccountEntity, approvals: EphemeralApprovalEntity[], requestDigest: string, names: ReadonlyMap<string, string>): EphemeralView {
  return {
    id: e.id,
    targetId: e.targetId,
    vendorId: e.vendorId,
    vendorName: names.get(e.vendorId) ?? null,
    requesterId: e.requesterId,
    requesterName: names.get(e.requesterId) ?? null,
    status: e.status,
    justification: e.justification,
    ttlSeconds: e.ttlSeconds,
    access: e.access,
    approvalsRequired: e.approvalsRequired,
    approvals: mapApprovals(approvals, requestDigest),
    requestDigest,
    requestedAt: e.requestedAt.toISOString(),
    requestDeadline: e.requestDeadline.toISOString(),
    username: e.username,
    claimedAt: iso(e.claimedAt),
    expiresAt: iso(e.expiresAt),
    endedAt: iso(e.endedAt),
    endedBy: e.endedBy,
    endReason: e.endReason,
    removalAttempts: e.attempts,
    lastError: e.lastError,
  };
}

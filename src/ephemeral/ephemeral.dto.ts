import { Type } from 'class-transformer';
import { IsIn, IsInt, IsObject, IsOptional, IsString, IsUUID, Matches, Max, MaxLength, Min, MinLength, ValidateNested } from 'class-validator';
import { ApprovalView, mapApprovals } from '../approvals/approvals';
import { PageQuery } from '../common/pagination';
import { READABLE_TEXT, READABLE_TEXT_MESSAGE } from '../common/text';
import { Optional } from '../common/validation';
import type { EphemeralAccess } from '../connectors/connector.interface';
import { EphemeralAccessDto } from './ephemeral-policy';
import { EPHEMERAL_STATUSES } from './ephemeral-states';
import { EphemeralAccountEntity, EphemeralApprovalEntity, EphemeralEndReason, EphemeralStatus } from './ephemeral.entity';

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

/** The one answer that carries the password: the vendor's claim. */
export interface ClaimView {
  id: string;
  username: string;
  password: string;
  host: string;
  port: number;
  expiresAt: string;
}

/** Never contains a password (the vault does not keep one). */
export interface EphemeralView {
  id: string;
  targetId: string;
  vendorId: string;
  requesterId: string;
  status: EphemeralStatus;
  justification: string;
  ttlSeconds: number;
  access: EphemeralAccess;
  approvalsRequired: number;
  approvals: ApprovalView[];
  requestDigest: string;
  requestedAt: string;
  requestDeadline: string;
  username: string | null;
  claimedAt: string | null;
  expiresAt: string | null;
  endedAt: string | null;
  endedBy: string | null;
  endReason: EphemeralEndReason | null;
  removalAttempts: number;
  lastError: string | null;
}

const iso = (d: Date | null) => (d ? d.toISOString() : null);

export function mapEphemeral(e: EphemeralAccountEntity, approvals: EphemeralApprovalEntity[], requestDigest: string): EphemeralView {
  return {
    id: e.id,
    targetId: e.targetId,
    vendorId: e.vendorId,
    requesterId: e.requesterId,
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

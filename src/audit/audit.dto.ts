import { IsOptional, IsString, Matches, MaxLength } from 'class-validator';
import { PageQuery } from '../common/pagination';
import { Optional } from '../common/validation';
import { StoredAuditEvent } from './audit-chain';

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

export interface AuditEventView {
  id: string;
  at: string;
  type: string;
  actorId: string | null;
  subjectType: string;
  subjectId: string | null;
  outcome: string;
  details: Record<string, unknown>;
  sealed: boolean;
}

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

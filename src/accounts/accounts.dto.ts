import { Type } from 'class-transformer';
import { IsIn, IsObject, IsOptional, IsString, IsUUID, Matches, MaxLength, MinLength, ValidateNested } from 'class-validator';
import { PageQuery } from '../common/pagination';
import { Optional } from '../common/validation';
import { AccountEntity, AccountStatus } from './account.entity';
import { AccountPolicy, effectivePolicy, PolicyDto } from './policy';

const STATUSES: AccountStatus[] = ['available', 'checked_out', 'rotating', 'needs_attention'];

export class CreateAccountDto {
  @IsUUID() targetId: string;
  /** Checked against the target type's strict pattern by the service. */
  @IsString() @MinLength(1) @MaxLength(63) username: string;
  @Optional() @IsString() @MinLength(1) @MaxLength(1024) @Matches(/^[^\u0000-\u001f\u007f]*$/, { message: 'password must not contain control characters' }) password?: string;
  @Optional() @IsObject() @ValidateNested() @Type(() => PolicyDto) policy?: PolicyDto;
}

export class UpdateAccountDto {
  @Optional() @IsObject() @ValidateNested() @Type(() => PolicyDto) policy?: PolicyDto;
}

export class AccountListQuery extends PageQuery {
  @IsOptional() @IsUUID() targetId?: string;
  @IsOptional() @IsIn(STATUSES) status?: AccountStatus;
}

/** Never contains the password. */
export interface AccountView {
  id: string;
  targetId: string;
  username: string;
  status: AccountStatus;
  lastRotatedAt: string | null;
  nextRotationAt: string | null;
  policy: AccountPolicy;
  createdAt: string;
  updatedAt: string;
}

export function mapAccount(a: AccountEntity): AccountView {
  return {
    id: a.id,
    targetId: a.targetId,
    username: a.username,
    status: a.status,
    lastRotatedAt: a.lastRotatedAt ? a.lastRotatedAt.toISOString() : null,
    nextRotationAt: a.nextRotationAt ? a.nextRotationAt.toISOString() : null,
    policy: effectivePolicy(a.policy),
    createdAt: a.createdAt.toISOString(),
    updatedAt: a.updatedAt.toISOString(),
  };
}

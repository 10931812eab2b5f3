import { Type } from 'class-transformer';
import { IsIn, IsObject, IsOptional, IsString, IsUUID, Matches, MaxLength, MinLength, ValidateNested } from 'class-validator';
import { PageQuery } from '../common/pagination';
import { Optional } from '../common/validation';
import { Account } from '../accounts/account-store';
import { ACCOUNT_STATUSES, AccountStatus } from '../accounts/account-states';
import { AccountPolicy, PolicyDto } from '../accounts/policy';

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
  @IsOptional() @IsIn(ACCOUNT_STATUSES) status?: AccountStatus;
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

/** The API view of a row (the store's rows carry the effective policy). */
export function mapAccount(a: Account): AccountView {
  return {
    id: a.id,
    targetId: a.targetId,
    username: a.username,
    status: a.status,
    lastRotatedAt: a.lastRotatedAt ? a.lastRotatedAt.toISOString() : null,
    nextRotationAt: a.nextRotationAt ? a.nextRotationAt.toISOString() : null,
    policy: a.policy,
    createdAt: a.createdAt.toISOString(),
    updatedAt: a.updatedAt.toISOString(),
  };
}

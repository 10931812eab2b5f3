import { Type } from 'class-transformer';
import { IsIn, IsObject, IsOptional, IsString, IsUUID, Matches, MaxLength, MinLength, ValidateNested } from 'class-validator';
import { z } from 'zod';
import { apiView, timestamp, typedSchema, uuid } from '../common/api-responses';
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

/** The effective policy of an account (src/accounts/policy.ts defines it; the compiler keeps this schema equal to it). */
export const AccountPolicyView = apiView(
  'AccountPolicy',
  typedSchema<AccountPolicy>()(
    z.object({
      checkoutTtlSeconds: z.number().int(),
      maxCheckoutTtlSeconds: z.number().int(),
      approvalsRequired: z.number().int(),
      rotateAfterCheckin: z.boolean(),
      rotationIntervalSeconds: z.number().int(),
      passwordLength: z.number().int(),
      passwordClasses: z.array(z.enum(['lower', 'upper', 'digit', 'symbol'])),
      breakGlassAllowed: z.boolean(),
      breakGlassTtlSeconds: z.number().int(),
      brokeredOnly: z.boolean().describe('The password never leaves the vault: SSH through the gateway only (no credential at checkout, no reveal).'),
      allowPortForwarding: z.boolean().describe('Gateway sessions may forward local ports (direct-tcpip).'),
      recordInput: z.boolean().describe('Gateway recordings keep what the user typed too.'),
      requireWebauthn: z.boolean().describe('Checkout, reveal and extend need a security key step-up (X-MFA-Assertion); a TOTP code is refused with 403 WEBAUTHN_REQUIRED.'),
    }),
  ),
);

export const AccountView = apiView(
  'AccountView',
  z.object({
    id: uuid(),
    targetId: uuid(),
    username: z.string(),
    status: z.enum(ACCOUNT_STATUSES),
    lastRotatedAt: timestamp().nullable(),
    nextRotationAt: timestamp().nullable(),
    policy: AccountPolicyView,
    createdAt: timestamp(),
    updatedAt: timestamp(),
  }),
  'An account in the vault; never contains the password.',
);
export type AccountView = z.output<typeof AccountView>;

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

import { ArrayMaxSize, ArrayMinSize, ArrayUnique, IsBoolean, IsIn, IsInt, Max, Min } from 'class-validator';
import { Errors } from '../common/errors';
import { Optional } from '../common/validation';
import { CharClass, PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH } from '../crypto/password-generator';

/**
 * An account's policy. The first five fields are the checkout and rotation rules; the password fields drive the
 * generator; the break-glass fields say whether an operator may skip approvals in an emergency, and for how long at most.
 */
export interface AccountPolicy {
  checkoutTtlSeconds: number;
  maxCheckoutTtlSeconds: number;
  approvalsRequired: number;
  rotateAfterCheckin: boolean;
  rotationIntervalSeconds: number;
  passwordLength: number;
  passwordClasses: CharClass[];
  breakGlassAllowed: boolean;
  breakGlassTtlSeconds: number;
  /** The password never leaves the vault: no credential in the checkout answer, no reveal; SSH through the gateway only. */
  brokeredOnly: boolean;
  /** Gateway sessions may open `direct-tcpip` channels (ssh -L); remote forwarding, agent and X11 are always refused. */
  allowPortForwarding: boolean;
  /** Gateway recordings also keep what the user typed (passwords typed into the session included). */
  recordInput: boolean;
  /** Checkout, reveal and extend need a security key (WebAuthn) step-up: a TOTP code is refused (403 WEBAUTHN_REQUIRED). */
  requireWebauthn: boolean;
}

export const DEFAULT_POLICY: AccountPolicy = {
  checkoutTtlSeconds: 3600,
  maxCheckoutTtlSeconds: 28800,
  approvalsRequired: 0,
  rotateAfterCheckin: true,
  rotationIntervalSeconds: 2592000,
  passwordLength: 32,
  passwordClasses: ['lower', 'upper', 'digit', 'symbol'],
  breakGlassAllowed: false,
  breakGlassTtlSeconds: 1800,
  brokeredOnly: false,
  allowPortForwarding: false,
  recordInput: false,
  requireWebauthn: false,
};

const WEEK = 7 * 24 * 3600;
const CLASSES: CharClass[] = ['lower', 'upper', 'digit', 'symbol'];

export class PolicyDto implements Partial<AccountPolicy> {
  @Optional() @IsInt() @Min(60) @Max(WEEK) checkoutTtlSeconds?: number;
  @Optional() @IsInt() @Min(60) @Max(WEEK) maxCheckoutTtlSeconds?: number;
  @Optional() @IsInt() @Min(0) @Max(10) approvalsRequired?: number;
  @Optional() @IsBoolean() rotateAfterCheckin?: boolean;
  @Optional() @IsInt() @Min(3600) @Max(366 * 24 * 3600) rotationIntervalSeconds?: number;
  @Optional() @IsInt() @Min(PASSWORD_MIN_LENGTH) @Max(PASSWORD_MAX_LENGTH) passwordLength?: number;
  @Optional() @ArrayMinSize(1) @ArrayMaxSize(4) @ArrayUnique() @IsIn(CLASSES, { each: true }) passwordClasses?: CharClass[];
  @Optional() @IsBoolean() breakGlassAllowed?: boolean;
  @Optional() @IsInt() @Min(60) @Max(WEEK) breakGlassTtlSeconds?: number;
  @Optional() @IsBoolean() brokeredOnly?: boolean;
  @Optional() @IsBoolean() allowPortForwarding?: boolean;
  @Optional() @IsBoolean() recordInput?: boolean;
  @Optional() @IsBoolean() requireWebauthn?: boolean;
}

/** A stored policy with the defaults of fields added since it was written (older rows lack them). */
export function effectivePolicy(stored: Partial<AccountPolicy>): AccountPolicy {
  return { ...DEFAULT_POLICY, ...stored };
}

/** The longest a checkout may last in total: a break-glass one never longer than an ordinary one. */
export function maxLeaseSeconds(policy: AccountPolicy, breakGlass: boolean): number {
  return breakGlass ? Math.min(policy.breakGlassTtlSeconds, policy.maxCheckoutTtlSeconds) : policy.maxCheckoutTtlSeconds;
}

/** Fills defaults over `base` and checks the rules that span fields. */
export function resolvePolicy(input: PolicyDto | undefined, base: AccountPolicy = DEFAULT_POLICY): AccountPolicy {
  const policy: AccountPolicy = effectivePolicy(base);
  for (const [k, v] of Object.entries(input ?? {})) {
    if (v !== undefined) (policy as unknown as Record<string, unknown>)[k] = v;
  }
  if (policy.checkoutTtlSeconds > policy.maxCheckoutTtlSeconds) {
    throw Errors.validation('policy.checkoutTtlSeconds must not exceed policy.maxCheckoutTtlSeconds');
  }
  if (policy.passwordLength < policy.passwordClasses.length) {
    throw Errors.validation('policy.passwordLength is shorter than the number of required character classes');
  }
  return policy;
}

/** When an account rotates next: `from` (its last rotation, or its creation) plus the policy's interval. */
export function nextRotationAt(policy: AccountPolicy, from: Date): Date {
  return new Date(from.getTime() + policy.rotationIntervalSeconds * 1000);
}

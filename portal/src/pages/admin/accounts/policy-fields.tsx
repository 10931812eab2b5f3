import type { AccountPolicy } from '../../../api/views';
import { Checkbox, CheckboxGroup, TextField } from '../shared/fields';

const CLASSES = ['lower', 'upper', 'digit', 'symbol'] as const;
type CharClass = (typeof CLASSES)[number];

/** An account policy as typed: lengths in minutes (checkouts) and days (rotation), which is how people think of them. */
export interface PolicyDraft {
  approvalsRequired: string;
  checkoutTtlMinutes: string;
  maxCheckoutTtlMinutes: string;
  rotateAfterCheckin: boolean;
  rotationIntervalDays: string;
  passwordLength: string;
  passwordClasses: CharClass[];
  breakGlassAllowed: boolean;
  breakGlassTtlMinutes: string;
  brokeredOnly: boolean;
  allowPortForwarding: boolean;
  recordInput: boolean;
  requireWebauthn: boolean;
}

/** An account policy as the API takes it (PolicyDto): the character classes are the generator's four. */
export type PolicyBody = Omit<AccountPolicy, 'passwordClasses'> & { passwordClasses: CharClass[] };

/** The vault's defaults (src/accounts/policy.ts DEFAULT_POLICY), the starting point of a new account. */
export const DEFAULT_POLICY: PolicyBody = {
  checkoutTtlSeconds: 3600,
  maxCheckoutTtlSeconds: 28800,
  approvalsRequired: 0,
  rotateAfterCheckin: true,
  rotationIntervalSeconds: 2592000,
  passwordLength: 32,
  passwordClasses: [...CLASSES],
  breakGlassAllowed: false,
  breakGlassTtlSeconds: 1800,
  brokeredOnly: false,
  allowPortForwarding: false,
  recordInput: false,
  requireWebauthn: false,
};

export function draftOf(p: AccountPolicy): PolicyDraft {
  return {
    approvalsRequired: String(p.approvalsRequired),
    checkoutTtlMinutes: String(p.checkoutTtlSeconds / 60),
    maxCheckoutTtlMinutes: String(p.maxCheckoutTtlSeconds / 60),
    rotateAfterCheckin: p.rotateAfterCheckin,
    rotationIntervalDays: String(p.rotationIntervalSeconds / 86400),
    passwordLength: String(p.passwordLength),
    passwordClasses: p.passwordClasses.filter((c): c is CharClass => (CLASSES as readonly string[]).includes(c)),
    breakGlassAllowed: p.breakGlassAllowed,
    breakGlassTtlMinutes: String(p.breakGlassTtlSeconds / 60),
    brokeredOnly: p.brokeredOnly,
    allowPortForwarding: p.allowPortForwarding,
    recordInput: p.recordInput,
    requireWebauthn: p.requireWebauthn,
  };
}

/** The API's policy from the draft; the vault checks the ranges and answers VALIDATION_FAILED naming the field. */
export function policyOf(d: PolicyDraft): PolicyBody {
  return {
    approvalsRequired: Number(d.approvalsRequired),
    checkoutTtlSeconds: Math.round(Number(d.checkoutTtlMinutes) * 60),
    maxCheckoutTtlSeconds: Math.round(Number(d.maxCheckoutTtlMinutes) * 60),
    rotateAfterCheckin: d.rotateAfterCheckin,
    rotationIntervalSeconds: Math.round(Number(d.rotationIntervalDays) * 86400),
    passwordLength: Number(d.passwordLength),
    passwordClasses: d.passwordClasses,
    breakGlassAllowed: d.breakGlassAllowed,
    breakGlassTtlSeconds: Math.round(Number(d.breakGlassTtlMinutes) * 60),
    brokeredOnly: d.brokeredOnly,
    allowPortForwarding: d.allowPortForwarding,
    recordInput: d.recordInput,
    requireWebauthn: d.requireWebauthn,
  };
}

/** The fields of an account policy (checkouts, approvals, rotation, generated passwords, break-glass). */
export function PolicyFields({ value, onChange }: { value: PolicyDraft; onChange(v: PolicyDraft): void }) {
  const set = <K extends keyof PolicyDraft>(k: K) => (v: PolicyDraft[K]) => onChange({ ...value, [k]: v });
  return (
    <fieldset className="stack">
      <legend>Checkout and rotation rules</legend>
      <div className="form-row">
        <TextField label="Approvals required" value={value.approvalsRequired} onChange={set('approvalsRequired')} inputMode="numeric" hint="0: checkouts start at once." />
        <TextField label="Checkout length (minutes)" value={value.checkoutTtlMinutes} onChange={set('checkoutTtlMinutes')} inputMode="numeric" />
        <TextField label="Longest checkout (minutes)" value={value.maxCheckoutTtlMinutes} onChange={set('maxCheckoutTtlMinutes')} inputMode="numeric" />
      </div>
      <Checkbox label="Rotate the password after every check-in" checked={value.rotateAfterCheckin} onChange={set('rotateAfterCheckin')} />
      <div className="form-row">
        <TextField label="Rotate at least every (days)" value={value.rotationIntervalDays} onChange={set('rotationIntervalDays')} inputMode="decimal" />
        <TextField label="Generated password length" value={value.passwordLength} onChange={set('passwordLength')} inputMode="numeric" />
      </div>
      <CheckboxGroup legend="Character classes in generated passwords" options={CLASSES} value={value.passwordClasses} onChange={set('passwordClasses')} />
      <Checkbox label="Allow break-glass checkouts (no approvals, reviewed afterwards)" checked={value.breakGlassAllowed} onChange={set('breakGlassAllowed')} />
      {value.breakGlassAllowed && <TextField label="Longest break-glass checkout (minutes)" value={value.breakGlassTtlMinutes} onChange={set('breakGlassTtlMinutes')} inputMode="numeric" />}
      <Checkbox label="Brokered only: the password never leaves the vault (SSH through the gateway, no reveal)" checked={value.brokeredOnly} onChange={set('brokeredOnly')} />
      <Checkbox label="Gateway sessions may forward local ports (ssh -L)" checked={value.allowPortForwarding} onChange={set('allowPortForwarding')} />
      <Checkbox label="Gateway recordings keep what the user types too" checked={value.recordInput} onChange={set('recordInput')} />
      <Checkbox label="Checkout, reveal and extend need a security key (an authenticator code is refused)" checked={value.requireWebauthn} onChange={set('requireWebauthn')} />
    </fieldset>
  );
}

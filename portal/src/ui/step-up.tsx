import { useEffect, useId, useRef, useState, type FormEvent, type ReactNode } from 'react';
import { SECURITY_KEY } from '../api/client';
import { ApiError } from '../api/errors';
import { canUseSecurityKeys } from '../api/webauthn';
import { useMe } from '../session';
import { ErrorMessage } from './errors';

const CODE = /^\d{6}$/;

/** The 6-digit authenticator code input every MFA action and the sign-in use (optional there, with a hint, until needed). */
export function MfaCodeField({
  value,
  onChange,
  label = 'Authenticator code',
  autoFocus,
  required = true,
  hint,
}: {
  value: string;
  onChange(v: string): void;
  label?: string;
  autoFocus?: boolean;
  required?: boolean;
  hint?: string;
}) {
  const id = useId();
  const hintId = useId();
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <input
        id={id}
        name="code"
        className="code-input"
        inputMode="numeric"
        autoComplete="one-time-code"
        pattern="\d{6}"
        maxLength={6}
        required={required}
        autoFocus={autoFocus}
        aria-describedby={hint ? hintId : undefined}
        value={value}
        onChange={(e) => onChange(e.target.value.replace(/\D/g, '').slice(0, 6))}
      />
      {hint && (
        <p id={hintId} className="hint">
          {hint}
        </p>
      )}
    </div>
  );
}

/**
 * How the signed-in person can confirm an action: a code from their authenticator app (TOTP) and/or one of their
 * security keys or passkeys (WebAuthn, when this browser can use one). Someone with neither yet is enrolling: a code.
 */
export function useMfaMethods(): { totp: boolean; securityKey: boolean } {
  const methods = useMe().mfaMethods;
  const securityKey = methods.includes('webauthn') && canUseSecurityKeys();
  return { totp: methods.includes('totp') || !securityKey, securityKey };
}

/** The submit button that confirms with a security key instead of the code (see {@link proofOf}). */
export function SecurityKeyButton({ primary, disabled, label = 'Use security key' }: { primary?: boolean; disabled?: boolean; label?: string }) {
  return (
    <button type="submit" data-proof={SECURITY_KEY} className={primary ? 'primary' : undefined} disabled={disabled}>
      {label}
    </button>
  );
}

/** The proof a form was submitted with: SECURITY_KEY when its {@link SecurityKeyButton} was pressed, else the code. */
export function proofOf(e: FormEvent, code: string): string {
  const submitter = (e.nativeEvent as SubmitEvent).submitter;
  return submitter instanceof HTMLElement && submitter.dataset.proof === SECURITY_KEY ? SECURITY_KEY : code;
}

/**
 * A button that asks for a fresh step-up code before it acts (the vault wants `X-MFA-Code` on every MFA action).
 * Clicking it opens a small inline form; the action gets the code, and a wrong or used code asks again. A person with a
 * security key may press "Use security key" instead: the action gets SECURITY_KEY, and `withMfa` has the request signed
 * (the vault binds the challenge to that request's method, path and body).
 * `children` are extra fields shown with the code (a comment, an extension).
 */
export function StepUpAction({
  label,
  confirmLabel,
  onConfirm,
  children,
  danger,
  disabled,
}: {
  label: string;
  /** The submit button's text (defaults to label). */
  confirmLabel?: string;
  onConfirm(code: string): Promise<unknown>;
  children?: ReactNode;
  danger?: boolean;
  disabled?: boolean;
}) {
  const [open, setOpen] = useState(false);
  const [code, setCode] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const opener = useRef<HTMLButtonElement>(null);
  const titleId = useId();
  const methods = useMfaMethods();

  // after Cancel, focus goes back to the button that opened the prompt (it exists again only after the render)
  const refocus = useRef(false);
  useEffect(() => {
    if (!open && refocus.current) {
      refocus.current = false;
      opener.current?.focus();
    }
  }, [open]);

  const close = () => {
    refocus.current = true;
    setOpen(false);
    setCode('');
    setError(null);
  };

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const proof = proofOf(e, code);
    if (proof !== SECURITY_KEY && !CODE.test(code)) return setError(new ApiError(400, 'MFA_INVALID', 'enter the 6-digit code from your authenticator app'));
    setBusy(true);
    setError(null);
    try {
      await onConfirm(proof);
      setOpen(false);
      setCode('');
    } catch (err) {
      setError(err);
      // a code is accepted once: whatever happened, the next try needs a new one
      setCode('');
    } finally {
      setBusy(false);
    }
  };

  if (!open)
    return (
      <button type="button" ref={opener} className={danger ? 'danger' : undefined} disabled={disabled} onClick={() => setOpen(true)}>
        {label}
      </button>
    );
  return (
    <form className="step-up" onSubmit={submit} aria-labelledby={titleId}>
      <p id={titleId} className="step-up-title">
        {label}: confirm with your authenticator
      </p>
      {children}
      {methods.totp && <MfaCodeField value={code} onChange={setCode} autoFocus required={!methods.securityKey} />}
      <ErrorMessage error={error} />
      <div className="actions">
        {methods.totp && (
          <button type="submit" className={danger ? 'danger' : 'primary'} disabled={busy}>
            {busy ? 'Working…' : (confirmLabel ?? label)}
          </button>
        )}
        {methods.securityKey && <SecurityKeyButton primary={!methods.totp} disabled={busy} label={methods.totp ? 'Use security key' : `${confirmLabel ?? label} with security key`} />}
        <button type="button" onClick={close} disabled={busy}>
          Cancel
        </button>
      </div>
    </form>
  );
}

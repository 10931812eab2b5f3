import { useEffect, useId, useRef, useState, type FormEvent, type ReactNode } from 'react';
import { ApiError } from '../api/errors';
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
 * A button that asks for a fresh step-up code before it acts (the vault wants `X-MFA-Code` on every MFA action).
 * Clicking it opens a small inline form; the action gets the code, and a wrong or used code asks again.
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
    if (!CODE.test(code)) return setError(new ApiError(400, 'MFA_INVALID', 'enter the 6-digit code from your authenticator app'));
    setBusy(true);
    setError(null);
    try {
      await onConfirm(code);
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
      <MfaCodeField value={code} onChange={setCode} autoFocus />
      <ErrorMessage error={error} />
      <div className="actions">
        <button type="submit" className={danger ? 'danger' : 'primary'} disabled={busy}>
          {busy ? 'Working…' : (confirmLabel ?? label)}
        </button>
        <button type="button" onClick={close} disabled={busy}>
          Cancel
        </button>
      </div>
    </form>
  );
}

import { ApiError } from '../api/errors';

/**
 * Plain words for the codes people meet most; the vault's own message (written for API clients: "send the current TOTP
 * code as `code`") stays for every other code, and the code itself is always shown.
 */
const PLAIN: Record<string, string> = {
  MFA_REQUIRED: 'Enter the 6-digit code from your authenticator app.',
  MFA_INVALID: 'That code is not right. Enter the code your authenticator app shows now.',
  MFA_REPLAYED: 'That code has been used already. Wait for the next code from your authenticator app.',
  THROTTLED: 'Too many attempts. Wait a moment, then try again.',
  CSRF_FAILED: 'The page is out of date. Reload it and try again.',
};

/** What a person should read for an error: plain words or the vault's own message, with its stable code. */
export function describeError(error: unknown): { code: string; message: string } {
  if (error instanceof ApiError) return { code: error.code, message: PLAIN[error.code] ?? error.message };
  return { code: 'UNEXPECTED', message: 'something went wrong in the portal; reload the page and try again' };
}

/** An error announced to screen readers (role="alert"); renders nothing without one. */
export function ErrorMessage({ error, title }: { error: unknown; title?: string }) {
  if (!error) return null;
  const { code, message } = describeError(error);
  return (
    <div role="alert" className="error">
      {title && <strong>{title}: </strong>}
      {message} <code className="error-code">{code}</code>
    </div>
  );
}

/** A short polite status line ("Saved", "Checked in") for screen readers and everyone else. */
export function Notice({ children }: { children: React.ReactNode }) {
  if (!children) return null;
  return (
    <p role="status" className="notice">
      {children}
    </p>
  );
}

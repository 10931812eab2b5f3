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
  WEBAUTHN_REQUIRED: 'This action needs your security key: an authenticator code is not enough here.',
  LAST_FACTOR: 'This is your only way to confirm sign-ins. Add another security key or an authenticator app first.',
  SECURITY_KEY_CANCELLED: 'The security key was not used (cancelled or timed out). Try again and touch your key when it asks.',
  SECURITY_KEY_ALREADY_ADDED: 'This security key is already one of yours.',
  SECURITY_KEY_UNUSABLE:
    'None of your security keys can be used: this browser cannot use one, or the vault refuses your keys as suspected copies. In the latter case ask an administrator to reset your sign-in.',
  // single sign-on: the codes the vault's callback puts in /portal/sign-in?error=
  OIDC_STATE_INVALID: 'The single sign-on attempt expired or was started in another browser. Start it again from this page.',
  OIDC_TOKEN_INVALID: 'The identity provider’s answer could not be verified, so you were not signed in. Ask an administrator if it happens again.',
  OIDC_NO_ROLES: 'Your identity provider account is in no group that has access to the vault. Ask an administrator for access.',
  OIDC_USERNAME_TAKEN: 'Your username is already held by another vault account, so single sign-on cannot use it. Ask an administrator.',
  OIDC_PROVIDER_UNAVAILABLE: 'The identity provider cannot be reached or is not set up. Try again later or sign in with your password.',
  OIDC_USERNAME_INVALID: 'Your identity provider username cannot be a vault username (2-64 lower-case letters, digits, dots, dashes, underscores or @). Ask an administrator.',
  OIDC_ACCOUNT_DISABLED: 'Your vault account is disabled. Ask an administrator.',
  ACCESS_DENIED: 'The sign-in was refused at the identity provider.',
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

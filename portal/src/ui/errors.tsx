import { ApiError } from '../api/errors';

/** What a person should read for an error: the vault's own message with its stable code, or a generic line. */
export function describeError(error: unknown): { code: string; message: string } {
  if (error instanceof ApiError) return { code: error.code, message: error.message };
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

import { useEffect, useId, useRef, useState } from 'react';
import { useNow } from './format';

/** How long a revealed checkout credential stays on screen (issue 15: hidden again, removed from the DOM). */
export const REVEAL_SECONDS = 30;

export interface ShownCredential {
  username: string;
  password: string;
  host: string;
  port: number;
}

/**
 * A credential on screen for `seconds`, then gone: the parent keeps it in component state only and clears it in
 * `onHide`, so it leaves the DOM and memory the page holds (never a query cache, web storage or URL). The copy button
 * puts the password on the clipboard; hiding clears the clipboard again if it was copied from here.
 */
export function CredentialPanel({
  credential,
  seconds,
  onHide,
  hints = [],
  title = 'Credential',
}: {
  credential: ShownCredential;
  seconds: number;
  onHide(): void;
  hints?: ConnectionHint[];
  title?: string;
}) {
  const [until] = useState(() => Date.now() + seconds * 1000);
  const now = useNow(1000);
  const copied = useRef(false);
  const [message, setMessage] = useState('');
  const titleId = useId();
  const left = Math.max(0, Math.ceil((until - now) / 1000));

  // the latest onHide, for the timer set once when the credential appeared
  const hideRef = useRef(onHide);
  hideRef.current = () => {
    if (copied.current) void navigator.clipboard?.writeText('').catch(() => undefined);
    onHide();
  };
  const hide = () => hideRef.current();

  useEffect(() => {
    const t = window.setTimeout(() => hideRef.current(), seconds * 1000);
    return () => window.clearTimeout(t);
  }, [seconds]);

  const copy = async (what: string, value: string) => {
    try {
      await navigator.clipboard.writeText(value);
      if (what === 'Password') copied.current = true;
      setMessage(`${what} copied`);
    } catch {
      setMessage('Copying is not available here: select the text and copy it yourself');
    }
  };

  return (
    <section className="secret-box stack" aria-labelledby={titleId}>
      <h2 id={titleId}>{title}</h2>
      <dl className="facts">
        <dt>Username</dt>
        <dd>
          <code data-testid="credential-username">{credential.username}</code>
        </dd>
        <dt>Password</dt>
        <dd>
          <code className="secret" data-testid="credential-password">
            {credential.password}
          </code>
        </dd>
        <dt>Host</dt>
        <dd>
          <code>
            {credential.host}:{credential.port}
          </code>
        </dd>
      </dl>
      {hints.length > 0 && (
        <div>
          <h3>Connect with</h3>
          <ul className="hints">
            {hints.map((h) => (
              <li key={h.command}>
                {h.label && `${h.label}: `}
                <code>{h.command}</code>
              </li>
            ))}
          </ul>
        </div>
      )}
      <div className="actions">
        <button type="button" className="primary" onClick={() => void copy('Password', credential.password)}>
          Copy password
        </button>
        <button type="button" onClick={() => void copy('Username', credential.username)}>
          Copy username
        </button>
        <button type="button" onClick={hide}>
          Hide now
        </button>
      </div>
      <p className="muted">
        Hidden in <span data-testid="hide-countdown">{left}</span> s.
      </p>
      <p role="status" className="muted">
        {message}
      </p>
    </section>
  );
}

export interface ConnectionHint {
  /** Set when the target's type is unknown and every form is offered. */
  label?: string;
  command: string;
}

/** How to connect to a one-time account, by target type (ssh, postgres, mysql; unknown: each form, labelled). */
export function connectionHints(type: string | undefined, c: { username: string; host: string; port: number }, database?: string): ConnectionHint[] {
  const host = c.host.includes(':') ? `[${c.host}]` : c.host;
  const forms: Record<string, ConnectionHint> = {
    ssh: { label: 'SSH', command: `ssh ${c.username}@${c.host} -p ${c.port}` },
    postgres: { label: 'PostgreSQL', command: `postgresql://${encodeURIComponent(c.username)}@${host}:${c.port}/${encodeURIComponent(database ?? 'postgres')}` },
    mysql: { label: 'MySQL / MariaDB', command: `mysql://${encodeURIComponent(c.username)}@${host}:${c.port}` },
  };
  if (type && forms[type]) return [{ command: forms[type].command }];
  return Object.values(forms);
}

/** The target type of a one-time account when it cannot be read (vendors cannot list targets): from its access, then its port. */
export function guessTargetType(access: { groups?: string[]; database?: string; grantRoles?: string[]; grants?: unknown[] }, port: number): string | undefined {
  if (access.database || access.grantRoles?.length) return 'postgres';
  if (access.grants?.length) return 'mysql';
  if (access.groups?.length) return 'ssh';
  return ({ 22: 'ssh', 5432: 'postgres', 3306: 'mysql' } as Record<number, string>)[port];
}

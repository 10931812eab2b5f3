import { useEffect, useId, useRef, useState, type FormEvent } from 'react';
import { useNavigate } from 'react-router';
import { api, ok } from '../api/client';
import type { SessionView } from '../api/views';
import { canUseSecurityKeys, createCredential } from '../api/webauthn';
import { useMe, useSession } from '../session';
import { ErrorMessage } from '../ui/errors';
import { TotpSetup } from './totp-setup';

type Choice = 'app' | 'key';

/**
 * First sign-in: set up the first way to confirm sign-ins and actions — an authenticator app (TOTP, the default) or a
 * security key / passkey (WebAuthn). Confirming either ends the password-only session and the vault answers a fresh one.
 */
export function EnrolPage() {
  const me = useMe();
  const { signOut } = useSession();
  const [choice, setChoice] = useState<Choice>('app');
  const heading = useRef<HTMLHeadingElement>(null);
  const base = useId();
  const keys = canUseSecurityKeys();

  useEffect(() => {
    document.title = 'Set up your authenticator · PAM vault';
    heading.current?.focus();
  }, []);

  return (
    <main id="main" className="enrol">
      <h1 ref={heading} tabIndex={-1}>
        Set up your authenticator
      </h1>
      <p>Welcome, {me.username}. Every sign-in and every sensitive action asks you to confirm it with an authenticator.</p>
      <fieldset className="stack">
        <legend>How will you confirm?</legend>
        <div className="field inline">
          <input id={`${base}-app`} type="radio" name="choice" checked={choice === 'app'} onChange={() => setChoice('app')} />
          <label htmlFor={`${base}-app`}>Authenticator app (a 6-digit code)</label>
        </div>
        <div className="field inline">
          <input id={`${base}-key`} type="radio" name="choice" checked={choice === 'key'} disabled={!keys} onChange={() => setChoice('key')} />
          <label htmlFor={`${base}-key`}>Security key or passkey{keys ? '' : ' (this browser cannot use one)'}</label>
        </div>
      </fieldset>
      {choice === 'app' ? <AppEnrolment /> : <KeyEnrolment />}
      <p>
        <button type="button" onClick={() => void signOut()}>
          Sign out
        </button>
      </p>
    </main>
  );
}

/** The fresh session a confirmed first factor answers (from a cookie session), or re-read it. */
function useFinish() {
  const { adopt, refresh } = useSession();
  const navigate = useNavigate();
  return async (answer: unknown) => {
    // TOTP answers the session itself; a security key's confirmation answers {credential, newSession}
    const session = answer && typeof answer === 'object' && 'newSession' in answer ? (answer as { newSession: unknown }).newSession : answer;
    if (session && typeof session === 'object' && 'user' in session && 'csrfToken' in session) adopt(session as SessionView);
    else await refresh();
    navigate('/', { replace: true });
  };
}

/** The authenticator app, started without a step-up (the user has no factor yet). */
function AppEnrolment() {
  const finish = useFinish();
  return <TotpSetup start={async () => ok(await api.POST('/v1/me/mfa/totp'))} onConfirmed={finish} />;
}

/** A security key or passkey: named, then created on the authenticator for the vault's challenge, then confirmed. */
function KeyEnrolment() {
  const finish = useFinish();
  const [name, setName] = useState('Security key');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const nameId = useId();

  const add = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const { challengeId, options } = ok(await api.POST('/v1/me/webauthn/registrations'));
      const response = await createCredential(options);
      await finish(ok(await api.POST('/v1/me/webauthn/registrations/confirm', { body: { challengeId, name: name.trim(), response } })));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form onSubmit={add} className="card stack" aria-label="Add your security key">
      <p>Plug in your security key (or use your device’s passkey), name it, then touch the key or confirm on the device when the browser asks.</p>
      <div className="field">
        <label htmlFor={nameId}>Name of the key</label>
        <input id={nameId} required maxLength={60} value={name} onChange={(e) => setName(e.target.value)} />
      </div>
      <ErrorMessage error={error} />
      <button type="submit" className="primary" disabled={busy || !name.trim()}>
        {busy ? 'Waiting for your key…' : 'Add security key'}
      </button>
    </form>
  );
}

import { useId, useState, type FormEvent } from 'react';
import { Navigate, useLocation, useNavigate } from 'react-router';
import { ApiError } from '../api/errors';
import { useSession } from '../session';
import { ErrorMessage, Notice } from '../ui/errors';
import { MfaCodeField } from '../ui/step-up';

type From = { from?: string; expired?: boolean } | null;

/**
 * Password and, once enrolled, the authenticator code in one request (a password-only first try that answers
 * MFA_REQUIRED would count against the sign-in throttle). The password stays in component state only.
 */
export function SignInPage() {
  const { state, signIn } = useSession();
  const navigate = useNavigate();
  const location = useLocation();
  const from = location.state as From;
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [code, setCode] = useState('');
  const [needCode, setNeedCode] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const userId = useId();
  const passwordId = useId();

  if (state.status === 'signed-in') return <Navigate to={state.session.mfaEnrollmentRequired ? '/enrol' : (from?.from ?? '/')} replace />;
  const expired = (state.status === 'signed-out' && state.expired) || from?.expired;

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const session = await signIn({ username, password, ...(code ? { code } : {}) });
      setPassword('');
      navigate(session.mfaEnrollmentRequired ? '/enrol' : (from?.from ?? '/'), { replace: true });
    } catch (err) {
      if (err instanceof ApiError && err.code === 'MFA_REQUIRED') setNeedCode(true);
      setError(err);
      setCode('');
    } finally {
      setBusy(false);
    }
  };

  return (
    <main id="main" className="sign-in">
      <h1>Sign in to the PAM vault</h1>
      {expired && <Notice>Your session has ended. Sign in again to continue.</Notice>}
      <form onSubmit={submit} className="card stack" aria-label="Sign in">
        <div className="field">
          <label htmlFor={userId}>Username</label>
          <input id={userId} name="username" autoComplete="username" required value={username} onChange={(e) => setUsername(e.target.value)} autoFocus />
        </div>
        <div className="field">
          <label htmlFor={passwordId}>Password</label>
          <input id={passwordId} name="password" type="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} />
        </div>
        {/* optional before the vault says it is needed: a first sign-in has no authenticator yet */}
        <MfaCodeField
          key={needCode ? 'needed' : 'optional'}
          value={code}
          onChange={setCode}
          required={needCode}
          autoFocus={needCode}
          hint={needCode ? undefined : 'Leave empty on your first sign-in: you will set up your authenticator next.'}
        />
        <ErrorMessage error={error} />
        <button type="submit" className="primary" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}

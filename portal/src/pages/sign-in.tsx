import { useQuery } from '@tanstack/react-query';
import { useId, useRef, useState, type FormEvent } from 'react';
import { Navigate, useLocation, useNavigate, useSearchParams } from 'react-router';
import { api, ok, SECURITY_KEY } from '../api/client';
import { ApiError } from '../api/errors';
import { canUseSecurityKeys, signChallenge } from '../api/webauthn';
import { useSession } from '../session';
import { ErrorMessage, Notice } from '../ui/errors';
import { MfaCodeField, proofOf, SecurityKeyButton } from '../ui/step-up';

type From = { from?: string; expired?: boolean } | null;

/** What MFA_REQUIRED offers at sign-in: the methods the user has and, with a security key, a login challenge. */
interface SecondStep {
  totp: boolean;
  /** The options of the vault's login challenge (issued once the password was right). */
  webauthn: unknown;
}

function secondStepOf(error: ApiError): SecondStep {
  const methods = Array.isArray(error.details.methods) ? (error.details.methods as string[]) : ['totp'];
  const challenge = error.details.webauthn as { options?: unknown } | undefined;
  const webauthn = methods.includes('webauthn') && challenge?.options && canUseSecurityKeys() ? challenge.options : null;
  // a user with keys only whose keys the vault offered no challenge for (all flagged) has nothing to enter here
  return { totp: methods.includes('totp') || (!webauthn && !methods.includes('webauthn')), webauthn };
}

/** A code the single sign-on callback put in `?error=` (its own: OIDC_*), or nothing for anything else. */
function signOnError(code: string | null): ApiError | null {
  if (!code || !/^[A-Z][A-Z0-9_]{2,40}$/.test(code)) return null;
  return new ApiError(0, code, 'single sign-on did not complete; try again or ask an administrator');
}

/**
 * Password and, once enrolled, the authenticator code in one request (a password-only first try that answers
 * MFA_REQUIRED would count against the sign-in throttle). Someone with a security key gets MFA_REQUIRED with a login
 * challenge after the password step (it is issued only for a right password) and signs it with "Use security key".
 * Single sign-on providers, when the vault has any, are links that leave for the provider. The password stays in
 * component state only.
 */
export function SignInPage() {
  const { state, signIn } = useSession();
  const navigate = useNavigate();
  const location = useLocation();
  const [params] = useSearchParams();
  const from = location.state as From;
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [code, setCode] = useState('');
  const [second, setSecond] = useState<SecondStep | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(() => signOnError(params.get('error')));
  const userId = useId();
  const passwordId = useId();
  const keyButton = useRef<HTMLDivElement>(null);

  if (state.status === 'signed-in') return <Navigate to={state.session.mfaEnrollmentRequired ? '/enrol' : (from?.from ?? '/')} replace />;
  const expired = (state.status === 'signed-out' && state.expired) || from?.expired;

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const proof = proofOf(e, code);
    setBusy(true);
    setError(null);
    try {
      const factor = second?.webauthn && proof === SECURITY_KEY ? { assertion: await signChallenge(second.webauthn) } : code ? { code } : {};
      const session = await signIn({ username, password, ...factor });
      setPassword('');
      navigate(session.mfaEnrollmentRequired ? '/enrol' : (from?.from ?? '/'), { replace: true });
    } catch (err) {
      let shown = err;
      if (err instanceof ApiError && err.code === 'MFA_REQUIRED') {
        const next = secondStepOf(err);
        setSecond(next);
        // the key's prompt needs a press of its button: move there (a screen reader hears the step that follows)
        setTimeout(() => keyButton.current?.querySelector('button')?.focus());
        // keys only, and none usable (each suspected of being a copy, or no WebAuthn here): say so, ask for no code
        if (!next.totp && !next.webauthn) shown = new ApiError(401, 'SECURITY_KEY_UNUSABLE', 'none of your security keys can be used');
      }
      // a login challenge is used once: a failed try with the key needs a fresh one (sign in again)
      else if (second?.webauthn && proof === SECURITY_KEY) setSecond(null);
      setError(shown);
      setCode('');
    } finally {
      setBusy(false);
    }
  };

  const needCode = !!second?.totp;
  return (
    <main id="main" className="sign-in">
      <h1>Sign in to the PAM vault</h1>
      {expired && <Notice>Your session has ended. Sign in again to continue.</Notice>}
      <SingleSignOn returnTo={from?.from} />
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
        {(!second || second.totp) && (
          <MfaCodeField
            key={needCode ? 'needed' : 'optional'}
            value={code}
            onChange={setCode}
            required={needCode && !second?.webauthn}
            autoFocus={needCode && !second?.webauthn}
            hint={second ? undefined : 'Leave empty on your first sign-in or when you use a security key: the next step asks for it.'}
          />
        )}
        <ErrorMessage error={error} />
        <div className="actions" ref={keyButton}>
          {(!second?.webauthn || second.totp) && (
            <button type="submit" className="primary" disabled={busy}>
              {busy ? 'Signing in…' : 'Sign in'}
            </button>
          )}
          {second?.webauthn ? <SecurityKeyButton primary={!second.totp} disabled={busy} /> : null}
        </div>
      </form>
    </main>
  );
}

/** A link per single sign-on provider the vault offers (none: nothing shown). */
function SingleSignOn({ returnTo }: { returnTo?: string }) {
  const providers = useQuery({
    queryKey: ['oidc-providers', 'public'],
    queryFn: async () => ok(await api.GET('/v1/auth/oidc/providers')),
    retry: false,
  });
  if (!providers.data?.length) return null;
  const back = `/portal${returnTo && returnTo.startsWith('/') ? returnTo : '/'}`;
  return (
    <nav className="card stack sso" aria-label="Single sign-on">
      {providers.data.map((p) => (
        <a key={p.name} className="button" href={`/v1/auth/oidc/${encodeURIComponent(p.name)}/start?returnTo=${encodeURIComponent(back)}`}>
          Sign in with {p.displayName}
        </a>
      ))}
      <p className="muted">or with your vault password:</p>
    </nav>
  );
}

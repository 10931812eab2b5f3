import { useEffect, useRef, useState, type FormEvent } from 'react';
import { useNavigate } from 'react-router';
import QRCode from 'qrcode';
import { api, ok } from '../api/client';
import { useMe, useSession } from '../session';
import { ErrorMessage } from '../ui/errors';
import { Loading } from '../ui/page';
import { MfaCodeField } from '../ui/step-up';

interface Enrollment {
  secret: string;
  otpauthUri: string;
  /** The QR code rendered here in the browser (a data: URL): the secret never goes to a third party. */
  qr: string;
}

/**
 * First sign-in: set up the authenticator. The secret and its QR code live in this component's state only and are
 * gone once the page closes; confirming ends the password-only session and the vault answers a fresh one.
 */
export function EnrolPage() {
  const me = useMe();
  const { adopt, refresh, signOut } = useSession();
  const navigate = useNavigate();
  const [enrollment, setEnrollment] = useState<Enrollment | null>(null);
  const [code, setCode] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const started = useRef(false);
  const heading = useRef<HTMLHeadingElement>(null);

  useEffect(() => {
    document.title = 'Set up your authenticator · PAM vault';
    heading.current?.focus();
    // once per page: a second start would replace the secret shown
    if (started.current) return;
    started.current = true;
    (async () => {
      const data = ok(await api.POST('/v1/me/mfa/totp'));
      const qr = await QRCode.toDataURL(data.otpauthUri, { errorCorrectionLevel: 'M', margin: 2, width: 240 });
      setEnrollment({ ...data, qr });
    })().catch(setError);
  }, []);

  const confirm = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const answer = ok(await api.POST('/v1/me/mfa/totp/confirm', { body: { code } }));
      setEnrollment(null);
      // from a cookie session the confirmation answers the new session (a fresh cookie and CSRF token); a bearer answer
      // (never expected here) is read back through GET /v1/auth/session
      if ('user' in answer) adopt(answer);
      else await refresh();
      navigate('/', { replace: true });
    } catch (err) {
      setError(err);
      setCode('');
    } finally {
      setBusy(false);
    }
  };

  return (
    <main id="main" className="enrol">
      <h1 ref={heading} tabIndex={-1}>
        Set up your authenticator
      </h1>
      <p>
        Welcome, {me.username}. Every sign-in and every sensitive action asks for a code from an authenticator app. Scan the QR code with the app (or type
        the key), then enter the 6-digit code it shows.
      </p>
      {enrollment ? (
        <div className="card stack">
          <img className="qr" src={enrollment.qr} alt="QR code to add the vault to your authenticator app" width={240} height={240} />
          <p>
            Key for typing in: <code className="secret">{enrollment.secret.replace(/(.{4})/g, '$1 ').trim()}</code>
          </p>
          <form onSubmit={confirm} className="stack" aria-label="Confirm your authenticator">
            <MfaCodeField value={code} onChange={setCode} label="Code from your authenticator" />
            <ErrorMessage error={error} />
            <button type="submit" className="primary" disabled={busy || code.length !== 6}>
              {busy ? 'Confirming…' : 'Confirm'}
            </button>
          </form>
        </div>
      ) : error ? (
        <ErrorMessage error={error} />
      ) : (
        <Loading what="Preparing your QR code" />
      )}
      <p>
        <button type="button" onClick={() => void signOut()}>
          Sign out
        </button>
      </p>
    </main>
  );
}

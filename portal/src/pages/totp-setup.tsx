import { useEffect, useRef, useState, type FormEvent } from 'react';
import QRCode from 'qrcode';
import { api, ok } from '../api/client';
import { ErrorMessage } from '../ui/errors';
import { Loading } from '../ui/page';
import { MfaCodeField } from '../ui/step-up';

/** What POST /v1/me/mfa/totp answers: the new secret and its otpauth URI. */
export interface TotpStart {
  secret: string;
  otpauthUri: string;
}

interface Enrollment extends TotpStart {
  /** The QR code rendered here in the browser (a data: URL): the secret never goes to a third party. */
  qr: string;
}

/**
 * An authenticator app being set up: `start` gets the secret (once per mount: a second start would replace the secret
 * shown), the QR code is drawn here, and the first code confirms it. The secret and its QR code live in this
 * component's state only and are gone once it closes. Confirming ends every session of the user: `onConfirmed` gets
 * the vault's answer, which carries the fresh session.
 */
export function TotpSetup({ start, onConfirmed }: { start(): Promise<TotpStart>; onConfirmed(answer: unknown): Promise<void> }) {
  const [enrollment, setEnrollment] = useState<Enrollment | null>(null);
  const [code, setCode] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const started = useRef(false);

  useEffect(() => {
    if (started.current) return;
    started.current = true;
    (async () => {
      const data = await start();
      const qr = await QRCode.toDataURL(data.otpauthUri, { errorCorrectionLevel: 'M', margin: 2, width: 240 });
      setEnrollment({ ...data, qr });
    })().catch(setError);
  }, [start]);

  const confirm = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const answer = ok(await api.POST('/v1/me/mfa/totp/confirm', { body: { code } }));
      setEnrollment(null);
      // from a cookie session the confirmation answers the new session (a fresh cookie and CSRF token)
      await onConfirmed(answer);
    } catch (err) {
      setError(err);
      setCode('');
    } finally {
      setBusy(false);
    }
  };

  return (
    <section aria-label="Authenticator app" className="stack">
      <p>Scan the QR code with the app (or type the key), then enter the 6-digit code it shows.</p>
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
    </section>
  );
}


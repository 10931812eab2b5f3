import { useState, type FormEvent } from 'react';
import { Link } from 'react-router';
import { api, ok } from '../../api/client';
import { ApiError } from '../../api/errors';
import { ErrorMessage } from '../../ui/errors';
import { Page, Section } from '../../ui/page';
import { TextField } from '../admin/shared/fields';
import type { AuditVerifyView } from '../admin/views';
import { Facts } from '../../ui/fields';

/**
 * `/audit/verify`: seals what is not sealed yet and checks the whole hash chain (auditor, admin). Run on request, not
 * on opening the page: it reads the whole log. Given the head (sequence and hash) recorded after an earlier verify and
 * kept outside the vault, it also proves that nothing was cut off the end since.
 */
export function VerifyPage() {
  const [headSeq, setHeadSeq] = useState('');
  const [headHash, setHeadHash] = useState('');
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<{ at: Date; view: AuditVerifyView } | null>(null);
  const [error, setError] = useState<unknown>(null);

  const run = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    setResult(null);
    try {
      const query = headSeq || headHash ? { headSeq: headSeq.trim(), headHash: headHash.trim() } : {};
      setResult({ at: new Date(), view: ok(await api.GET('/v1/audit-events/verify', { params: { query } })) as AuditVerifyView });
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  const retryAfter = error instanceof ApiError && error.code === 'UNAVAILABLE' ? error.details.retryAfterSeconds : undefined;
  return (
    <Page title="Verify the audit chain">
      <form className="card stack" onSubmit={run} aria-label="Verify the audit chain">
        <p className="hint">Every event is linked to the one before it by a hash; verify recomputes every link and checks every event's MAC.</p>
        <details>
          <summary>Compare with a head recorded earlier (optional)</summary>
          <div className="form-row">
            <TextField label="Head sequence" value={headSeq} onChange={setHeadSeq} inputMode="numeric" autoComplete="off" />
            <TextField label="Head hash" value={headHash} onChange={setHeadHash} autoComplete="off" className="mono" />
          </div>
        </details>
        <div className="actions">
          <button type="submit" className="primary" disabled={busy}>
            {busy ? 'Verifying…' : 'Run verify'}
          </button>
        </div>
      </form>
      <ErrorMessage error={error} title="Verify could not run" />
      {typeof retryAfter === 'number' && <p className="hint">Another verify is running; try again in {retryAfter} s.</p>}
      {result && <VerifyOutcome at={result.at} view={result.view} />}
    </Page>
  );
}

function VerifyOutcome({ at, view }: { at: Date; view: AuditVerifyView }) {
  return (
    <Section title="Result" className={`card ${view.ok ? 'verify-ok' : 'verify-bad'}`}>
      <div role="status" className="stack">
        {view.ok ? (
          <>
            <p>
              <span className="badge ok">Chain intact</span> {view.count} events verified at {at.toLocaleString()}.
            </p>
            <Facts
              rows={[
                ['Head sequence', <code>{view.headSeq}</code>],
                ['Head hash', <code>{view.headHash}</code>],
              ]}
            />
            <p className="hint">Record the head outside the vault; a later verify given it proves no event was removed from the end since.</p>
          </>
        ) : (
          <>
            <p>
              <span className="badge bad">Chain broken</span> {view.reason}
            </p>
            {view.firstInvalidId && (
              <p>
                First invalid event: <Link to={`/audit/${view.firstInvalidId}`}>{view.firstInvalidId}</Link>
              </p>
            )}
            <p className="hint">Administrators and auditors have been alerted.</p>
          </>
        )}
      </div>
    </Section>
  );
}

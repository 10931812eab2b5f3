import { useQuery } from '@tanstack/react-query';
import { useState } from 'react';
import { Link, useParams } from 'react-router';
import { api, ok } from '../../api/client';
import { Person, TargetName } from '../../api/names';
import { useMe } from '../../session';
import { ErrorMessage } from '../../ui/errors';
import { Facts } from '../../ui/fields';
import { StatusBadge, When } from '../../ui/format';
import { Loading, Page, Section } from '../../ui/page';
import { AsciicastPlayer } from './player';
import { readRecording } from './recording-file';
import { SessionState } from './sessions-page';
import type { RecordingVerifyView } from './views';
import './recordings.css';

/** Recomputes the recording's hash from what is stored and compares it with the audit chain's (auditors). */
function VerifyRecording({ id }: { id: string }) {
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<RecordingVerifyView | null>(null);
  const [error, setError] = useState<unknown>(null);
  const run = async () => {
    setBusy(true);
    setError(null);
    setResult(null);
    try {
      setResult(ok(await api.POST('/v1/sessions/{id}/verify', { params: { path: { id } } })));
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Section title="Integrity">
      <p className="hint">Decrypts every stored chunk, hashes the recording and compares it with the SHA-256 in the session's closing audit event, which the audit chain vouches for.</p>
      <button type="button" onClick={() => void run()} disabled={busy}>
        {busy ? 'Verifying…' : 'Verify the recording'}
      </button>
      <ErrorMessage error={error} title="Verify could not run" />
      {result && (
        <div role="status" className={`card ${result.ok ? 'ok' : 'bad'}`}>
          <p>
            <StatusBadge status={result.ok ? 'succeeded' : 'failed'} /> {result.ok ? 'The recording matches the hash in the audit chain.' : 'The recording does not match.'}
          </p>
          <Facts
            rows={[
              ['Computed SHA-256', <code key="c">{result.computedSha256 ?? '—'}</code>],
              ['Audited SHA-256', <code key="a">{result.auditedSha256 ?? '—'}</code>],
              !!result.auditEventId && ['Audit event', <Link key="e" to={`/audit/${result.auditEventId}`}>{result.auditEventId}</Link>],
            ]}
          />
          {result.problems.length > 0 && (
            <ul className="verify-problems">
              {result.problems.map((p) => (
                <li key={p}>{p}</li>
              ))}
            </ul>
          )}
        </div>
      )}
    </Section>
  );
}

/** `/sessions/:id/play`: one gateway session and its recording in asciinema-player (auditors, admins). Reading it is audited. */
export function PlayerPage() {
  const { id = '' } = useParams();
  const me = useMe();
  const session = useQuery({ queryKey: ['/v1/sessions', id], queryFn: async () => ok(await api.GET('/v1/sessions/{id}', { params: { path: { id } } })) });
  const file = useQuery({
    queryKey: ['/v1/sessions', id, 'recording'],
    enabled: session.data?.recording != null,
    staleTime: Infinity,
    queryFn: () => readRecording(id),
  });
  const s = session.data;
  return (
    <Page title="Session recording" actions={<Link to="/sessions">All sessions</Link>}>
      <ErrorMessage error={session.error} />
      {session.isPending && <Loading what="Loading the session" />}
      {s && (
        <>
          <Facts
            rows={[
              ['State', <SessionState key="s" s={s} />],
              ['Who', <Person key="p" id={s.userId} />],
              [
                'Account',
                <span key="a">
                  <code>{s.account}</code> on <TargetName id={s.targetId} />
                </span>,
              ],
              ['From', s.clientAddress ?? '—'],
              ['Started', <When key="st" at={s.startedAt} />],
              ['Ended', <When key="en" at={s.endedAt} />],
              s.recording && ['Recording', <span key="r"><StatusBadge status={s.recording.status} /> {s.recording.size} bytes{s.recording.recordInput ? ', input recorded' : ''}</span>],
              !!s.recording?.sha256 && ['SHA-256', <code key="h">{s.recording.sha256}</code>],
            ]}
          />
          {!s.recording && <p className="muted">This session has no recording.</p>}
          <ErrorMessage error={file.error} title="The recording could not be read" />
          {file.isLoading && <Loading what="Loading the recording" />}
          {file.data && (
            <Section title="Replay">
              <AsciicastPlayer cast={file.data.cast} />
              <p className="hint">
                {file.data.events} events{file.data.markers.length > 0 ? `, ${file.data.markers.length} markers (channels, commands)` : ''}.{' '}
                <a href={`/v1/sessions/${id}/recording`} download={`session-${id}.cast`}>
                  Download the .cast file
                </a>{' '}
                (play it with <code>asciinema play</code>).
              </p>
            </Section>
          )}
          {me.has('auditor') && s.recording && <VerifyRecording id={id} />}
        </>
      )}
    </Page>
  );
}

import { useQuery, useQueryClient } from '@tanstack/react-query';
import { api, ok, withMfa } from '../../api/client';
import type { components } from '../../api/schema';
import { useMe } from '../../session';
import { ErrorMessage } from '../../ui/errors';
import { When } from '../../ui/format';
import { Loading, Section } from '../../ui/page';
import { StepUpAction } from '../../ui/step-up';
import { DataTable, type Column } from '../admin/shared/table';

type Schemas = components['schemas'];
/** GET /v1/checkouts/{id}/sessions, /v1/ephemeral-accounts/{id}/sessions, /v1/targets/{id}/sessions. */
export type LiveSessionsView = Schemas['LiveSessionsView'];
export type TargetSessionView = Schemas['TargetSessionView'];

/** Whose sessions the panel shows: a checkout's account, a one-time account, or (admins) every managed account of a target. */
export type LiveSessionsOf = { checkoutId: string } | { ephemeralId: string } | { targetId: string };

async function readSessions(of: LiveSessionsOf): Promise<LiveSessionsView> {
  if ('checkoutId' in of) return ok(await api.GET('/v1/checkouts/{id}/sessions', { params: { path: { id: of.checkoutId } } }));
  if ('ephemeralId' in of) return ok(await api.GET('/v1/ephemeral-accounts/{id}/sessions', { params: { path: { id: of.ephemeralId } } }));
  return ok(await api.GET('/v1/targets/{id}/sessions', { params: { path: { id: of.targetId } } }));
}

/**
 * The live sessions on the target right now (read from the target when the panel opens and on Refresh; not polled:
 * each read logs in to the target). Admins end one with a fresh code. Shown only while there can be sessions
 * (`active`): an ended checkout or one-time account has none.
 */
export function LiveSessions({ of, active = true }: { of: LiveSessionsOf; active?: boolean }) {
  const me = useMe();
  const queries = useQueryClient();
  const key = ['live-sessions', of];
  const query = useQuery({ queryKey: key, queryFn: () => readSessions(of), enabled: active, refetchOnWindowFocus: false, retry: false });
  if (!active) return null;
  const data = query.data;
  const wide = 'targetId' in of;

  const end = async (s: TargetSessionView, code: string) => {
    await api.POST('/v1/targets/{id}/sessions/{sessionId}/terminate', withMfa(code, { params: { path: { id: data!.targetId, sessionId: s.id } } })).then(ok);
    await queries.invalidateQueries({ queryKey: key });
  };

  const columns: Column<TargetSessionView>[] = [
    ...(wide ? [{ label: 'Account', cell: (s: TargetSessionView) => <code>{s.username}</code> }] : []),
    { label: 'From', cell: (s) => s.clientAddress ?? <span className="muted">—</span> },
    { label: 'Since', cell: (s) => (s.since ? <When at={s.since} /> : <span className="muted">—</span>) },
    { label: 'State', cell: (s) => s.state ?? <span className="muted">—</span> },
    { label: 'Where', cell: (s) => <SessionPlace s={s} /> },
    { label: 'Session', cell: (s) => <code title={s.id}>{s.id}</code> },
  ];
  if (me.has('admin')) {
    columns.push({
      label: 'Actions',
      cell: (s) => <StepUpAction label="End session" confirmLabel="End it" danger onConfirm={(code) => end(s, code)} />,
    });
  }

  return (
    <Section title={wide ? 'Live sessions on the target' : 'Live sessions'}>
      <ErrorMessage error={query.error} />
      {query.isPending ? (
        <Loading what="Loading the live sessions from the target" />
      ) : (
        data && <DataTable caption="Live sessions on the target" rows={data.items} columns={columns} empty="No live session on the target right now." />
      )}
      <p>
        <button type="button" disabled={query.isFetching} onClick={() => void query.refetch()}>
          Refresh
        </button>
      </p>
    </Section>
  );
}

/** The database (PostgreSQL, MySQL) or the terminal and processes (SSH) of a session. */
function SessionPlace({ s }: { s: TargetSessionView }) {
  if (s.kind !== 'ssh') return s.database ? <span>database {s.database}</span> : <span className="muted">—</span>;
  const processes = s.processes ?? [];
  return (
    <details>
      <summary>
        {s.tty ?? 'no terminal'}
        {s.command && (
          <>
            {' '}
            · <code>{s.command}</code>
          </>
        )}{' '}
        · {processes.length} process{processes.length === 1 ? '' : 'es'}
      </summary>
      <ul>
        {processes.map((p) => (
          <li key={p.pid}>
            <code>
              {p.pid} {p.command}
            </code>
          </li>
        ))}
      </ul>
    </details>
  );
}

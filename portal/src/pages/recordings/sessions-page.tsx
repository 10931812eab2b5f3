import { Link } from 'react-router';
import { useQueryClient } from '@tanstack/react-query';
import { api, withMfa } from '../../api/client';
import { MoreButton, usePagedList } from '../../api/lists';
import { Person, TargetName } from '../../api/names';
import { useMe } from '../../session';
import { ErrorMessage } from '../../ui/errors';
import { SelectField } from '../../ui/fields';
import { StatusBadge, When } from '../../ui/format';
import { Loading, Page } from '../../ui/page';
import { StepUpAction } from '../../ui/step-up';
import { FilterActions, useUrlFilters } from '../../ui/url-filters';
import { TextField } from '../admin/shared/fields';
import { DataTable, type Column } from '../admin/shared/table';
import type { GatewaySessionView } from './views';
import './recordings.css';

/** The filters the API takes (`GET /v1/sessions`), kept in the address so a filtered list can be linked to. */
const FILTERS = ['userId', 'targetId', 'checkoutId', 'ephemeralId', 'live'] as const;

/** The player page is a document of its own (a full load): only its answer carries the CSP that lets the player's WebAssembly run. */
export const playerPath = (id: string) => `/portal/sessions/${id}/play`;

const bytes = (n: number) => (n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 / 1024).toFixed(1)} MiB`);

/** A session's state: a live badge while it runs, else why it ended (and a pending terminate). */
export function SessionState({ s }: { s: GatewaySessionView }) {
  if (s.live)
    return (
      <span>
        <span className="badge ok live">live</span>
        {s.endRequestedAt && <span className="muted"> ending…</span>}
      </span>
    );
  return <StatusBadge status={s.endReason ?? 'ended'} />;
}

function RecordingCell({ s, canPlay }: { s: GatewaySessionView; canPlay: boolean }) {
  const r = s.recording;
  if (!r) return <span className="muted">none</span>;
  return (
    <span>
      <StatusBadge status={r.status} /> {bytes(r.size)}
      {canPlay && (
        <>
          {' '}
          {/* a full page load on purpose (see playerPath) */}
          <a href={playerPath(s.id)}>Play</a>
        </>
      )}
    </span>
  );
}

/** Ends a live session (admins, step-up code): the gateway closes it within about a second. */
function TerminateButton({ id }: { id: string }) {
  const queries = useQueryClient();
  return (
    <StepUpAction
      label="Terminate"
      danger
      onConfirm={async (code) => {
        await api.POST('/v1/sessions/{id}/terminate', withMfa(code, { params: { path: { id } } }));
        await queries.invalidateQueries({ queryKey: ['/v1/sessions'] });
      }}
    />
  );
}

/** `/sessions`: SSH gateway sessions, newest first (auditors and admins: all; operators and vendors: their own). */
export function SessionsPage() {
  const me = useMe();
  const { applied, draft, set, apply, clear } = useUrlFilters(FILTERS);
  const list = usePagedList<GatewaySessionView>('/v1/sessions', applied, { live: true });
  const canPlay = me.has('auditor', 'admin');
  const isAdmin = me.has('admin');

  const columns: Column<GatewaySessionView>[] = [
    { label: 'Started', cell: (s) => <When at={s.startedAt} /> },
    { label: 'State', cell: (s) => <SessionState s={s} /> },
    { label: 'Who', cell: (s) => <Person id={s.userId} /> },
    {
      label: 'Account',
      cell: (s) => (
        <span>
          <code>{s.account}</code> on <TargetName id={s.targetId} />
        </span>
      ),
    },
    {
      label: 'For',
      cell: (s) => (s.checkoutId ? <Link to={`/checkouts/${s.checkoutId}`}>checkout</Link> : s.ephemeralId ? <Link to={`/one-time-accounts/${s.ephemeralId}`}>one-time account</Link> : '—'),
    },
    { label: 'From', cell: (s) => s.clientAddress ?? <span className="muted">—</span> },
    { label: 'Ended', cell: (s) => <When at={s.endedAt} /> },
    { label: 'Recording', cell: (s) => <RecordingCell s={s} canPlay={canPlay} /> },
  ];
  if (isAdmin) columns.push({ label: 'Actions', cell: (s) => (s.live && !s.endRequestedAt ? <TerminateButton id={s.id} /> : null) });

  return (
    <Page title="Gateway sessions">
      <form className="filters card" onSubmit={apply} aria-label="Filter the sessions">
        <SelectField
          label="State"
          value={draft.live}
          onChange={set('live')}
          options={[
            { value: '', label: 'Any' },
            { value: 'true', label: 'Live' },
            { value: 'false', label: 'Ended' },
          ]}
        />
        {canPlay && <TextField label="User id" value={draft.userId} onChange={set('userId')} autoComplete="off" />}
        <TextField label="Target id" value={draft.targetId} onChange={set('targetId')} autoComplete="off" />
        <TextField label="Checkout id" value={draft.checkoutId} onChange={set('checkoutId')} autoComplete="off" />
        <TextField label="One-time account id" value={draft.ephemeralId} onChange={set('ephemeralId')} autoComplete="off" />
        <FilterActions onClear={clear} />
      </form>
      <ErrorMessage error={list.error} />
      {list.isPending ? <Loading what="Loading the sessions" /> : <DataTable caption="Gateway sessions, newest first" rows={list.items} columns={columns} empty="No gateway sessions match." />}
      <MoreButton list={list} />
    </Page>
  );
}

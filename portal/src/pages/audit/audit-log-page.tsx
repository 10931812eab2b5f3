import { Link } from 'react-router';
import { MoreButton, usePagedList } from '../../api/lists';
import { Person } from '../../api/names';
import { ErrorMessage } from '../../ui/errors';
import { StatusBadge, When } from '../../ui/format';
import { Loading, Page } from '../../ui/page';
import { optionsOf, TextField } from '../admin/shared/fields';
import { DataTable, type Column } from '../admin/shared/table';
import type { AuditEventView } from '../admin/views';
import { SubjectLink } from './subject-link';
import { SelectField } from '../../ui/fields';
import { FilterActions, useUrlFilters } from '../../ui/url-filters';

/** The filters the API takes (`GET /v1/audit-events`); they live in the address so a filtered log can be linked to. */
const FILTERS = ['type', 'subjectType', 'subjectId', 'actorId'] as const;

const SUBJECT_TYPES = ['checkout', 'ephemeral_account', 'account', 'target', 'user', 'service_token', 'notification_channel', 'notification_route', 'audit'] as const;

const COLUMNS: Column<AuditEventView>[] = [
  { label: 'Id', cell: (e) => <Link to={`/audit/${e.id}`}>{e.id}</Link> },
  { label: 'When', cell: (e) => <When at={e.at} /> },
  { label: 'Event', cell: (e) => <code>{e.type}</code> },
  { label: 'Outcome', cell: (e) => <StatusBadge status={e.outcome} /> },
  { label: 'Actor', cell: (e) => <Person id={e.actorId} /> },
  { label: 'Subject', cell: (e) => <SubjectLink type={e.subjectType} id={e.subjectId} /> },
  { label: 'Sealed', cell: (e) => (e.sealed ? 'yes' : 'not yet') },
];

/** `/audit`: the audit log, newest first, with filters and keyset paging (auditor, admin). */
export function AuditLogPage() {
  const { applied, draft, set, apply, clear } = useUrlFilters(FILTERS);
  const list = usePagedList<AuditEventView>('/v1/audit-events', applied);

  return (
    <Page title="Audit log" actions={<Link to="/audit/verify">Verify the chain</Link>}>
      <form className="filters card" onSubmit={apply} aria-label="Filter the audit log">
        <TextField label="Event type" value={draft.type} onChange={set('type')} placeholder="checkout.approved" autoComplete="off" />
        <SelectField label="Subject type" value={draft.subjectType} onChange={set('subjectType')} options={optionsOf(SUBJECT_TYPES as readonly string[], 'Any subject')} />
        <TextField label="Subject id" value={draft.subjectId} onChange={set('subjectId')} autoComplete="off" />
        <TextField label="Actor id" value={draft.actorId} onChange={set('actorId')} autoComplete="off" />
        <FilterActions onClear={clear} />
      </form>
      <ErrorMessage error={list.error} />
      {list.isPending ? <Loading what="Loading the audit log" /> : <DataTable caption="Audit events, newest first" rows={list.items} columns={COLUMNS} empty="No audit events match." />}
      <MoreButton list={list} />
    </Page>
  );
}

import { useState } from 'react';
import { Link, useParams } from 'react-router';
import { api, ok } from '../../../api/client';
import { MoreButton, useLiveItem, usePagedList } from '../../../api/lists';
import { TargetName, useTargets } from '../../../api/names';
import type { AccountView } from '../../../api/views';
import { ErrorMessage } from '../../../ui/errors';
import { StatusBadge, When } from '../../../ui/format';
import { Loading, Page, Section } from '../../../ui/page';
import { Disclosure } from '../shared/disclosure';
import { optionsOf } from '../shared/fields';
import { DataTable, type Column } from '../shared/table';
import { AccountAdminActions } from './account-actions';
import { OnboardForm } from './onboard-form';
import { Facts, SelectField } from '../../../ui/fields';

const STATUSES = ['available', 'checked_out', 'rotating', 'needs_attention'] as const;

const COLUMNS: Column<AccountView>[] = [
  { label: 'Account', cell: (a) => <Link to={`/admin/accounts/${a.id}`}>{a.username}</Link> },
  { label: 'Target', cell: (a) => <TargetName id={a.targetId} /> },
  { label: 'Status', cell: (a) => <StatusBadge status={a.status} /> },
  { label: 'Last rotated', cell: (a) => <When at={a.lastRotatedAt} /> },
  { label: 'Next rotation', cell: (a) => <When at={a.nextRotationAt} /> },
];

/**
 * The accounts an administrator must look at first (rotations that failed until the vault gave up), then onboarding.
 * Part C's accounts page may render this for admins; /admin/accounts shows it above the full list.
 */
export function AccountsAdminSection() {
  // short by nature, and it changes by itself (a rotation gives up): read again while someone uses the page
  const attention = usePagedList<AccountView>('/v1/accounts', { status: 'needs_attention' }, { live: true, limit: 200 });
  return (
    <>
      <Section title="Needs attention">
        <ErrorMessage error={attention.error} />
        {attention.isPending ? (
          <Loading what="Loading accounts that need attention" />
        ) : (
          <DataTable caption="Accounts that need attention" rows={attention.items} columns={COLUMNS} empty="No account needs attention." />
        )}
      </Section>
      <Section title="Onboard an account">
        <Disclosure label="Onboard an account">{() => <OnboardForm />}</Disclosure>
      </Section>
    </>
  );
}

/** `/admin/accounts`: needs-attention first, onboarding, then every account with filters (admin). */
export function AdminAccountsPage() {
  const targets = useTargets();
  const [status, setStatus] = useState<(typeof STATUSES)[number] | ''>('');
  const [targetId, setTargetId] = useState('');
  const list = usePagedList<AccountView>('/v1/accounts', { status, targetId });
  return (
    <Page title="Account administration">
      <AccountsAdminSection />
      <Section title="All accounts">
        <div className="filters">
          <SelectField label="Status" value={status} onChange={setStatus} options={optionsOf(STATUSES, 'Any status')} />
          <SelectField label="Target" value={targetId} onChange={setTargetId} options={optionsOf((targets.data ?? []).map((t) => ({ value: t.id, label: t.name })), 'Any target')} />
        </div>
        <ErrorMessage error={list.error} />
        {list.isPending ? <Loading what="Loading accounts" /> : <DataTable caption="All accounts" rows={list.items} columns={COLUMNS} empty="No accounts match." />}
        <MoreButton list={list} />
      </Section>
    </Page>
  );
}

/** `/admin/accounts/:id`: one account with the administrator's actions. */
export function AdminAccountPage() {
  const { id = '' } = useParams();
  // a rotation runs in the background: the account is read again until it ends
  const query = useLiveItem(
    ['accounts', id, 'admin'],
    async () => ok(await api.GET('/v1/accounts/{id}', { params: { path: { id } } })) as AccountView,
    (a) => a.status === 'rotating',
  );
  const account = query.data;
  if (!account) return <Page title="Account">{query.error ? <ErrorMessage error={query.error} /> : <Loading what="Loading the account" />}</Page>;
  return (
    <Page title={`Account ${account.username}`}>
      <Section title="Details">
        <Facts
          rows={[
            ['Target', <Link to={`/targets/${account.targetId}`}><TargetName id={account.targetId} /></Link>],
            ['Status', <StatusBadge status={account.status} />],
            ['Last rotated', <When at={account.lastRotatedAt} />],
            ['Next rotation', <When at={account.nextRotationAt} />],
            ['Onboarded', <When at={account.createdAt} />],
          ]}
        />
        <p className="actions">
          <Link to={`/accounts/${account.id}`}>Operator view (checkouts)</Link>
          <Link to={`/audit?subjectType=account&subjectId=${account.id}`}>Audit events of this account</Link>
        </p>
      </Section>
      <AccountAdminActions account={account} />
    </Page>
  );
}

import { Link } from 'react-router';
import { MoreButton, usePagedList } from '../../../api/lists';
import type { AccountView } from '../../../api/views';
import { ErrorMessage } from '../../../ui/errors';
import { Section } from '../../../ui/page';
import { Disclosure } from '../shared/disclosure';
import { DataTable, type Column } from '../shared/table';
import type { AdminTargetView } from '../views';
import { OnboardForm } from './onboard-form';
import { StatusBadge, When } from '../../../ui/format';

const COLUMNS: Column<AccountView>[] = [
  { label: 'Account', cell: (a) => <Link to={`/accounts/${a.id}`}>{a.username}</Link> },
  { label: 'Status', cell: (a) => <StatusBadge status={a.status} /> },
  { label: 'Last rotated', cell: (a) => <When at={a.lastRotatedAt} /> },
];

/** The accounts vaulted on one target, and onboarding another there. */
export function TargetAccounts({ target }: { target: AdminTargetView }) {
  const list = usePagedList<AccountView>('/v1/accounts', { targetId: target.id });
  return (
    <Section title="Accounts">
      <ErrorMessage error={list.error} />
      <DataTable caption={`Accounts on ${target.name}`} rows={list.items} columns={COLUMNS} empty="No accounts on this target yet." />
      <MoreButton list={list} />
      <Disclosure label="Onboard an account here">{() => <OnboardForm targetId={target.id} />}</Disclosure>
    </Section>
  );
}

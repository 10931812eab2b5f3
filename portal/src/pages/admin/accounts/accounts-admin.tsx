import { Link } from 'react-router';
import { usePagedList } from '../../../api/lists';
import { TargetName } from '../../../api/names';
import type { AccountView } from '../../../api/views';
import { ErrorMessage } from '../../../ui/errors';
import { StatusBadge, When } from '../../../ui/format';
import { Loading, Section } from '../../../ui/page';
import { Disclosure } from '../shared/disclosure';
import { DataTable, type Column } from '../shared/table';
import { OnboardForm } from './onboard-form';

const COLUMNS: Column<AccountView>[] = [
  { label: 'Account', cell: (a) => <Link to={`/accounts/${a.id}`}>{a.username}</Link> },
  { label: 'Target', cell: (a) => <TargetName id={a.targetId} /> },
  { label: 'Status', cell: (a) => <StatusBadge status={a.status} /> },
  { label: 'Last rotated', cell: (a) => <When at={a.lastRotatedAt} /> },
  { label: 'Next rotation', cell: (a) => <When at={a.nextRotationAt} /> },
];

/**
 * The accounts an administrator must look at first (rotations that failed until the vault gave up), then onboarding:
 * shown to admins at the top of the accounts page (part C's /accounts).
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

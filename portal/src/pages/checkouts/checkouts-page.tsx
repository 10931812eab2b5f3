import { useState } from 'react';
import { Link } from 'react-router';
import { MoreButton, usePagedList } from '../../api/lists';
import { AccountName, Person } from '../../api/names';
import type { CheckoutView } from '../../api/views';
import { useMe } from '../../session';
import { ErrorMessage } from '../../ui/errors';
import { SelectField, StatusFilter } from '../../ui/fields';
import { duration, Remaining, StatusBadge, When } from '../../ui/format';
import { Loading, Page } from '../../ui/page';

const STATUSES = ['pending_approval', 'active', 'returned', 'expired', 'revoked', 'denied'];

/** Checkouts: your own, or everyone's for approvers, admins and auditors (operators only ever see their own). */
export function CheckoutsPage() {
  const me = useMe();
  const seesAll = me.has('approver', 'admin', 'auditor');
  const [scope, setScope] = useState<'mine' | 'all'>(me.has('operator') || !seesAll ? 'mine' : 'all');
  const [status, setStatus] = useState('');
  const list = usePagedList<CheckoutView>('/v1/checkouts', { status, requesterId: scope === 'mine' ? me.id : undefined }, { live: true });
  return (
    <Page title="Checkouts">
      <form className="filters" aria-label="Filter checkouts" onSubmit={(e) => e.preventDefault()}>
        {seesAll && me.has('operator') && (
          <SelectField
            label="Show"
            value={scope}
            onChange={setScope}
            options={[
              { value: 'mine', label: 'Mine' },
              { value: 'all', label: "Everyone's" },
            ]}
          />
        )}
        <StatusFilter statuses={STATUSES} value={status} onChange={setStatus} />
      </form>
      <ErrorMessage error={list.error} />
      {list.isPending ? <Loading /> : <CheckoutList items={list.items} showRequester={scope === 'all'} />}
      <MoreButton list={list} />
    </Page>
  );
}

export function CheckoutList({ items, showRequester }: { items: CheckoutView[]; showRequester?: boolean }) {
  if (items.length === 0) return <p className="muted">No checkouts.</p>;
  return (
    <ul className="items">
      {items.map((c) => (
        <li key={c.id} className="item">
          <div className="item-head">
            <Link to={`/checkouts/${c.id}`}>
              Checkout of <AccountName id={c.accountId} link={false} />
            </Link>
            <StatusBadge status={c.status} />
            {c.breakGlass && <span className="badge bad">break-glass</span>}
          </div>
          <div className="item-meta">
            {showRequester && (
              <>
                by <Person id={c.requesterId} name={c.requesterName} /> ·{' '}
              </>
            )}
            requested <When at={c.requestedAt} /> · for {duration(c.ttlSeconds)}
            {c.status === 'active' && (
              <>
                {' '}
                · <Remaining until={c.expiresAt} />
              </>
            )}
          </div>
        </li>
      ))}
    </ul>
  );
}

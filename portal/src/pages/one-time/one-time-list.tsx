import { useState } from 'react';
import { Link } from 'react-router';
import { MoreButton, usePagedList } from '../../api/lists';
import { Person, TargetName } from '../../api/names';
import type { EphemeralView } from '../../api/views';
import { useMe } from '../../session';
import { ErrorMessage } from '../../ui/errors';
import { StatusFilter } from '../../ui/fields';
import { duration, Remaining, StatusBadge, When } from '../../ui/format';
import { Loading, Page, Section } from '../../ui/page';
import { accessSummary } from './access';
import { RequestOneTime } from './request-form';

const STATUSES = ['pending_approval', 'approved', 'creating', 'active', 'revoking', 'revoked', 'expired', 'denied', 'needs_attention'];

/** Vendors: their one-time accounts (claim from the page of one). Operators and admins also request one here. */
export function OneTimeAccountsPage() {
  const me = useMe();
  const [status, setStatus] = useState('');
  const list = usePagedList<EphemeralView>('/v1/ephemeral-accounts', { status }, { live: true });
  const title = me.has('approver', 'admin', 'auditor') ? 'One-time accounts' : me.has('vendor') ? 'Your one-time accounts' : 'One-time accounts you requested';
  return (
    <Page title="One-time accounts">
      {me.has('operator', 'admin') && <RequestOneTime />}
      <Section title={title} className="plain">
        <form className="filters" aria-label="Filter one-time accounts" onSubmit={(e) => e.preventDefault()}>
          <StatusFilter statuses={STATUSES} value={status} onChange={setStatus} />
        </form>
        <ErrorMessage error={list.error} />
        {list.isPending ? (
          <Loading />
        ) : list.items.length === 0 ? (
          <p className="muted">No one-time accounts.</p>
        ) : (
          <ul className="items">
            {list.items.map((e) => (
              <li key={e.id} className="item">
                <div className="item-head">
                  <Link to={`/one-time-accounts/${e.id}`}>
                    One-time account on <TargetName id={e.targetId} />
                  </Link>
                  <StatusBadge status={e.status} />
                  {e.status === 'approved' && e.vendorId === me.id && <span className="badge ok">ready to claim</span>}
                </div>
                <div className="item-meta">
                  for <Person id={e.vendorId} name={e.vendorName} /> · {accessSummary(e.access)} · {duration(e.ttlSeconds)} · requested <When at={e.requestedAt} />
                  {e.status === 'active' && (
                    <>
                      {' '}
                      · <Remaining until={e.expiresAt} />
                    </>
                  )}
                </div>
              </li>
            ))}
          </ul>
        )}
        <MoreButton list={list} />
      </Section>
    </Page>
  );
}

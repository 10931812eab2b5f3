import { useState, type ReactNode } from 'react';
import { Link } from 'react-router';
import { usePagedList } from '../../api/lists';
import { AccountName, Person, TargetName, useAccount } from '../../api/names';
import type { CheckoutView, EphemeralView } from '../../api/views';
import { useMe } from '../../session';
import { ErrorMessage, Notice } from '../../ui/errors';
import { Facts } from '../../ui/fields';
import { duration, Remaining, When } from '../../ui/format';
import { Loading, Page, Section } from '../../ui/page';
import { policySummary } from '../accounts/policy-summary';
import { accessSummary } from '../one-time/access';
import { DecisionPanel } from './decision';
import { RequesterHistory } from './history';

/**
 * What the approver may decide: pending checkouts and one-time account requests of others that they have not decided
 * yet, each with who asks, for what, why, for how long, under which policy, and the requester's recent history.
 */
export function ApprovalsPage() {
  const me = useMe();
  const checkouts = usePagedList<CheckoutView>('/v1/checkouts', { status: 'pending_approval' }, { live: true, limit: 100 });
  const requests = usePagedList<EphemeralView>('/v1/ephemeral-accounts', { status: 'pending_approval' }, { live: true, limit: 100 });
  const undecided = <T extends { requesterId: string; approvals: Array<{ approverId: string; matchesRequest: boolean }> }>(items: T[]) =>
    items.filter((i) => i.requesterId !== me.id && !i.approvals.some((a) => a.approverId === me.id && a.matchesRequest));
  const pendingCheckouts = undecided(checkouts.items);
  const pendingRequests = undecided(requests.items);
  // a decided request leaves the inbox: the outcome is said here
  const [notice, setNotice] = useState('');
  const onDecided = (what: string) => (outcome: string) => setNotice(`${outcome}: ${what}.`);
  return (
    <Page title="Approvals">
      <Notice>{notice}</Notice>
      <Inbox title="Checkouts waiting for you" list={checkouts} items={pendingCheckouts} render={(c) => <CheckoutRequest key={c.id} checkout={c} onDecided={onDecided(`checkout request of ${c.justification.slice(0, 60)}`)} />} />
      <Inbox title="One-time accounts waiting for you" list={requests} items={pendingRequests} render={(r) => <OneTimeRequest key={r.id} request={r} onDecided={onDecided(`one-time account request ${r.justification.slice(0, 60)}`)} />} />
    </Page>
  );
}

function Inbox<T>({ title, list, items, render }: { title: string; list: { error: unknown; isPending: boolean }; items: T[]; render(item: T): ReactNode }) {
  return (
    <Section title={`${title} (${items.length})`} className="plain">
      <ErrorMessage error={list.error} />
      {list.isPending ? <Loading /> : items.length === 0 ? <p className="muted">Nothing to decide.</p> : items.map(render)}
    </Section>
  );
}

/** How many approvals that count, of how many needed. */
const tally = (r: CheckoutView | EphemeralView) => `${r.approvals.filter((a) => a.decision === 'approve' && a.matchesRequest).length} of ${r.approvalsRequired}`;

function CheckoutRequest({ checkout: c, onDecided }: { checkout: CheckoutView; onDecided(outcome: string): void }) {
  const { data: account } = useAccount(c.accountId);
  return (
    <article className="card stack" aria-label={`Checkout request ${c.id.slice(0, 8)}`}>
      <h3>
        <Link to={`/checkouts/${c.id}`}>
          <Person id={c.requesterId} name={c.requesterName} /> asks for <AccountName id={c.accountId} link={false} />
        </Link>
        {c.breakGlass && <span className="badge bad">break-glass</span>}
      </h3>
      <Facts
        rows={[
          ['Why', <span className="prewrap">{c.justification}</span>],
          ['How long', duration(c.ttlSeconds)],
          [
            'Requested',
            <>
              <When at={c.requestedAt} /> · <Remaining until={c.expiresAt} label="left to decide" />
            </>,
          ],
          ['Policy', account ? policySummary(account.policy) : `${c.approvalsRequired} approvals`],
          ['Approvals', tally(c)],
        ]}
      />
      <RequesterHistory requesterId={c.requesterId} exclude={c.id} level={4} />
      <DecisionPanel kind="checkouts" request={c} onDecided={onDecided} />
    </article>
  );
}

function OneTimeRequest({ request: r, onDecided }: { request: EphemeralView; onDecided(outcome: string): void }) {
  return (
    <article className="card stack" aria-label={`One-time account request ${r.id.slice(0, 8)}`}>
      <h3>
        <Link to={`/one-time-accounts/${r.id}`}>
          <Person id={r.requesterId} name={r.requesterName} /> asks for a one-time account on <TargetName id={r.targetId} />
        </Link>
      </h3>
      <Facts
        rows={[
          ['For vendor', <Person id={r.vendorId} name={r.vendorName} />],
          ['Why', <span className="prewrap">{r.justification}</span>],
          ['How long', `${duration(r.ttlSeconds)} from the claim`],
          ['Access', accessSummary(r.access)],
          [
            'Requested',
            <>
              <When at={r.requestedAt} /> · <Remaining until={r.requestDeadline} label="left to decide" />
            </>,
          ],
          ['Approvals', tally(r)],
        ]}
      />
      <RequesterHistory requesterId={r.requesterId} level={4} />
      <DecisionPanel kind="ephemeral-accounts" request={r} onDecided={onDecided} />
    </article>
  );
}

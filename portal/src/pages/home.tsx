import { Link } from 'react-router';
import { usePagedList } from '../api/lists';
import type { CheckoutView, EphemeralView } from '../api/views';
import { useMe } from '../session';
import { Page, Section } from '../ui/page';
import { CheckoutList } from './checkouts/checkouts-page';

/** What needs me, by role: my live checkouts, what waits for my approval, one-time accounts ready to claim. */
export function HomePage() {
  const me = useMe();
  return (
    <Page title="Home">
      <p>Signed in as {me.username} ({me.roles.join(', ')}).</p>
      {me.has('operator') && <MyCheckouts />}
      {me.has('approver') && <WaitingForMe />}
      {me.has('vendor') && <ReadyToClaim />}
      {me.has('admin', 'auditor') && (
        <Section title="Administration and audit">
          <p>Use the menu for targets, users, policies, the audit log, break-glass reviews and notifications.</p>
        </Section>
      )}
    </Page>
  );
}

function MyCheckouts() {
  const me = useMe();
  const active = usePagedList<CheckoutView>('/v1/checkouts', { status: 'active', requesterId: me.id }, { live: true });
  const pending = usePagedList<CheckoutView>('/v1/checkouts', { status: 'pending_approval', requesterId: me.id }, { live: true });
  const items = [...active.items, ...pending.items];
  return (
    <Section title="Your current checkouts">
      {items.length ? <CheckoutList items={items} /> : <p className="muted">None right now.</p>}
      <p>
        <Link to="/accounts">Find an account to check out</Link>
      </p>
    </Section>
  );
}

function WaitingForMe() {
  const me = useMe();
  const checkouts = usePagedList<CheckoutView>('/v1/checkouts', { status: 'pending_approval' }, { live: true, limit: 100 });
  const requests = usePagedList<EphemeralView>('/v1/ephemeral-accounts', { status: 'pending_approval' }, { live: true, limit: 100 });
  const mine = (i: CheckoutView | EphemeralView) => i.requesterId !== me.id && !i.approvals.some((a) => a.approverId === me.id && a.matchesRequest);
  const count = checkouts.items.filter(mine).length + requests.items.filter(mine).length;
  return (
    <Section title="Waiting for your approval">
      <p>
        {count === 0 ? 'Nothing waits for you.' : `${count} request${count === 1 ? '' : 's'} wait${count === 1 ? 's' : ''} for you.`}{' '}
        <Link to="/approvals">Open approvals</Link>
      </p>
    </Section>
  );
}

function ReadyToClaim() {
  const me = useMe();
  const approved = usePagedList<EphemeralView>('/v1/ephemeral-accounts', { status: 'approved', vendorId: me.id }, { live: true });
  const active = usePagedList<EphemeralView>('/v1/ephemeral-accounts', { status: 'active', vendorId: me.id }, { live: true });
  return (
    <Section title="Your one-time accounts">
      {approved.items.length + active.items.length === 0 ? (
        <p className="muted">None ready or active.</p>
      ) : (
        <ul className="items compact">
          {approved.items.map((e) => (
            <li key={e.id}>
              <Link to={`/one-time-accounts/${e.id}`}>Ready to claim: one-time account {e.id.slice(0, 8)}</Link>
            </li>
          ))}
          {active.items.map((e) => (
            <li key={e.id}>
              <Link to={`/one-time-accounts/${e.id}`}>Active: {e.username ?? e.id.slice(0, 8)}</Link>
            </li>
          ))}
        </ul>
      )}
      <p>
        <Link to="/one-time-accounts">All your one-time accounts</Link>
      </p>
    </Section>
  );
}

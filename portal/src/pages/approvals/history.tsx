import { Link } from 'react-router';
import { AccountName } from '../../api/names';
import { usePagedList } from '../../api/lists';
import type { CheckoutView } from '../../api/views';
import { duration, StatusBadge, When } from '../../ui/format';

/**
 * What the requester asked for lately: context for an approver deciding on a new request. Not a landmark (an inbox holds
 * several of them), a heading of the level that fits where it stands.
 */
export function RequesterHistory({ requesterId, exclude, level = 2 }: { requesterId: string; exclude?: string; level?: 2 | 4 }) {
  const Heading = level === 2 ? 'h2' : 'h4';
  const list = usePagedList<CheckoutView>('/v1/checkouts', { requesterId }, { limit: 6 });
  const items = list.items.filter((c) => c.id !== exclude).slice(0, 5);
  return (
    <div className="card history">
      <Heading>Requester's recent checkouts</Heading>
      {list.isPending ? (
        <p className="muted">Loading…</p>
      ) : items.length === 0 ? (
        <p className="muted">No other checkouts.</p>
      ) : (
        <ul className="items compact">
          {items.map((c) => (
            <li key={c.id}>
              <Link to={`/checkouts/${c.id}`}>
                <When at={c.requestedAt} />
              </Link>{' '}
              <AccountName id={c.accountId} link={false} /> · {duration(c.ttlSeconds)} · <StatusBadge status={c.status} />
              {c.breakGlass && <span className="badge bad">break-glass</span>}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

import { useId, useState } from 'react';
import { Link } from 'react-router';
import { MoreButton, usePagedList } from '../../api/lists';
import { TargetName, useTargetMap } from '../../api/names';
import type { AccountView, TargetView } from '../../api/views';
import { useMe } from '../../session';
import { ErrorMessage } from '../../ui/errors';
import { SelectField, StatusFilter } from '../../ui/fields';
import { StatusBadge } from '../../ui/format';
import { Loading, Page } from '../../ui/page';
import { AccountsAdminSection } from '../admin/accounts/accounts-admin';
import { policySummary } from './policy-summary';

const STATUSES = ['available', 'checked_out', 'rotating', 'needs_attention'];

/** Whether an account matches the search words (its username, its target's name, type or host). */
function matches(a: AccountView, target: TargetView | undefined, search: string): boolean {
  const words = search.toLowerCase().split(/\s+/).filter(Boolean);
  const hay = [a.username, target?.name, target?.type, target?.host].filter(Boolean).join(' ').toLowerCase();
  return words.every((w) => hay.includes(w));
}

/** Accounts the vault manages: search by target and username; operators open one to request a checkout. */
export function AccountsPage() {
  const me = useMe();
  const targets = useTargetMap();
  const [search, setSearch] = useState('');
  const [status, setStatus] = useState('');
  const [targetId, setTargetId] = useState('');
  const searchId = useId();
  const list = usePagedList<AccountView>('/v1/accounts', { status, targetId }, { limit: 200 });
  const shown = list.items.filter((a) => matches(a, targets.get(a.targetId), search));
  return (
    <Page title="Accounts">
      {me.has('admin') && <AccountsAdminSection />}
      <form className="filters" role="search" aria-label="Search accounts" onSubmit={(e) => e.preventDefault()}>
        <div className="field">
          <label htmlFor={searchId}>Search target or username</label>
          <input id={searchId} type="search" value={search} onChange={(e) => setSearch(e.target.value)} />
        </div>
        {targets.size > 0 && (
          <SelectField label="Target" value={targetId} onChange={setTargetId} options={[{ value: '', label: 'any' }, ...[...targets.values()].map((t) => ({ value: t.id, label: t.name }))]} />
        )}
        <StatusFilter statuses={STATUSES} value={status} onChange={setStatus} />
      </form>
      <ErrorMessage error={list.error} />
      {list.isPending ? (
        <Loading />
      ) : shown.length === 0 ? (
        <p className="muted">No accounts match.</p>
      ) : (
        <ul className="items" aria-label="Accounts">
          {shown.map((a) => (
            <li key={a.id} className="item">
              <div className="item-head">
                <Link to={`/accounts/${a.id}`}>
                  {a.username} on <TargetName id={a.targetId} />
                </Link>
                <StatusBadge status={a.status} />
              </div>
              <div className="item-meta">{policySummary(a.policy)}</div>
              {me.has('operator') && a.status === 'available' && (
                <div className="actions">
                  <Link className="button" to={`/accounts/${a.id}`} aria-label={`Request checkout of ${a.username}`}>
                    Request checkout
                  </Link>
                </div>
              )}
            </li>
          ))}
        </ul>
      )}
      <MoreButton list={list} />
    </Page>
  );
}

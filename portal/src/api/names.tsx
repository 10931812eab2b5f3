import { useQuery } from '@tanstack/react-query';
import { Link } from 'react-router';
import { useMe } from '../session';
import { shortId } from '../ui/format';
import { api, ok } from './client';
import type { TargetView } from './views';

const ALL = { limit: 200 } as const;
const STALE = 60_000;

/**
 * Names for the ids in views (targets, accounts, people), read only by the roles allowed to list them: vendors cannot
 * list targets, nor anyone but admins users (the views carry requesterName/vendorName), so they see a short id instead.
 */
export function useTargets() {
  const me = useMe();
  return useQuery({
    queryKey: ['targets', 'all'],
    // every role but vendors (and schedulers) may list targets
    enabled: me.has('admin', 'operator', 'approver', 'auditor'),
    staleTime: STALE,
    queryFn: async () => ok(await api.GET('/v1/targets', { params: { query: ALL } })).items,
  });
}

export function useTargetMap(): Map<string, TargetView> {
  const { data } = useTargets();
  return new Map((data ?? []).map((t) => [t.id, t]));
}

export function useAccount(id: string | undefined) {
  const me = useMe();
  return useQuery({
    queryKey: ['accounts', id],
    enabled: !!id && me.has('admin', 'operator', 'approver', 'auditor'),
    staleTime: STALE,
    queryFn: async () => ok(await api.GET('/v1/accounts/{id}', { params: { path: { id: id! } } })),
  });
}

function useUserMap(): Map<string, string> {
  const me = useMe();
  const { data } = useQuery({
    queryKey: ['users', 'names'],
    enabled: me.has('admin'),
    staleTime: STALE,
    queryFn: async () => ok(await api.GET('/v1/users', { params: { query: ALL } })).items,
  });
  return new Map((data ?? []).map((u) => [u.id, u.username]));
}

/**
 * A person: "you", their username (`name` when the view carries it — requesterName, vendorName —, else from the user
 * list for admins), or the id's first characters.
 */
export function Person({ id, name: given }: { id: string | null | undefined; name?: string | null }) {
  const me = useMe();
  const names = useUserMap();
  if (!id) return <span className="muted">—</span>;
  if (id === me.id) return <span>you ({me.username})</span>;
  const name = given ?? names.get(id);
  return name ? <span>{name}</span> : <abbr title={id}>user {shortId(id)}</abbr>;
}

/** A target by name and type when it can be read (`name`: the name a view carries, for roles that cannot list targets). */
export function TargetName({ id, name }: { id: string; name?: string | null }) {
  const target = useTargetMap().get(id);
  if (target)
    return (
      <span>
        {target.name} <span className="muted">({target.type})</span>
      </span>
    );
  return name ? <span>{name}</span> : <abbr title={id}>target {shortId(id)}</abbr>;
}

/** An account as `username on target`, linked to its page (`targetName`: the target's name a view carries). */
export function AccountName({ id, link = true, targetName }: { id: string; link?: boolean; targetName?: string | null }) {
  const { data: account } = useAccount(id);
  const label = account ? (
    <>
      {account.username} on <TargetName id={account.targetId} name={targetName} />
    </>
  ) : (
    <abbr title={id}>account {shortId(id)}</abbr>
  );
  return link ? <Link to={`/accounts/${id}`}>{label}</Link> : label;
}

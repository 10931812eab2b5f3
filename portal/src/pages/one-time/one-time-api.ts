import { useQuery } from '@tanstack/react-query';
import { api, ok, withMfa } from '../../api/client';
import { useLiveItem } from '../../api/lists';
import type { EphemeralAccess, EphemeralStatus } from '../../api/views';

/** Statuses that move by themselves (decisions, creation, expiry, removal): polled while the tab is visible. */
const LIVE: readonly EphemeralStatus[] = ['pending_approval', 'approved', 'creating', 'active', 'revoking'];
/** Still something to revoke: an open request or an account that is (or may be) on the target. */
export const REVOCABLE: readonly EphemeralStatus[] = ['pending_approval', 'approved', 'creating', 'active', 'needs_attention'];

export function useOneTimeAccount(id: string) {
  const read = async () => ok(await api.GET('/v1/ephemeral-accounts/{id}', { params: { path: { id } } }));
  return useLiveItem(['one-time', id], read, (e) => LIVE.includes(e.status));
}

export type { EphemeralPolicy } from '../../api/views';

export function useEphemeralPolicy(targetId: string) {
  return useQuery({
    queryKey: ['ephemeral-policy', targetId],
    enabled: !!targetId,
    queryFn: async () => ok(await api.GET('/v1/targets/{id}/ephemeral-policy', { params: { path: { id: targetId } } })),
  });
}

const path = (id: string) => ({ params: { path: { id } } });

export const oneTimeCalls = {
  async request(body: { targetId: string; vendorUserId: string; ttlSeconds: number; justification: string; access?: EphemeralAccess }) {
    return ok(await api.POST('/v1/ephemeral-accounts', { body }));
  },
  async claim(id: string, code: string) {
    return ok(await api.POST('/v1/ephemeral-accounts/{id}/claim', withMfa(code, path(id))));
  },
  async revoke(id: string) {
    return ok(await api.POST('/v1/ephemeral-accounts/{id}/revoke', path(id)));
  },
};

import { api, ok, withMfa } from '../../api/client';
import { useLiveItem } from '../../api/lists';
import type { CheckoutView, CredentialView } from '../../api/views';

/** Statuses that change by themselves (approval, expiry): read again every LIVE_MS while the tab is visible. */
const LIVE: ReadonlyArray<CheckoutView['status']> = ['pending_approval', 'active'];

export function useCheckout(id: string) {
  const read = async () => ok(await api.GET('/v1/checkouts/{id}', { params: { path: { id } } }));
  return useLiveItem(['checkout', id], read, (c) => LIVE.includes(c.status));
}

const path = (id: string) => ({ params: { path: { id } } });

/** The checkout calls the pages make; each MFA one takes the step-up code. */
export const checkoutCalls = {
  async request(body: { accountId: string; justification: string; ttlSeconds: number; breakGlass?: boolean }, code: string) {
    return ok(await api.POST('/v1/checkouts', withMfa(code, { body })));
  },
  async reveal(id: string, code: string) {
    return ok(await api.POST('/v1/checkouts/{id}/reveal', withMfa(code, path(id))));
  },
  async extend(id: string, ttlSeconds: number, code: string) {
    return ok(await api.POST('/v1/checkouts/{id}/extend', withMfa(code, { ...path(id), body: { ttlSeconds } })));
  },
  async checkin(id: string) {
    return ok(await api.POST('/v1/checkouts/{id}/checkin', path(id)));
  },
  async revoke(id: string, reason: string) {
    return ok(await api.POST('/v1/checkouts/{id}/revoke', { ...path(id), body: reason ? { reason } : {} }));
  },
};

/**
 * A credential answered by the checkout request, handed to the checkout page it navigates to: in memory only, read
 * once (not router state, which the browser keeps in its session history).
 */
const handed = new Map<string, CredentialView>();
export const credentialHandoff = {
  give: (id: string, c: CredentialView) => void handed.set(id, c),
  peek: (id: string) => handed.get(id) ?? null,
  drop: (id: string) => void handed.delete(id),
};

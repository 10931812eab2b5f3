/**
 * The answer shapes the pages read: the generated document's own (schema.d.ts, `npm run portal:api`), so a changed API
 * fails the portal's type-check wherever a page reads what moved.
 */
import type { components } from './schema';

type Schemas = components['schemas'];

export type MeView = Schemas['MeView'];
export type Role = MeView['roles'][number];
/** GET/POST /v1/auth/session. */
export type SessionView = Schemas['BrowserSessionView'];
/** A keyset page of any list (`?limit=&cursor=`). */
export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}
export type ApprovalView = Schemas['ApprovalView'];
export type CheckoutView = Schemas['CheckoutView'];
export type CheckoutStatus = CheckoutView['status'];
export type CredentialView = Schemas['CredentialView'];
export type AccountPolicy = Schemas['AccountPolicy'];
export type AccountView = Schemas['AccountView'];
export type TargetView = Schemas['TargetView'];
export type EphemeralView = Schemas['EphemeralView'];
export type EphemeralStatus = EphemeralView['status'];
export type EphemeralAccess = Schemas['EphemeralAccess'];
export type EphemeralPolicy = Schemas['EphemeralPolicy'];
export type ClaimView = Schemas['ClaimView'];

/**
 * The answer shapes the pages read. Written from the server's views (src/views.ts) until the generated schema lands;
 * then each becomes an alias of `components['schemas'][…]` so a changed API fails the portal's type-check.
 */
export type Role = 'admin' | 'operator' | 'approver' | 'vendor' | 'auditor' | 'scheduler';

export interface MeView {
  id: string;
  username: string;
  roles: Role[];
  mfaEnrolled: boolean;
  kind: 'user' | 'service';
  email: string | null;
  mutedNotifications: string[];
}

export interface SessionView {
  csrfToken: string;
  expiresAt: string;
  idleTimeoutSeconds: number;
  mfaEnrollmentRequired: boolean;
  user: MeView;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export interface ApprovalView {
  approverId: string;
  decision: 'approve' | 'deny';
  comment: string | null;
  decidedAt: string;
  /** False when the request changed after this decision: it no longer counts. */
  matchesRequest: boolean;
}

export type CheckoutStatus = 'pending_approval' | 'active' | 'returned' | 'expired' | 'revoked' | 'denied';

export interface CheckoutView {
  id: string;
  accountId: string;
  requesterId: string;
  status: CheckoutStatus;
  justification: string;
  ttlSeconds: number;
  breakGlass: boolean;
  approvalsRequired: number;
  approvals: ApprovalView[];
  requestDigest: string;
  requestedAt: string;
  expiresAt: string | null;
  approvalDeadline: string | null;
  activatedAt: string | null;
  endedAt: string | null;
  endedBy: string | null;
  endReason: string | null;
  rotationId: string | null;
  review: { reviewedAt: string; reviewedBy: string | null; comment: string | null } | null;
}

export interface CredentialView {
  username: string;
  password: string;
  host: string;
  port: number;
}

export interface AccountPolicy {
  checkoutTtlSeconds: number;
  maxCheckoutTtlSeconds: number;
  approvalsRequired: number;
  rotateAfterCheckin: boolean;
  rotationIntervalSeconds: number;
  passwordLength: number;
  passwordClasses: string[];
  breakGlassAllowed: boolean;
  breakGlassTtlSeconds: number;
}

export interface AccountView {
  id: string;
  targetId: string;
  username: string;
  status: string;
  lastRotatedAt: string | null;
  nextRotationAt: string | null;
  policy: AccountPolicy;
  createdAt: string;
  updatedAt: string;
}

export interface TargetView {
  id: string;
  name: string;
  type: 'ssh' | 'postgres' | 'mysql';
  host: string;
  port: number;
}

export type EphemeralStatus = 'pending_approval' | 'approved' | 'denied' | 'creating' | 'active' | 'revoking' | 'revoked' | 'expired' | 'needs_attention';

export interface EphemeralAccess {
  groups?: string[];
  database?: string;
  grantRoles?: string[];
  grants?: Array<{ privileges: string[]; on: string }>;
}

export interface EphemeralView {
  id: string;
  targetId: string;
  vendorId: string;
  requesterId: string;
  status: EphemeralStatus;
  justification: string;
  ttlSeconds: number;
  access: EphemeralAccess;
  approvalsRequired: number;
  approvals: ApprovalView[];
  requestDigest: string;
  requestedAt: string;
  requestDeadline: string;
  username: string | null;
  claimedAt: string | null;
  expiresAt: string | null;
  endedAt: string | null;
  endedBy: string | null;
  endReason: string | null;
  removalAttempts: number;
  lastError: string | null;
}

export interface ClaimView {
  id: string;
  username: string;
  password: string;
  host: string;
  port: number;
  expiresAt: string;
}

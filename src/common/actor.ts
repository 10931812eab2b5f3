export const ROLES = ['admin', 'operator', 'approver', 'vendor', 'auditor', 'scheduler'] as const;
export type Role = (typeof ROLES)[number];

/** Who is calling: a logged-in user or (later) a service token. Attached to the request by the auth guard. */
export interface Actor {
  id: string;
  kind: 'user' | 'service';
  name: string;
  roles: Role[];
  /** Users only: TOTP enrollment is confirmed. Until then a user may only enroll. */
  mfaEnrolled: boolean;
}

import type { Role } from '../api/views';

/** A link of the main navigation, shown to anyone holding one of `roles` (empty: everyone signed in). */
export interface NavItem {
  to: string;
  label: string;
  roles: Role[];
}

/** Part C's pages; the admin and auditor pages add theirs through pages/extra-routes.tsx. */
export const CORE_NAV: NavItem[] = [
  { to: '/', label: 'Home', roles: [] },
  { to: '/accounts', label: 'Accounts', roles: ['operator', 'admin', 'approver', 'auditor'] },
  { to: '/checkouts', label: 'Checkouts', roles: ['operator', 'admin', 'approver', 'auditor'] },
  { to: '/approvals', label: 'Approvals', roles: ['approver'] },
  { to: '/one-time-accounts', label: 'One-time accounts', roles: ['operator', 'vendor', 'approver', 'admin', 'auditor'] },
];

export function visibleNav(items: NavItem[], roles: readonly Role[]): NavItem[] {
  return items.filter((i) => i.roles.length === 0 || i.roles.some((r) => roles.includes(r)));
}

import { Navigate, useParams, type RouteObject } from 'react-router';
import type { NavItem } from '../../ui/nav';
import { OidcProvidersPage } from './oidc/oidc-providers-page';
import { PoliciesPage } from './policies/policies-page';
import { TargetPage } from './targets/target-page';
import { TargetsPage } from './targets/targets-page';
import { TokensPage } from './tokens/tokens-page';
import { UserPage } from './users/user-page';
import { UsersPage } from './users/users-page';
import './admin.css';

/**
 * The administrator's pages. The vault refuses what a role may not do (403); the navigation only hides links a role
 * could not use.
 */
/** Where /admin/accounts/:id went: account administration is on the account's own page now. */
function ToAccount() {
  return <Navigate to={`/accounts/${useParams().id ?? ''}`} replace />;
}

export const adminRoutes: RouteObject[] = [
  // account administration moved to the accounts pages; earlier links still arrive
  { path: 'admin/accounts', element: <Navigate to="/accounts" replace /> },
  { path: 'admin/accounts/:id', element: <ToAccount /> },
  { path: 'targets', element: <TargetsPage /> },
  { path: 'targets/:id', element: <TargetPage /> },
  { path: 'policies', element: <PoliciesPage /> },
  { path: 'users', element: <UsersPage /> },
  { path: 'users/:id', element: <UserPage /> },
  { path: 'tokens', element: <TokensPage /> },
  { path: 'oidc-providers', element: <OidcProvidersPage /> },
];

export const adminNav: NavItem[] = [
  { to: '/targets', label: 'Targets', roles: ['admin'] },
  { to: '/policies', label: 'Policies', roles: ['admin'] },
  { to: '/users', label: 'Users', roles: ['admin'] },
  { to: '/tokens', label: 'Service tokens', roles: ['admin'] },
  { to: '/oidc-providers', label: 'Single sign-on', roles: ['admin'] },
];

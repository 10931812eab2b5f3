import type { RouteObject } from 'react-router';
import { AccountPage } from './accounts/account-page';
import { AccountsPage } from './accounts/accounts-page';
import { ApprovalsPage } from './approvals/approvals-page';
import { CheckoutPage } from './checkouts/checkout-page';
import { CheckoutsPage } from './checkouts/checkouts-page';
import { HomePage } from './home';
import { MePage } from './me/me-page';
import { OneTimeAccountsPage } from './one-time/one-time-list';
import { OneTimeAccountPage } from './one-time/one-time-page';

/** Part C's pages under the signed-in layout (paths relative to the /portal basename). */
export const corePages: RouteObject[] = [
  { index: true, element: <HomePage /> },
  { path: 'accounts', element: <AccountsPage /> },
  { path: 'accounts/:id', element: <AccountPage /> },
  { path: 'checkouts', element: <CheckoutsPage /> },
  { path: 'checkouts/:id', element: <CheckoutPage /> },
  { path: 'approvals', element: <ApprovalsPage /> },
  { path: 'one-time-accounts', element: <OneTimeAccountsPage /> },
  { path: 'one-time-accounts/:id', element: <OneTimeAccountPage /> },
  { path: 'me', element: <MePage /> },
];

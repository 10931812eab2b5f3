import type { RouteObject } from 'react-router';
import type { NavItem } from '../../ui/nav';
import { PlayerPage } from './player-page';
import { SessionsPage } from './sessions-page';

/** SSH gateway sessions and their recordings (the player for auditors and admins). */
export const recordingsRoutes: RouteObject[] = [
  { path: 'sessions', element: <SessionsPage /> },
  { path: 'sessions/:id/play', element: <PlayerPage /> },
];

export const recordingsNav: NavItem[] = [{ to: '/sessions', label: 'Sessions', roles: ['auditor', 'admin', 'operator', 'vendor'] }];

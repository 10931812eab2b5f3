import type { RouteObject } from 'react-router';
import type { NavItem } from '../ui/nav';
import { adminNav, adminRoutes } from './admin/routes';
import { auditNav, auditRoutes } from './audit/routes';
import { recordingsNav, recordingsRoutes } from './recordings/routes';

/**
 * The admin and auditor pages (pages/admin/**, pages/audit/**) register here: routes are children of the signed-in
 * layout (paths without the /portal basename, e.g. `targets/:id`), nav items show to the roles listed.
 */
export const extraRoutes: RouteObject[] = [...adminRoutes, ...auditRoutes, ...recordingsRoutes];

export const extraNav: NavItem[] = [...adminNav, ...auditNav, ...recordingsNav];

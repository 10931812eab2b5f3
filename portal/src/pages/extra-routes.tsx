import type { RouteObject } from 'react-router';
import type { NavItem } from '../ui/nav';

/**
 * The admin and auditor pages (pages/admin/**, pages/audit/**) register here: routes are children of the signed-in
 * layout (paths without the /portal basename, e.g. `targets/:id`), nav items show to the roles listed.
 */
export const extraRoutes: RouteObject[] = [];

export const extraNav: NavItem[] = [];

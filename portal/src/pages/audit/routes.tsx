import type { RouteObject } from 'react-router';
import type { NavItem } from '../../ui/nav';
import { AuditEventPage } from './audit-event-page';
import { AuditLogPage } from './audit-log-page';
import { BreakGlassPage } from './break-glass-page';
import { ChannelPage } from './channel-page';
import { NotificationsPage } from './notifications-page';
import { VerifyPage } from './verify-page';
import '../admin/admin.css';

/** The auditor's pages (admins read them too; reviewing break-glass checkouts is for approvers). */
export const auditRoutes: RouteObject[] = [
  { path: 'audit', element: <AuditLogPage /> },
  { path: 'audit/verify', element: <VerifyPage /> },
  { path: 'audit/:id', element: <AuditEventPage /> },
  { path: 'break-glass', element: <BreakGlassPage /> },
  { path: 'notifications', element: <NotificationsPage /> },
  { path: 'notifications/:id', element: <ChannelPage /> },
];

export const auditNav: NavItem[] = [
  { to: '/audit', label: 'Audit log', roles: ['auditor', 'admin'] },
  { to: '/break-glass', label: 'Break-glass', roles: ['auditor', 'approver', 'admin'] },
  { to: '/notifications', label: 'Notifications', roles: ['auditor', 'admin'] },
];

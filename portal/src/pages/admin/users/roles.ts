import type { Role } from '../../../api/views';

/** Every role a person may hold (scheduler is for service tokens but may be given to a user too). */
export const ROLES: readonly Role[] = ['admin', 'operator', 'approver', 'vendor', 'auditor', 'scheduler'];

/** Service tokens cannot answer a step-up code, so they hold only the roles that never need one. */
export const SERVICE_TOKEN_ROLES = ['scheduler', 'auditor'] as const satisfies readonly Role[];
export type ServiceTokenRole = (typeof SERVICE_TOKEN_ROLES)[number];

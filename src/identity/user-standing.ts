import { Role, ROLES } from '../common/actor';
import { sqlColumn } from '../database/sql-names';

/**
 * SQL fragments about a user's standing (enabled, roles) for other owners' statements: a sweep that ends what a
 * lost role granted, an approval that counts only while its approver still is one. Each is a boolean expression on
 * the `users` table (owned here) about the user whose id is in `userIdColumn` (a column of the caller's statement,
 * e.g. `c.requester_id`); the caller composes it into its own WHERE or SELECT list, so the check stays in the one
 * statement and the table name stays in this folder.
 */

/** True when the user is disabled or does not hold `role` (false for an unknown id). */
export function userLacksRoleSql(userIdColumn: string, role: Role): string {
  return `EXISTS (SELECT 1 FROM users u_standing WHERE u_standing.id = ${column(userIdColumn)} AND (u_standing.disabled OR NOT ${roleLiteral(role)} = ANY (u_standing.roles)))`;
}

/** True when the user is enabled and holds `role`. */
export function userHoldsRoleSql(userIdColumn: string, role: Role): string {
  return `EXISTS (SELECT 1 FROM users u_standing WHERE u_standing.id = ${column(userIdColumn)} AND NOT u_standing.disabled AND ${roleLiteral(role)} = ANY (u_standing.roles))`;
}

/** True when the user is disabled. */
export function userDisabledSql(userIdColumn: string): string {
  return `EXISTS (SELECT 1 FROM users u_standing WHERE u_standing.id = ${column(userIdColumn)} AND u_standing.disabled)`;
}

/** Who is told: these users, or every enabled user who holds one of these roles at the moment of the change. */
export type Recipients = { users: string[] } | { roles: Role[]; except?: string[] } | { none: true };

/**
 * The people a message goes to, as a SELECT for the outbox's one statement: every enabled user among `to.users`, or
 * every enabled user holding one of `to.roles` (but those in `to.except`), with the address and mutes they have now.
 * Columns: id, username, email, muted. `param` binds a value in the caller's statement and answers its placeholder.
 */
export function contactsSql(to: Recipients, param: (value: unknown) => string): string {
  const select = 'SELECT u_c.id, u_c.username, u_c.email, u_c.muted_notifications AS muted FROM users u_c WHERE NOT u_c.disabled AND';
  if ('none' in to) return `${select} false`;
  if ('users' in to) return `${select} u_c.id = ANY (${param(to.users)}::uuid[])`;
  for (const role of to.roles) roleLiteral(role);
  return `${select} u_c.roles && ${param(to.roles)}::text[] AND NOT (u_c.id = ANY (${param(to.except ?? [])}::uuid[]))`;
}

const column = sqlColumn; // it ends up in SQL text (the role is checked below)

function roleLiteral(role: Role): string {
  if (!(ROLES as readonly string[]).includes(role)) throw new Error(`not a role: ${role}`);
  return `'${role}'`;
}

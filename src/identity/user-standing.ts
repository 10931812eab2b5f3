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

const column = sqlColumn; // it ends up in SQL text (the role is checked below)

function roleLiteral(role: Role): string {
  if (!(ROLES as readonly string[]).includes(role)) throw new Error(`not a role: ${role}`);
  return `'${role}'`;
}

import { sqlColumn } from '../database/sql-names';

/**
 * SQL fragments about the `targets` table (owned here) for other owners' statements: the accounts store's checkout
 * take reads the account and where to use it in its one `UPDATE … RETURNING`. `targetIdColumn` is a column of the
 * caller's statement (`a.target_id`).
 */

/** `host` and `port` of the target `targetIdColumn` names, as two output columns of a SELECT or RETURNING list. */
export function targetAddressColumnsSql(targetIdColumn: string): string {
  const id = column(targetIdColumn);
  return `(SELECT t_addr.host FROM targets t_addr WHERE t_addr.id = ${id}) AS host, (SELECT t_addr.port FROM targets t_addr WHERE t_addr.id = ${id}) AS port`;
}

const column = sqlColumn; // it ends up in SQL text

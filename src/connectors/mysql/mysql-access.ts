import type { Connection, RowDataPacket } from 'mysql2/promise';
import { MYSQL_ALLOWED_PRIVILEGES, MYSQL_GRANT_TARGET_PATTERN, MYSQL_SYSTEM_SCHEMAS } from '../names';

/**
 * What a one-time MySQL account may be granted (INVARIANT 20): an allow-list, checked once without the target
 * ({@link staticGrantRefusals}) and once against the target's own catalog ({@link catalogGrantRefusals}).
 *
 * - privileges only from MYSQL_ALLOWED_PRIVILEGES (never ALL, GRANT OPTION, SUPER, FILE, nothing that makes
 *   definer objects: CREATE VIEW/ROUTINE, ALTER ROUTINE, TRIGGER, EVENT);
 * - never a global grant (`*.*`) and nothing on a system schema (mysql, sys, performance_schema,
 *   information_schema; case-insensitive);
 * - the database (and the table, when one is named) must exist on the target.
 */

export interface MysqlGrant {
  privileges: string[];
  on: string;
}

/** Privileges MySQL accepts only on a whole database (`db.*`), not on one table. */
const DATABASE_LEVEL_ONLY = new Set(['LOCK TABLES', 'CREATE TEMPORARY TABLES']);
const ALLOWED = new Set<string>(MYSQL_ALLOWED_PRIVILEGES);
const SYSTEM = new Set<string>(MYSQL_SYSTEM_SCHEMAS);

const show = (s: unknown) => JSON.stringify(String(s)).slice(0, 80);

/** The refusals that need no target: one readable line per problem (empty: all allowed so far). */
export function staticGrantRefusals(grants: readonly MysqlGrant[] | undefined): string[] {
  const out: string[] = [];
  for (const g of grants ?? []) {
    const on = typeof g?.on === 'string' ? g.on : '';
    const privileges = Array.isArray(g?.privileges) ? g.privileges : [];
    if (!MYSQL_GRANT_TARGET_PATTERN.test(on)) {
      out.push(`${show(g?.on)} is not database.table (letters, digits, _ and $; * for every table of the database)`);
      continue;
    }
    const [db, table] = on.split('.');
    if (db === '*') out.push(`${on}: a global grant (*.*) is never given to a one-time account; name a database`);
    else if (SYSTEM.has(db.toLowerCase())) out.push(`${on}: nothing is granted on the system schema ${db}`);
    if (privileges.length === 0) out.push(`${on}: the grant names no privilege`);
    for (const p of privileges) {
      const name = typeof p === 'string' ? p.toUpperCase() : '';
      if (!ALLOWED.has(name)) out.push(`${on}: the privilege ${show(p)} is not allowed for one-time accounts (allowed: ${MYSQL_ALLOWED_PRIVILEGES.join(', ')})`);
      else if (table !== '*' && DATABASE_LEVEL_ONLY.has(name)) out.push(`${on}: ${name} can only be granted on a whole database (${db}.*)`);
    }
  }
  return out;
}

/**
 * The refusals that need the target's catalog: every database (and table) a grant names must exist. The admin sees
 * in information_schema only what it holds privileges on, which is exactly what it could grant.
 */
export async function catalogGrantRefusals(c: Connection, grants: readonly MysqlGrant[]): Promise<string[]> {
  const out: string[] = [];
  for (const { on } of grants) {
    const [db, table] = on.split('.');
    if (db === '*' || SYSTEM.has(db.toLowerCase())) continue; // refused already
    const [schemas] = await c.query<RowDataPacket[]>('SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?', [db]);
    if (schemas.length === 0) {
      out.push(`${on}: the database ${db} does not exist on the target (or its administrator holds no privilege on it)`);
      continue;
    }
    if (table === '*') continue;
    const [tables] = await c.query<RowDataPacket[]>('SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?', [db, table]);
    if (tables.length === 0) out.push(`${on}: the table ${table} does not exist in ${db} on the target`);
  }
  return out;
}

import type { Client, QueryResult } from 'pg';
import type { Statement } from './batch';

/**
 * Default privileges (`pg_default_acl`) of the roles a one-time account is granted. A member with their privileges can
 * run `ALTER DEFAULT PRIVILEGES FOR ROLE <grp> … GRANT … TO PUBLIC`: the entry belongs to the group role, so
 * DROP OWNED BY the account leaves it, and every object the group role creates later is handed out by it.
 *
 * So newUser records, per database the account can connect to, the default privileges of the granted roles
 * and every role they belong to, in a COMMENT ON ROLE of the account itself: only a superuser or a CREATEROLE role
 * (on 16+: with ADMIN OPTION on it) may change that comment, which the account never is. deleteUser reads it
 * back before dropping the account, and puts those roles' default privileges back as they were recorded: what
 * appeared while the account existed is revoked, what disappeared is granted again; older entries stay as they were.
 */

const MARK = 'pam-vault one-time account; default privileges when created: ';

/** One privilege of one pg_default_acl entry (aclexplode); `grantee` null is PUBLIC, `schema` null a global entry. */
export interface DefaultAclItem {
  role: string;
  schema: string | null;
  objtype: string;
  grantee: string | null;
  privilege: string;
  grantable: boolean;
}

export interface DefaultAclSnapshot {
  /** The granted roles and every role they belong to (transitively). */
  roles: string[];
  /** database name → the roles' default privileges there. */
  databases: Record<string, DefaultAclItem[]>;
}

/** defaclobjtype → the ALTER DEFAULT PRIVILEGES object kind, and acldefault()'s letter for the built-in default. */
const KINDS: Record<string, { sql: string; letter: string }> = {
  r: { sql: 'TABLES', letter: 'r' },
  S: { sql: 'SEQUENCES', letter: 's' },
  f: { sql: 'FUNCTIONS', letter: 'f' },
  T: { sql: 'TYPES', letter: 'T' },
  n: { sql: 'SCHEMAS', letter: 'n' },
  L: { sql: 'LARGE OBJECTS', letter: 'L' },
};
const PRIVILEGES = new Set(['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER', 'EXECUTE', 'USAGE', 'CREATE', 'MAINTAIN']);

/** The granted roles ($1) and every role they belong to, by oid. */
const GRANTED_AND_ANCESTORS = `WITH RECURSIVE up(oid) AS (
       SELECT oid FROM pg_catalog.pg_roles WHERE rolname = ANY($1::text[])
       UNION
       SELECT m.roleid FROM pg_catalog.pg_auth_members m JOIN up ON m.member = up.oid
     )`;

/**
 * What newUser records, read where the administrator connects, in one batch (batch.ts) with the allow-list's checks:
 * the granted roles and every role they belong to (names), the databases an account granted them (and CONNECT on
 * `database`) could connect to — PUBLIC's, the granted one's, and those the roles may connect to — with whether the
 * administrator can connect there, and the roles' default privileges in this database.
 */
export function snapshotStatements(grantRoles: string[], database: string | undefined): { statements: Statement[]; read(results: QueryResult[]): { roles: string[]; reachable: Array<{ datname: string; adminCan: boolean }>; here: DefaultAclItem[] } } {
  return {
    statements: [
      { text: `${GRANTED_AND_ANCESTORS} SELECT r.rolname FROM up JOIN pg_catalog.pg_roles r ON r.oid = up.oid ORDER BY 1`, values: [grantRoles] },
      {
        text: `${GRANTED_AND_ANCESTORS}
          SELECT d.datname, pg_catalog.has_database_privilege(session_user, d.oid, 'CONNECT') AS admin_can
            FROM pg_catalog.pg_database d
           WHERE d.datallowconn
             AND (d.datname = $2
                  OR EXISTS (SELECT 1 FROM pg_catalog.aclexplode(COALESCE(d.datacl, pg_catalog.acldefault('d', d.datdba))) e
                              WHERE e.privilege_type = 'CONNECT' AND (e.grantee = 0 OR e.grantee IN (SELECT oid FROM up))))
           ORDER BY 1`,
        values: [grantRoles, database ?? null],
      },
      { text: `${GRANTED_AND_ANCESTORS} ${DEFAULT_ACLS} WHERE d.defaclrole IN (SELECT oid FROM up) ${DEFAULT_ACLS_ORDER}`, values: [grantRoles] },
    ],
    read: ([roles, reachable, here]) => ({
      roles: (roles.rows as Array<{ rolname: string }>).map((r) => r.rolname),
      reachable: (reachable.rows as Array<{ datname: string; admin_can: boolean }>).map((r) => ({ datname: r.datname, adminCan: r.admin_can })),
      here: here.rows as DefaultAclItem[],
    }),
  };
}

const DEFAULT_ACLS = `SELECT r.rolname AS role, CASE WHEN d.defaclnamespace = 0 THEN NULL ELSE n.nspname END AS schema, d.defaclobjtype::text AS objtype,
            g.rolname AS grantee, e.privilege_type AS privilege, e.is_grantable AS grantable
       FROM pg_catalog.pg_default_acl d JOIN pg_catalog.pg_roles r ON r.oid = d.defaclrole
       LEFT JOIN pg_catalog.pg_namespace n ON n.oid = d.defaclnamespace
       CROSS JOIN LATERAL pg_catalog.aclexplode(d.defaclacl) e
       LEFT JOIN pg_catalog.pg_roles g ON g.oid = e.grantee`;
const DEFAULT_ACLS_ORDER = 'ORDER BY 1, 2, 3, 4, 5';

/** The default privileges of the roles named $1 in the database the statement runs in. */
export function defaultAclsStatement(roles: string[]): Statement {
  return { text: `${DEFAULT_ACLS} WHERE r.rolname = ANY($1::text[]) ${DEFAULT_ACLS_ORDER}`, values: [roles] };
}

/**
 * What the restore needs to read in a database (one batch, batch.ts): which of the recorded roles still exist, and their
 * default privileges there now.
 */
export function restoreReadStatements(roles: string[]): { statements: Statement[]; read(results: QueryResult[]): { live: string[]; current: DefaultAclItem[] } } {
  return {
    statements: [{ text: 'SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY($1::text[])', values: [roles] }, defaultAclsStatement(roles)],
    read: ([live, current]) => ({ live: (live.rows as Array<{ rolname: string }>).map((r) => r.rolname), current: current.rows as DefaultAclItem[] }),
  };
}

export function snapshotComment(snapshot: DefaultAclSnapshot): string {
  return MARK + JSON.stringify(snapshot);
}

/** The snapshot recorded in the account role's comment (`text`), if any (accounts made before it was recorded have none). */
export function parseSnapshot(text: string | null | undefined): DefaultAclSnapshot | undefined {
  if (!text?.startsWith(MARK)) return undefined;
  try {
    const parsed = JSON.parse(text.slice(MARK.length)) as DefaultAclSnapshot;
    return Array.isArray(parsed.roles) && parsed.databases && typeof parsed.databases === 'object' ? parsed : undefined;
  } catch {
    return undefined;
  }
}

const keyOf = (i: Pick<DefaultAclItem, 'role' | 'schema' | 'objtype'>) => JSON.stringify([i.role, i.schema, i.objtype]);
const grantOf = (i: Pick<DefaultAclItem, 'grantee' | 'privilege'>) => JSON.stringify([i.grantee, i.privilege]);

/**
 * The statements that put the default privileges in the database `c` is connected to back to `recorded`, for the
 * recorded roles that still exist (`live`, with their default privileges now, `current`: restoreReadStatements). A global
 * entry that is absent means the built-in default (acldefault).
 */
export async function restoreStatements(c: Client, recorded: DefaultAclItem[], { live, current }: { live: string[]; current: DefaultAclItem[] }): Promise<{ statements: string[]; roles: string[] }> {
  const before = recorded.filter((i) => live.includes(i.role));
  const keys = new Map<string, Pick<DefaultAclItem, 'role' | 'schema' | 'objtype'>>();
  for (const i of [...before, ...current]) keys.set(keyOf(i), { role: i.role, schema: i.schema, objtype: i.objtype });
  const statements: string[] = [];
  const touched = new Set<string>();
  for (const [key, k] of keys) {
    const kind = KINDS[k.objtype];
    if (!kind) continue; // an object kind this version of the vault does not know: left as it is
    const builtIn = async (): Promise<DefaultAclItem[]> => {
      if (k.schema !== null) return [];
      const { rows } = await c.query<{ grantee: string | null; privilege: string; grantable: boolean }>(
        `SELECT g.rolname AS grantee, e.privilege_type AS privilege, e.is_grantable AS grantable
           FROM pg_catalog.aclexplode(pg_catalog.acldefault($1::"char", (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $2))) e
           LEFT JOIN pg_catalog.pg_roles g ON g.oid = e.grantee`,
        [kind.letter, k.role],
      );
      return rows.map((r) => ({ ...k, ...r }));
    };
    const was = before.filter((i) => keyOf(i) === key);
    const now = current.filter((i) => keyOf(i) === key);
    const want = new Map((was.length ? was : await builtIn()).map((i) => [grantOf(i), i]));
    const have = new Map((now.length ? now : await builtIn()).map((i) => [grantOf(i), i]));
    const head = `ALTER DEFAULT PRIVILEGES FOR ROLE ${c.escapeIdentifier(k.role)}${k.schema !== null ? ` IN SCHEMA ${c.escapeIdentifier(k.schema)}` : ''}`;
    const who = (g: string | null) => (g === null ? 'PUBLIC' : c.escapeIdentifier(g));
    for (const [g, h] of have) {
      if (!PRIVILEGES.has(h.privilege)) continue;
      const w = want.get(g);
      if (!w) statements.push(`${head} REVOKE ${h.privilege} ON ${kind.sql} FROM ${who(h.grantee)}`);
      else if (h.grantable && !w.grantable) statements.push(`${head} REVOKE GRANT OPTION FOR ${h.privilege} ON ${kind.sql} FROM ${who(h.grantee)}`);
      else continue;
      touched.add(k.role);
    }
    for (const [g, w] of want) {
      if (!PRIVILEGES.has(w.privilege)) continue;
      const h = have.get(g);
      if (h && (h.grantable || !w.grantable)) continue;
      if (w.grantee !== null && !(await c.query('SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1', [w.grantee])).rowCount) continue; // grantee dropped since
      statements.push(`${head} GRANT ${w.privilege} ON ${kind.sql} TO ${who(w.grantee)}${w.grantable ? ' WITH GRANT OPTION' : ''}`);
      touched.add(k.role);
    }
  }
  return { statements, roles: [...touched] };
}

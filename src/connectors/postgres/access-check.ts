import type { Client } from 'pg';

/**
 * The allow-list for what a one-time account may be given on PostgreSQL (INVARIANT 20), checked against the target's
 * own catalog. The danger is the vendor gaining the administrator's or a privileged role's rights, now or by a route
 * that outlives the account, so a role granted to a one-time account must:
 * - exist and be a NOLOGIN group role (not someone's login, whose objects and sessions are theirs), nor a member
 *   (transitively) of a login role;
 * - not be a predefined `pg_*` role, nor a member (transitively) of one (pg_execute_server_program,
 *   pg_write_server_files, pg_signal_backend… reach the server or other sessions);
 * - neither have nor be a member (transitively) of a role with SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or
 *   BYPASSRLS (attributes are not inherited, but SET ROLE reaches them);
 * - not be the administrator, nor a member of it, nor a role whose privileges the administrator holds (USAGE/SET;
 *   what the admin can do through it would be the vendor's too);
 * - neither it nor a role it belongs to may hold ADMIN OPTION on any role (the vendor could grant that role to itself),
 *   nor own anything (owner rights are inherited: the vendor could replace a function's body or add a trigger, and
 *   that would outlive the account and run with someone else's rights);
 * - PostgreSQL 16+: be grantable by the administrator (it holds ADMIN OPTION on it).
 * A database must exist, not be a template, allow connections, and the administrator must be able to grant CONNECT on it.
 */

/** Role attributes a granted role (or a role it belongs to) must not have. */
const PRIVILEGED = [
  ['rolsuper', 'SUPERUSER'],
  ['rolcreaterole', 'CREATEROLE'],
  ['rolcreatedb', 'CREATEDB'],
  ['rolreplication', 'REPLICATION'],
  ['rolbypassrls', 'BYPASSRLS'],
] as const;

interface RoleRow {
  rolname: string;
  is_self: boolean;
  rolsuper: boolean;
  rolcreaterole: boolean;
  rolcreatedb: boolean;
  rolreplication: boolean;
  rolbypassrls: boolean;
  rolcanlogin: boolean;
  predefined: boolean;
  is_admin: boolean;
  admin_of: string | null;
  owns: number;
}

/** The role and every role it is a member of (pg_auth_members, transitively), with what matters about each. */
const ROLE_AND_ANCESTORS = `
  WITH RECURSIVE up(oid) AS (
    SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1
    UNION
    SELECT m.roleid FROM pg_catalog.pg_auth_members m JOIN up ON m.member = up.oid
  )
  SELECT r.rolname, r.rolname = $1 AS is_self, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls,
         r.rolcanlogin, r.oid < 16384 AS predefined, r.rolname = session_user AS is_admin,
         (SELECT string_agg(g.rolname, ', ' ORDER BY g.rolname) FROM pg_catalog.pg_auth_members a JOIN pg_catalog.pg_roles g ON g.oid = a.roleid
           WHERE a.member = r.oid AND a.admin_option) AS admin_of,
         (SELECT count(*)::int FROM pg_catalog.pg_shdepend d
           WHERE d.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass AND d.refobjid = r.oid AND d.deptype = 'o') AS owns
  FROM up JOIN pg_catalog.pg_roles r ON r.oid = up.oid
  ORDER BY r.rolname <> $1, r.rolname`;

/** Facts about the administrator's session that the checks depend on. */
export interface AdminFacts {
  /** server_version_num / 10000 */
  major: number;
  superuser: boolean;
  username: string;
}

export async function adminFacts(c: Client): Promise<AdminFacts> {
  const { rows } = await c.query<{ num: string; su: boolean; me: string }>(
    "SELECT current_setting('server_version_num') AS num, (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = session_user) AS su, session_user AS me",
  );
  return { major: Math.floor(Number(rows[0].num) / 10000), superuser: rows[0].su, username: rows[0].me };
}

/** The refusals for one role a one-time account would be granted (empty: allowed). */
export async function inspectRole(c: Client, role: string, admin: AdminFacts): Promise<string[]> {
  const { rows } = await c.query<RoleRow>(ROLE_AND_ANCESTORS, [role]);
  const self = rows.find((r) => r.is_self);
  if (!self) return [`role ${role}: does not exist`];
  const out: string[] = [];
  const adminId = c.escapeIdentifier(admin.username);
  const roleId = c.escapeIdentifier(role);
  if (self.rolcanlogin) out.push(`role ${role}: is a login role (grant a NOLOGIN group role instead)`);
  for (const r of rows) {
    const where = r.is_self ? `role ${role}:` : `role ${role}: member of`;
    if (!r.is_self && r.rolcanlogin) out.push(`${where} a login role (${r.rolname})`);
    if (r.predefined) out.push(r.is_self ? `${where} is a predefined role` : `${where} a predefined role (${r.rolname})`);
    const attrs = PRIVILEGED.filter(([col]) => r[col]).map(([, name]) => name);
    if (attrs.length) out.push(r.is_self ? `${where} has ${attrs.join(', ')}` : `${where} a role with ${attrs.join(', ')} (${r.rolname})`);
    if (r.is_admin) out.push(r.is_self ? `${where} is the target's administrator` : `${where} the target's administrator (${r.rolname})`);
    if (r.owns > 0) {
      out.push(r.is_self ? `${where} owns ${r.owns} object(s) (a one-time account inheriting it could change them, and what it changed would outlive it: grant a role that owns nothing)`
        : `${where} a role that owns objects (${r.rolname})`);
    }
    if (r.admin_of) out.push(r.is_self ? `${where} holds ADMIN OPTION on ${r.admin_of} (could grant it to itself)` : `${where} a role holding ADMIN OPTION on ${r.admin_of} (${r.rolname})`);
  }
  if (!admin.superuser && !self.is_admin) {
    // 16+: USAGE (inherited) or SET; 15: any membership can SET ROLE
    const modes = admin.major >= 16 ? "pg_has_role(session_user, $1, 'USAGE') OR pg_has_role(session_user, $1, 'SET')" : "pg_has_role(session_user, $1, 'MEMBER')";
    const grantable = admin.major >= 16 ? "pg_has_role(session_user, $1, 'MEMBER WITH ADMIN OPTION')" : 'true';
    const { rows: h } = await c.query<{ holds: boolean; grantable: boolean }>(`SELECT ${modes} AS holds, ${grantable} AS grantable`, [role]);
    if (h[0].holds) out.push(`role ${role}: the target's administrator holds its privileges (a one-time account would share what the administrator can do through it)`);
    if (!h[0].grantable) out.push(`role ${role}: the administrator cannot grant it (PostgreSQL 16+: GRANT ${roleId} TO ${adminId} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE)`);
  }
  return out;
}

/** The refusals for a database a one-time account would be granted CONNECT on (empty: allowed). */
export async function inspectDatabase(c: Client, database: string, admin: AdminFacts): Promise<string[]> {
  const { rows } = await c.query<{ datistemplate: boolean; datallowconn: boolean; can_grant: boolean }>(
    "SELECT datistemplate, datallowconn, has_database_privilege(session_user, oid, 'CONNECT WITH GRANT OPTION') AS can_grant FROM pg_catalog.pg_database WHERE datname = $1",
    [database],
  );
  if (!rows.length) return [`database ${database}: does not exist`];
  const out: string[] = [];
  if (rows[0].datistemplate) out.push(`database ${database}: is a template`);
  if (!rows[0].datallowconn) out.push(`database ${database}: does not allow connections`);
  if (!rows[0].can_grant) {
    out.push(`database ${database}: the administrator cannot grant CONNECT on it (GRANT CONNECT ON DATABASE ${c.escapeIdentifier(database)} TO ${c.escapeIdentifier(admin.username)} WITH GRANT OPTION)`);
  }
  return out;
}

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
 * - neither it nor a role it belongs to may hold a grant option on anything (tables, columns, functions, schemas, types,
 *   languages, large objects, foreign-data wrappers and servers, databases, tablespaces, 15+: parameters), in the
 *   database the administrator connects to and in every database the policy names: the vendor could grant those
 *   privileges on (to PUBLIC, to a bystander), and such grants, made by the group role, outlive the account;
 * - PostgreSQL 15 (no SET option: every member may SET ROLE to it): neither it nor a role it belongs to may have CREATE
 *   on a schema or a database (checked in those databases), since what it created as that role would outlive it
 *   (owning a schema is refused above, as owning anything);
 * - PostgreSQL 16+: be grantable by the administrator (it holds ADMIN OPTION on it).
 * A database must exist, not be a template, allow connections, not be open to PUBLIC (PUBLIC holds CONNECT by default,
 * and then allowing it restricts nothing), and the administrator must be able to grant CONNECT on it.
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

/** Whether PUBLIC holds CONNECT on the database `d` (a NULL datacl is the default, which gives PUBLIC CONNECT). */
const PUBLIC_CONNECT = `EXISTS (SELECT 1 FROM pg_catalog.aclexplode(COALESCE(d.datacl, pg_catalog.acldefault('d', d.datdba))) e
  WHERE e.grantee = 0 AND e.privilege_type = 'CONNECT')`;

/** Every ACL in the database the session is connected to (and the shared ones), as (what, acl). */
function allAcls(major: number): string {
  return `
    SELECT 'relation ' || c.oid::pg_catalog.regclass::text, c.relacl FROM pg_catalog.pg_class c WHERE c.relacl IS NOT NULL
    UNION ALL SELECT 'column ' || a.attrelid::pg_catalog.regclass::text || '.' || pg_catalog.quote_ident(a.attname), a.attacl
      FROM pg_catalog.pg_attribute a WHERE a.attacl IS NOT NULL
    UNION ALL SELECT 'function ' || p.oid::pg_catalog.regprocedure::text, p.proacl FROM pg_catalog.pg_proc p WHERE p.proacl IS NOT NULL
    UNION ALL SELECT 'schema ' || pg_catalog.quote_ident(n.nspname), n.nspacl FROM pg_catalog.pg_namespace n WHERE n.nspacl IS NOT NULL
    UNION ALL SELECT 'type ' || t.oid::pg_catalog.regtype::text, t.typacl FROM pg_catalog.pg_type t WHERE t.typacl IS NOT NULL
    UNION ALL SELECT 'language ' || pg_catalog.quote_ident(l.lanname), l.lanacl FROM pg_catalog.pg_language l WHERE l.lanacl IS NOT NULL
    UNION ALL SELECT 'large object ' || m.oid::text, m.lomacl FROM pg_catalog.pg_largeobject_metadata m WHERE m.lomacl IS NOT NULL
    UNION ALL SELECT 'foreign-data wrapper ' || pg_catalog.quote_ident(w.fdwname), w.fdwacl FROM pg_catalog.pg_foreign_data_wrapper w WHERE w.fdwacl IS NOT NULL
    UNION ALL SELECT 'foreign server ' || pg_catalog.quote_ident(s.srvname), s.srvacl FROM pg_catalog.pg_foreign_server s WHERE s.srvacl IS NOT NULL
    UNION ALL SELECT 'database ' || pg_catalog.quote_ident(d.datname), d.datacl FROM pg_catalog.pg_database d WHERE d.datacl IS NOT NULL
    UNION ALL SELECT 'tablespace ' || pg_catalog.quote_ident(s.spcname), s.spcacl FROM pg_catalog.pg_tablespace s WHERE s.spcacl IS NOT NULL
    ${major >= 15 ? "UNION ALL SELECT 'parameter ' || p.parname, p.paracl FROM pg_catalog.pg_parameter_acl p WHERE p.paracl IS NOT NULL" : ''}`;
}

const ANCESTORS = `WITH RECURSIVE up(oid) AS (
    SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1
    UNION
    SELECT m.roleid FROM pg_catalog.pg_auth_members m JOIN up ON m.member = up.oid
  )`;

/**
 * The refusals for a role in the database `c` is connected to: grant options held by it or a role it belongs to, and
 * (PostgreSQL 15) CREATE on a schema here or on any database. Each line names the database.
 */
export async function inspectRoleInDatabase(c: Client, role: string, admin: AdminFacts): Promise<string[]> {
  const { rows: here } = await c.query<{ db: string }>('SELECT current_database() AS db');
  const db = here[0].db;
  const out: string[] = [];
  const { rows: held } = await c.query<{ holder: string; what: string[]; n: number }>(
    `${ANCESTORS}, acls(what, acl) AS (${allAcls(admin.major)})
     SELECT r.rolname AS holder, (pg_catalog.array_agg(DISTINCT x.what))[1:5] AS what, count(DISTINCT x.what)::int AS n
       FROM acls x CROSS JOIN LATERAL pg_catalog.aclexplode(x.acl) e JOIN up ON up.oid = e.grantee JOIN pg_catalog.pg_roles r ON r.oid = up.oid
      WHERE e.is_grantable
      GROUP BY r.rolname ORDER BY r.rolname <> $1, r.rolname`,
    [role],
  );
  for (const h of held) {
    const list = `${h.what.join(', ')}${h.n > h.what.length ? `, and ${h.n - h.what.length} more` : ''}`;
    out.push(h.holder === role
      ? `role ${role}: holds grant options in database ${db} (a one-time account could grant on, and such grants outlive it): ${list}`
      : `role ${role}: member of a role holding grant options in database ${db} (${h.holder}): ${list}`);
  }
  if (admin.major < 16) {
    const { rows: creates } = await c.query<{ holder: string; what: string }>(
      `${ANCESTORS}
       SELECT r.rolname AS holder, 'schema ' || pg_catalog.quote_ident(n.nspname) AS what
         FROM up JOIN pg_catalog.pg_roles r ON r.oid = up.oid CROSS JOIN pg_catalog.pg_namespace n
        WHERE pg_catalog.has_schema_privilege(up.oid, n.oid, 'CREATE')
       UNION ALL
       SELECT r.rolname, 'database ' || pg_catalog.quote_ident(d.datname)
         FROM up JOIN pg_catalog.pg_roles r ON r.oid = up.oid CROSS JOIN pg_catalog.pg_database d
        WHERE pg_catalog.has_database_privilege(up.oid, d.oid, 'CREATE')
       ORDER BY 1, 2`,
      [role],
    );
    for (const cr of creates) {
      out.push(cr.holder === role
        ? `role ${role}: has CREATE on ${cr.what} (PostgreSQL ${admin.major}: a member can SET ROLE to it, and what it creates as the role outlives the account)`
        : `role ${role}: member of a role with CREATE on ${cr.what} (${cr.holder}; PostgreSQL ${admin.major}: a member can SET ROLE to it)`);
    }
  }
  return out;
}

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
  const { rows } = await c.query<{ datistemplate: boolean; datallowconn: boolean; can_grant: boolean; public_connect: boolean }>(
    `SELECT datistemplate, datallowconn, has_database_privilege(session_user, oid, 'CONNECT WITH GRANT OPTION') AS can_grant, ${PUBLIC_CONNECT} AS public_connect
       FROM pg_catalog.pg_database d WHERE datname = $1`,
    [database],
  );
  if (!rows.length) return [`database ${database}: does not exist`];
  const out: string[] = [];
  if (rows[0].public_connect) {
    out.push(`database ${database}: PUBLIC holds CONNECT on it, so allowing it restricts nothing (REVOKE CONNECT ON DATABASE ${c.escapeIdentifier(database)} FROM PUBLIC)`);
  }
  if (rows[0].datistemplate) out.push(`database ${database}: is a template`);
  if (!rows[0].datallowconn) out.push(`database ${database}: does not allow connections`);
  if (!rows[0].can_grant) {
    out.push(`database ${database}: the administrator cannot grant CONNECT on it (GRANT CONNECT ON DATABASE ${c.escapeIdentifier(database)} TO ${c.escapeIdentifier(admin.username)} WITH GRANT OPTION)`);
  }
  return out;
}

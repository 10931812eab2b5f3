import { escapeIdentifier, type Client, type QueryResult } from 'pg';
import type { Statement } from './batch';

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

/** The role and every role it is a member of (pg_auth_members, transitively), with what matters about each (and `extra` columns). */
const roleAndAncestors = (extra: string) => `
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
           WHERE d.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass AND d.refobjid = r.oid AND d.deptype = 'o') AS owns,
         ${extra}
  FROM up JOIN pg_catalog.pg_roles r ON r.oid = up.oid
  ORDER BY r.rolname <> $1, r.rolname`;

/** Whether PUBLIC holds CONNECT on the database `d` (a NULL datacl is the default, which gives PUBLIC CONNECT). */
const PUBLIC_CONNECT = `EXISTS (SELECT 1 FROM pg_catalog.aclexplode(COALESCE(d.datacl, pg_catalog.acldefault('d', d.datdba))) e
  WHERE e.grantee = 0 AND e.privilege_type = 'CONNECT')`;

/**
 * Every ACL in the database the session is connected to (and the shared ones) in which a role of `up` (the statement's
 * CTE) holds a grant option, as (what, acl). The cheap test comes first: naming the object (regclass, regprocedure…
 * look names up) is left to the few rows that pass it, not paid for every ACL in the catalog.
 */
function allAcls(major: number): string {
  const held = (acl: string) => `${acl} IS NOT NULL AND EXISTS (SELECT 1 FROM pg_catalog.aclexplode(${acl}) g WHERE g.is_grantable AND g.grantee IN (SELECT oid FROM up))`;
  return `
    SELECT 'relation ' || c.oid::pg_catalog.regclass::text, c.relacl FROM pg_catalog.pg_class c WHERE ${held('c.relacl')}
    UNION ALL SELECT 'column ' || a.attrelid::pg_catalog.regclass::text || '.' || pg_catalog.quote_ident(a.attname), a.attacl
      FROM pg_catalog.pg_attribute a WHERE ${held('a.attacl')}
    UNION ALL SELECT 'function ' || p.oid::pg_catalog.regprocedure::text, p.proacl FROM pg_catalog.pg_proc p WHERE ${held('p.proacl')}
    UNION ALL SELECT 'schema ' || pg_catalog.quote_ident(n.nspname), n.nspacl FROM pg_catalog.pg_namespace n WHERE ${held('n.nspacl')}
    UNION ALL SELECT 'type ' || t.oid::pg_catalog.regtype::text, t.typacl FROM pg_catalog.pg_type t WHERE ${held('t.typacl')}
    UNION ALL SELECT 'language ' || pg_catalog.quote_ident(l.lanname), l.lanacl FROM pg_catalog.pg_language l WHERE ${held('l.lanacl')}
    UNION ALL SELECT 'large object ' || m.oid::text, m.lomacl FROM pg_catalog.pg_largeobject_metadata m WHERE ${held('m.lomacl')}
    UNION ALL SELECT 'foreign-data wrapper ' || pg_catalog.quote_ident(w.fdwname), w.fdwacl FROM pg_catalog.pg_foreign_data_wrapper w WHERE ${held('w.fdwacl')}
    UNION ALL SELECT 'foreign server ' || pg_catalog.quote_ident(s.srvname), s.srvacl FROM pg_catalog.pg_foreign_server s WHERE ${held('s.srvacl')}
    UNION ALL SELECT 'database ' || pg_catalog.quote_ident(d.datname), d.datacl FROM pg_catalog.pg_database d WHERE ${held('d.datacl')}
    UNION ALL SELECT 'tablespace ' || pg_catalog.quote_ident(s.spcname), s.spcacl FROM pg_catalog.pg_tablespace s WHERE ${held('s.spcacl')}
    ${major >= 15 ? `UNION ALL SELECT 'parameter ' || p.parname, p.paracl FROM pg_catalog.pg_parameter_acl p WHERE ${held('p.paracl')}` : ''}`;
}

const ANCESTORS = `WITH RECURSIVE up(oid) AS (
    SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1
    UNION
    SELECT m.roleid FROM pg_catalog.pg_auth_members m JOIN up ON m.member = up.oid
  )`;

/** Facts about the administrator's session that the checks depend on. */
export interface AdminFacts {
  /** server_version_num / 10000 */
  major: number;
  superuser: boolean;
  username: string;
}

/** The administrator's session: version, superuser, name, and the database it is connected to. */
export const ADMIN_FACTS: Statement = {
  text: "SELECT current_setting('server_version_num') AS num, (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = session_user) AS su, session_user AS me, current_database() AS db",
};

export async function adminFacts(c: Client): Promise<AdminFacts & { db: string }> {
  return adminFactsOf(await c.query(ADMIN_FACTS.text));
}

export function adminFactsOf(r: QueryResult): AdminFacts & { db: string } {
  const row = r.rows[0] as { num: string; su: boolean; me: string; db: string };
  return { major: Math.floor(Number(row.num) / 10000), superuser: row.su, username: row.me, db: row.db };
}

/**
 * The checks of what a one-time account would be given, as statements to run together (one round trip, see batch.ts)
 * and the refusals decided from their results: {@link homeChecks} where the administrator connects, {@link databaseChecks}
 * in each other database a policy names.
 */
export interface Checks {
  statements: Statement[];
  /** The refusals, from the results of `statements` (in order). */
  refusals(results: QueryResult[]): string[];
}

/**
 * In the administrator's own database: each role (and the roles it belongs to) and each database, and what each role
 * holds in this database. `admin` decides the version-dependent SQL (superuser is read again by the caller's batch).
 */
export function homeChecks(roles: string[], databases: string[], admin: Pick<AdminFacts, 'major'>, db: string): Checks & { checkIn(results: QueryResult[]): string[] } {
  const r = roles.map((role) => ({ role, s: roleStatement(role, admin.major) }));
  const d = databases.map((database) => ({ database, s: databaseStatement(database) }));
  const here = databaseChecks(roles, admin, db);
  const facts = ADMIN_FACTS;
  const statements = [facts, ...r.map((x) => x.s), ...d.map((x) => x.s), ...here.statements];
  const split = (results: QueryResult[]) => {
    const a = adminFactsOf(results[0]);
    const roleRows = results.slice(1, 1 + r.length);
    const dbRows = results.slice(1 + r.length, 1 + r.length + d.length);
    const hereRows = results.slice(1 + r.length + d.length);
    return { a, roleRows, dbRows, hereRows };
  };
  const dbLines = (results: QueryResult[]) => {
    const { a, dbRows } = split(results);
    return d.map((x, i) => ({ database: x.database, lines: databaseRefusals(x.database, dbRows[i], a) }));
  };
  return {
    statements,
    refusals: (results) => {
      const { a, roleRows, hereRows } = split(results);
      const out = r.flatMap((x, i) => roleRefusals(x.role, roleRows[i], a));
      out.push(...dbLines(results).flatMap((x) => x.lines));
      out.push(...here.refusals(hereRows));
      return out;
    },
    // the named databases that passed their own checks: what the roles hold there is checked there too
    checkIn: (results) => dbLines(results)
      .filter((x) => !x.lines.some((l) => /: (does not exist|is a template|does not allow connections|the administrator cannot grant)/.test(l)))
      .map((x) => x.database),
  };
}

/**
 * In the database `db` the statements run in: grant options held by each role or a role it belongs to, and (PostgreSQL
 * 15) CREATE on a schema here or on any database. Each line names the database.
 */
export function databaseChecks(roles: string[], admin: Pick<AdminFacts, 'major'>, db: string): Checks {
  const statements = roles.flatMap((role) => [
    { text: grantOptionsSql(admin.major), values: [role] },
    ...(admin.major < 16 ? [{ text: CREATE_RIGHTS, values: [role] }] : []),
  ]);
  const per = admin.major < 16 ? 2 : 1;
  return {
    statements,
    refusals: (results) => roles.flatMap((role, i) => {
      const out: string[] = [];
      for (const h of results[i * per].rows as Array<{ holder: string; what: string[]; n: number }>) {
        const list = `${h.what.join(', ')}${h.n > h.what.length ? `, and ${h.n - h.what.length} more` : ''}`;
        out.push(h.holder === role
          ? `role ${role}: holds grant options in database ${db} (a one-time account could grant on, and such grants outlive it): ${list}`
          : `role ${role}: member of a role holding grant options in database ${db} (${h.holder}): ${list}`);
      }
      if (per === 2) {
        for (const cr of results[i * per + 1].rows as Array<{ holder: string; what: string }>) {
          out.push(cr.holder === role
            ? `role ${role}: has CREATE on ${cr.what} (PostgreSQL ${admin.major}: a member can SET ROLE to it, and what it creates as the role outlives the account)`
            : `role ${role}: member of a role with CREATE on ${cr.what} (${cr.holder}; PostgreSQL ${admin.major}: a member can SET ROLE to it)`);
        }
      }
      return out;
    }),
  };
}

function grantOptionsSql(major: number): string {
  return `${ANCESTORS}, acls(what, acl) AS (${allAcls(major)})
     SELECT r.rolname AS holder, (pg_catalog.array_agg(DISTINCT x.what))[1:5] AS what, count(DISTINCT x.what)::int AS n
       FROM acls x CROSS JOIN LATERAL pg_catalog.aclexplode(x.acl) e JOIN up ON up.oid = e.grantee JOIN pg_catalog.pg_roles r ON r.oid = up.oid
      WHERE e.is_grantable
      GROUP BY r.rolname ORDER BY r.rolname <> $1, r.rolname`;
}

const CREATE_RIGHTS = `${ANCESTORS}
   SELECT r.rolname AS holder, 'schema ' || pg_catalog.quote_ident(n.nspname) AS what
     FROM up JOIN pg_catalog.pg_roles r ON r.oid = up.oid CROSS JOIN pg_catalog.pg_namespace n
    WHERE pg_catalog.has_schema_privilege(up.oid, n.oid, 'CREATE')
   UNION ALL
   SELECT r.rolname, 'database ' || pg_catalog.quote_ident(d.datname)
     FROM up JOIN pg_catalog.pg_roles r ON r.oid = up.oid CROSS JOIN pg_catalog.pg_database d
    WHERE pg_catalog.has_database_privilege(up.oid, d.oid, 'CREATE')
   ORDER BY 1, 2`;

/**
 * The role and its ancestors, and on the role's own row whether the administrator holds its privileges (16+: USAGE or
 * SET; 15: any membership can SET ROLE) and may grant it (16+: ADMIN OPTION). Read by oid: no row, no call.
 */
function roleStatement(role: string, major: number): Statement {
  const holds = major >= 16 ? "pg_catalog.pg_has_role(session_user, r.oid, 'USAGE') OR pg_catalog.pg_has_role(session_user, r.oid, 'SET')" : "pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER')";
  const grantable = major >= 16 ? "pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER WITH ADMIN OPTION')" : 'true';
  return {
    text: roleAndAncestors(`CASE WHEN r.rolname = $1 THEN ${holds} END AS holds, CASE WHEN r.rolname = $1 THEN ${grantable} END AS grantable`),
    values: [role],
  };
}

/** The refusals for one role a one-time account would be granted (empty: allowed). */
function roleRefusals(role: string, result: QueryResult, admin: AdminFacts): string[] {
  const rows = result.rows as Array<RoleRow & { holds: boolean | null; grantable: boolean | null }>;
  const self = rows.find((r) => r.is_self);
  if (!self) return [`role ${role}: does not exist`];
  const out: string[] = [];
  const adminId = escapeIdentifier(admin.username);
  const roleId = escapeIdentifier(role);
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
    if (self.holds) out.push(`role ${role}: the target's administrator holds its privileges (a one-time account would share what the administrator can do through it)`);
    if (!self.grantable) out.push(`role ${role}: the administrator cannot grant it (PostgreSQL 16+: GRANT ${roleId} TO ${adminId} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE)`);
  }
  return out;
}

function databaseStatement(database: string): Statement {
  return {
    text: `SELECT datistemplate, datallowconn, has_database_privilege(session_user, oid, 'CONNECT WITH GRANT OPTION') AS can_grant, ${PUBLIC_CONNECT} AS public_connect
             FROM pg_catalog.pg_database d WHERE datname = $1`,
    values: [database],
  };
}

/** The refusals for a database a one-time account would be granted CONNECT on (empty: allowed). */
function databaseRefusals(database: string, result: QueryResult, admin: AdminFacts): string[] {
  const rows = result.rows as Array<{ datistemplate: boolean; datallowconn: boolean; can_grant: boolean; public_connect: boolean }>;
  if (!rows.length) return [`database ${database}: does not exist`];
  const out: string[] = [];
  if (rows[0].public_connect) {
    out.push(`database ${database}: PUBLIC holds CONNECT on it, so allowing it restricts nothing (REVOKE CONNECT ON DATABASE ${escapeIdentifier(database)} FROM PUBLIC)`);
  }
  if (rows[0].datistemplate) out.push(`database ${database}: is a template`);
  if (!rows[0].datallowconn) out.push(`database ${database}: does not allow connections`);
  if (!rows[0].can_grant) {
    out.push(`database ${database}: the administrator cannot grant CONNECT on it (GRANT CONNECT ON DATABASE ${escapeIdentifier(database)} TO ${escapeIdentifier(admin.username)} WITH GRANT OPTION)`);
  }
  return out;
}

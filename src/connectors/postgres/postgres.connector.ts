import { Client, escapeIdentifier } from 'pg';
import { AdminPool, DEFAULT_POOL_SETTINGS, PooledConnector, PoolDriver, poolKeyOf, PoolSettings } from '../admin-pool';
import { ConnectorError } from '../connector.errors';
import {
  AccessInspection, CallOptions, Capability, Connector, ConnectorSupport, ConnectorTarget, DeleteUserRequest, EndSessionRequest, ListSessionsRequest, LoginRequest,
  NewUserRequest, NewUserResponse, SESSION_ID_PATTERNS, TargetSession, TerminateSessionsRequest, UpdatePasswordRequest, VerifyResult,
} from '../connector.interface';
import { adminFacts, AdminFacts, inspectDatabase, inspectRole, inspectRoleInDatabase } from './access-check';
import { defaultAcls, DefaultAclSnapshot, reachableDatabases, readSnapshot, restoreStatements, rolesAndAncestors, snapshotComment } from './default-acl';
import { scramSha256Verifier } from './scram';
import { identityUnverified, isTlsIdentityFailure, ScramOnlyClient, tlsOptions, usesTls } from './scram-only-client';

const AUTH_FAILED = new Set(['28P01', '28000']);
const INSUFFICIENT_PRIVILEGE = '42501';
const DEPENDENT_OBJECTS_STILL_EXIST = '2BP01';

/**
 * The client backends of the role whose oid is $1, never this session. pg_stat_activity shows backend_type only to
 * roles with the privileges of the session's role (or pg_read_all_stats); where it is hidden (NULL), walsenders are
 * still told apart: pg_stat_get_wal_senders() lists their pids to everyone.
 */
const clientBackendsOf = (oid: string) => `FROM pg_catalog.pg_stat_activity
  WHERE usesysid = ${oid} AND pid <> pg_backend_pid()
    AND (backend_type = 'client backend'
         OR (backend_type IS NULL AND pid NOT IN (SELECT w.pid FROM pg_catalog.pg_stat_get_wal_senders() w WHERE w.pid IS NOT NULL)))`;
const CLIENT_BACKENDS_OF_ROLE = clientBackendsOf('$1::oid');

/**
 * Ending the sessions of the role named $1 in one round trip: what may be ended is decided in the statement that ends
 * them. `verdict` is `gone` (no such role), `self` (the role is the session's own: never), `superuser` (a non-superuser
 * admin may not end a superuser's backends), `privilege` (neither pg_signal_backend nor the role's privileges), or `ended`
 * — and only then is the CASE's last branch, the subquery calling pg_terminate_backend, evaluated (a CASE evaluates the
 * branch it chose only; the aggregate belongs to the subquery, which is not run for the other verdicts). `all_gone`:
 * every backend it signalled exited within the 2 s each (pg_terminate_backend with a timeout waits for it).
 */
const END_SESSIONS_OF_ROLE = `
  SELECT v.admin, v.verdict,
         CASE WHEN v.verdict = 'ended' THEN (SELECT COALESCE(pg_catalog.bool_and(pg_catalog.pg_terminate_backend(pid, 2000)), true) ${clientBackendsOf('v.role')}) END AS all_gone
    FROM (SELECT a.rolname AS admin, r.oid AS role,
                 CASE WHEN r.oid IS NULL THEN 'gone'
                      WHEN r.oid = a.oid THEN 'self'
                      WHEN a.rolsuper THEN 'ended'
                      WHEN r.rolsuper THEN 'superuser'
                      WHEN NOT (pg_catalog.pg_has_role(a.oid, 'pg_signal_backend', 'USAGE') OR pg_catalog.pg_has_role(a.oid, r.oid, 'USAGE')) THEN 'privilege'
                      ELSE 'ended' END AS verdict
            FROM pg_catalog.pg_roles a LEFT JOIN pg_catalog.pg_roles r ON r.rolname = $1
           WHERE a.rolname = session_user) v`;

/**
 * PostgreSQL through `pg`. Passwords are set as SCRAM-SHA-256 verifiers computed here; identifiers go through
 * the driver's identifier quoting and values through parameters or literal quoting. Every login is proven with
 * SCRAM-SHA-256 only ({@link ScramOnlyClient}), over verified TLS with channel binding unless the target says
 * `tls: false` explicitly (then verify reports PG_TLS as missing: whoever can read the traffic can take over the
 * accounts the vault rotates, from the new verifier and the test login's proof).
 *
 * What the administrator needs (README "Least-privilege administrators"):
 * - all versions: `LOGIN CREATEROLE` and `GRANT pg_signal_backend TO <admin>` (a superuser works too, but is not needed);
 * - PostgreSQL 16+: also ADMIN OPTION on every existing role it rotates and every role a policy grants
 *   (`GRANT <role> TO <admin> WITH ADMIN OPTION, INHERIT FALSE, SET FALSE`); roles it creates get it automatically;
 * - CONNECT WITH GRANT OPTION on databases policies name (`GRANT CONNECT ON DATABASE <db> TO <admin> WITH GRANT OPTION`).
 */
export class PostgresConnector implements Connector, PooledConnector {
  readonly type = 'postgres' as const;
  readonly supports: ConnectorSupport = { accountExpiry: 'exact', hostKey: false };
  /** Admin connections by target (admin-pool.ts); account logins are never pooled. */
  readonly pool: AdminPool<PooledClient>;

  constructor(pool: PoolSettings = DEFAULT_POOL_SETTINGS) {
    this.pool = new AdminPool(pool);
  }

  /** Closes every pooled admin connection (ConnectorRegistry, at shutdown). */
  closeAll(): Promise<void> {
    return this.pool.closeAll();
  }

  async verify(target: ConnectorTarget, opts?: CallOptions): Promise<VerifyResult> {
    return this.asAdmin(target, opts, async (c) => {
      const { rows } = await c.query<{ server_version: string; createrole: boolean; signal: boolean; stats: boolean; ssl: boolean | null; tls_version: string | null }>(
        `SELECT current_setting('server_version') AS server_version, r.rolcreaterole AS createrole,
                pg_has_role(session_user, 'pg_signal_backend', 'USAGE') AS signal,
                pg_has_role(session_user, 'pg_read_all_stats', 'USAGE') AS stats,
                s.ssl, s.version AS tls_version
           FROM pg_catalog.pg_roles r LEFT JOIN pg_catalog.pg_stat_ssl s ON s.pid = pg_backend_pid()
          WHERE r.rolname = session_user`,
      );
      const admin = await adminFacts(c);
      const row = rows[0];
      const adminId = c.escapeIdentifier(admin.username);
      const capabilities: Capability[] = [];
      const su = admin.superuser;
      capabilities.push({
        code: 'PG_CREATEROLE',
        ok: su || row.createrole,
        message: su ? 'superuser' : row.createrole ? 'CREATEROLE' : `missing: creating, changing and dropping roles needs CREATEROLE (ALTER ROLE ${adminId} CREATEROLE)`,
      });
      capabilities.push({
        code: 'PG_SIGNAL_BACKEND',
        ok: su || row.signal,
        message: su ? 'superuser' : row.signal ? 'pg_signal_backend'
          : `missing: ending an account's sessions (check-in, revoke) needs pg_signal_backend (GRANT pg_signal_backend TO ${adminId})`,
      });
      capabilities.push({
        code: 'PG_READ_ALL_STATS',
        ok: su || row.stats,
        message: su ? 'superuser' : row.stats ? 'pg_read_all_stats'
          : `missing: listing an account's live sessions (where from, since when, state) needs pg_read_all_stats (GRANT pg_read_all_stats TO ${adminId})`,
      });
      if (admin.major >= 16 && !su) {
        // which existing roles the vault will rotate is not known here: rotate and inspectAccess say which role lacks it
        capabilities.push({
          code: 'PG_ADMIN_OPTION',
          ok: true,
          message: `PostgreSQL ${admin.major}: the administrator manages only roles it holds ADMIN OPTION on (roles it creates get it). `
            + `For each existing account it rotates and each role a policy grants: GRANT <role> TO ${adminId} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE`,
        });
      }
      if (usesTls(target.options)) {
        capabilities.push({
          code: 'PG_TLS',
          ok: row.ssl === true,
          message: row.ssl ? `TLS (${row.tls_version ?? 'unknown version'}), server certificate verified${target.options.tlsCertSha256 ? ' and pinned' : ''}, SCRAM channel binding`
            : 'missing: the server does not report this session as TLS (ssl = on in postgresql.conf, hostssl in pg_hba.conf)',
        });
      } else {
        capabilities.push({
          code: 'PG_TLS',
          ok: false,
          message: 'missing: TLS is turned off for this target (options.tls: false), so a listener on the network between the vault and the server '
            + 'can take over every account the vault rotates (the new password\'s SCRAM verifier and the vault\'s test login cross it in the clear). '
            + 'Turn TLS on: ssl = on with a certificate the vault verifies (options.tlsCa, or the system CAs)',
        });
      }
      return { ok: true, serverVersion: `PostgreSQL ${row.server_version}`, capabilities };
    });
  }

  async inspectAccess(target: ConnectorTarget, access: AccessInspection, opts?: CallOptions): Promise<string[]> {
    return this.asAdmin(target, opts, (c) => this.refusals(target, opts, c, access.roles ?? [], access.databases ?? []));
  }

  async isAdmin(target: ConnectorTarget, username: string, opts?: CallOptions): Promise<boolean> {
    return this.asAdmin(target, opts, async (c) => {
      const { rows } = await c.query<{ same: boolean }>('SELECT session_user = $1 AS same', [username]);
      return rows[0].same;
    });
  }

  async updatePassword(target: ConnectorTarget, account: UpdatePasswordRequest, opts?: CallOptions): Promise<void> {
    await this.asAdmin(target, opts, async (c) => {
      // a missing role makes ALTER ROLE fail on its own (42704): no extra round trip to check first
      try {
        await c.query(`ALTER ROLE ${c.escapeIdentifier(account.username)} WITH PASSWORD ${c.escapeLiteral(scramSha256Verifier(account.password))}`);
      } catch (e) {
        if ((e as { code?: unknown }).code === INSUFFICIENT_PRIVILEGE) throw await this.cannotManage(c, account.username);
        throw e;
      }
    });
  }

  async login(target: ConnectorTarget, account: LoginRequest, opts?: CallOptions): Promise<void> {
    await this.connect(target, { user: account.username, password: account.password }, opts, async (c) => {
      await c.query('SELECT 1');
    });
  }

  /** `validUntil` is exact: `VALID UNTIL` (checked by password authentication; open sessions are not ended). */
  async newUser(target: ConnectorTarget, account: NewUserRequest, opts?: CallOptions): Promise<NewUserResponse> {
    const { access } = account;
    await this.asAdmin(target, opts, async (c) => {
      // the allow-list again, against the catalog as it is now: nothing privileged is handed out whoever asks
      const admin = await adminFacts(c);
      const grantRoles = access.grantRoles ?? [];
      const refused = await this.refusals(target, opts, c, grantRoles, access.database ? [access.database] : [], admin);
      if (refused.length) throw new ConnectorError('TARGET_INVALID_NAME', `refused by the allow-list: ${refused.join('; ')}`);
      const snapshot = await this.defaultAclSnapshot(target, opts, c, grantRoles, access.database);
      const role = c.escapeIdentifier(account.username);
      // the backstop: password logins stop at validUntil by themselves, should the vault be down at expiry
      const validUntil = account.validUntil ? ` VALID UNTIL ${c.escapeLiteral(account.validUntil.toISOString())}` : '';
      await c.query(`CREATE ROLE ${role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD ${c.escapeLiteral(scramSha256Verifier(account.password))}${validUntil}`);
      // before it holds any role: what those roles' default privileges were, where the account itself cannot change it
      if (snapshot) await c.query(`COMMENT ON ROLE ${role} IS ${c.escapeLiteral(snapshotComment(snapshot))}`);
      if (access.database) {
        await catalogStatement(c, `GRANT CONNECT ON DATABASE ${c.escapeIdentifier(access.database)} TO ${role}`);
      }
      // 16+: the privileges of the granted role, but no SET ROLE to it, so nothing can be created owned by it (and
      // outlive the account). PostgreSQL 15 has no SET option: membership there always allows SET ROLE.
      const how = admin.major >= 16 ? ' WITH INHERIT TRUE, SET FALSE' : '';
      for (const granted of access.grantRoles ?? []) await c.query(`GRANT ${c.escapeIdentifier(granted)} TO ${role}${how}`);
    });
    return { expiresOnTarget: account.validUntil ?? null };
  }

  async deleteUser(target: ConnectorTarget, { username }: DeleteUserRequest, opts?: CallOptions): Promise<void> {
    await this.asAdmin(target, opts, async (c) => {
      const found = await this.roleFacts(c, username);
      if (!found) return; // already gone
      if (found.superuser) throw new ConnectorError('TARGET_INVALID_NAME', `${username} is a superuser role, never a one-time account: not revoked`);
      const role = c.escapeIdentifier(username);
      const admin = await adminFacts(c);
      try {
        await c.query(`ALTER ROLE ${role} NOLOGIN`);
        // its memberships go first (DROP ROLE would end them anyway): the admin's own membership in it below then
        // carries nothing but the account's own privileges, so a one-time account claimed meanwhile is not refused for
        // "the administrator holds the privileges" of the roles this one was given. One the admin cannot revoke (a
        // superuser granted it) stays for DROP ROLE.
        const held = await c.query<{ role: string }>('SELECT r.rolname AS role FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles r ON r.oid = m.roleid WHERE m.member = $1', [found.oid]);
        for (const { role: granted } of held.rows) await c.query(`REVOKE ${c.escapeIdentifier(granted)} FROM ${role}`).catch(() => undefined);
        // DROP OWNED needs the privileges of the role: a CREATEROLE admin gives itself membership (15: CREATEROLE may
        // grant any non-superuser role; 16+: it holds ADMIN OPTION on roles it created). DROP ROLE ends it again.
        if (!admin.superuser) await c.query(`GRANT ${role} TO CURRENT_USER${admin.major >= 16 ? ' WITH INHERIT TRUE' : ''}`);
        // it can no longer log in: once every backend it had has exited (all_gone), none can appear
        if (!(await this.endSessions(c, username)).allGone) await this.awaitBackendsGone(c, found.oid, opts);
        // default privileges of the roles it was granted, as they were when it was created (they outlive DROP OWNED)
        await this.restoreDefaultAcls(target, opts, c, found.oid, admin);
        // Everything it owns is DROPPED, with what depends on it (a trigger it put on someone else's table calling its
        // function goes too), in every database it has anything in; never handed to a role with privileges (a
        // SECURITY DEFINER function reassigned to the admin would run as the admin). DROP OWNED also drops its grants,
        // and run here it covers the shared objects (grants on databases).
        const here = await c.query<{ db: string }>('SELECT current_database() AS db');
        await catalogStatement(c, `DROP OWNED BY ${role} CASCADE`);
        for (const datname of await this.databasesWithObjectsOf(c, found.oid)) {
          if (datname !== here.rows[0].db) await this.inDatabase(target, datname, opts, (other) => catalogStatement(other, `DROP OWNED BY ${role} CASCADE`));
        }
        await c.query(`DROP ROLE IF EXISTS ${role}`);
      } catch (e) {
        // dropped by someone else meanwhile (42704 undefined_object): it is gone, which is what revoking wants
        if ((e as { code?: unknown }).code === '42704' && !(await this.roleFacts(c, username))) return;
        if (!admin.superuser) await c.query(`REVOKE ${role} FROM CURRENT_USER`).catch(() => undefined);
        if ((e as { code?: unknown }).code === INSUFFICIENT_PRIVILEGE) throw await this.cannotManage(c, username);
        if ((e as { code?: unknown }).code === DEPENDENT_OBJECTS_STILL_EXIST) {
          // what DROP OWNED cannot remove as a non-superuser: privileges other roles granted to it directly
          const detail = String((e as { detail?: unknown }).detail ?? '').replace(/\s+/g, ' ').slice(0, 200);
          throw new ConnectorError('TARGET_ERROR', `role ${username} cannot be dropped yet (it can no longer log in and its sessions were ended): `
            + `it still holds privileges granted by other roles, which they (or a superuser) must revoke: ${detail}`);
        }
        throw e;
      }
    });
  }

  async terminateSessions(target: ConnectorTarget, { username }: TerminateSessionsRequest, opts?: CallOptions): Promise<void> {
    await this.asAdmin(target, opts, (c) => this.endSessions(c, username));
  }

  /**
   * The role's client backends (pg_stat_activity): never this session, never a walsender or background worker. Needs
   * pg_read_all_stats (PG_READ_ALL_STATS): without it PostgreSQL hides when another role's session started, where from
   * and its state. The query text is never read (it may hold a password: ALTER ROLE … PASSWORD).
   */
  async listSessions(target: ConnectorTarget, { username }: ListSessionsRequest, opts?: CallOptions): Promise<TargetSession[]> {
    return this.asAdmin(target, opts, async (c) => {
      const found = await this.roleFacts(c, username);
      if (!found) return [];
      const { rows } = await c.query<{ pid: number; datname: string | null; addr: string | null; port: number | null; since: Date | null; start_us: string | null; state: string | null }>(
        `SELECT pid, datname, host(client_addr) AS addr, client_port AS port, backend_start AS since,
                (extract(epoch FROM backend_start) * 1000000)::bigint::text AS start_us, state
           ${CLIENT_BACKENDS_OF_ROLE} ORDER BY backend_start, pid`,
        [found.oid],
      );
      if (rows.some((r) => r.start_us === null)) throw await this.cannotSeeSessions(c, username);
      return rows.map((r) => ({
        id: `pg-${r.pid}-${r.start_us}`,
        username,
        kind: 'postgres' as const,
        clientAddress: r.addr === null ? null : r.addr.includes(':') ? `[${r.addr}]:${r.port}` : `${r.addr}:${r.port}`,
        since: r.since ? r.since.toISOString() : null,
        state: r.state,
        database: r.datname,
      }));
    });
  }

  /**
   * Ends one client backend of the role, only while it is the one of the id (pid and backend start to the µs): pg_terminate_backend,
   * waiting up to 5 s for it to exit. Never this session; a superuser's needs a superuser admin (TARGET_ERROR says so).
   */
  async endSession(target: ConnectorTarget, { username, sessionId }: EndSessionRequest, opts?: CallOptions): Promise<boolean> {
    const m = SESSION_ID_PATTERNS.postgres.exec(sessionId);
    if (!m) return false;
    return this.asAdmin(target, opts, async (c) => {
      const found = await this.roleFacts(c, username);
      if (!found) return false;
      const { rows } = await c.query<{ pid: number; start_us: string | null }>(
        `SELECT pid, (extract(epoch FROM backend_start) * 1000000)::bigint::text AS start_us ${CLIENT_BACKENDS_OF_ROLE} AND pid = $2::int`,
        [found.oid, m[1]],
      );
      if (rows.some((r) => r.start_us === null)) throw await this.cannotSeeSessions(c, username);
      if (!rows.some((r) => r.start_us === m[2])) return false;
      if (found.superuser && !(await adminFacts(c)).superuser) {
        throw new ConnectorError('TARGET_ERROR', `the session of ${username} cannot be ended: it is a superuser role, and only a superuser administrator may end a superuser's sessions`);
      }
      try {
        await c.query(
          `SELECT pg_terminate_backend(pid, 5000) ${CLIENT_BACKENDS_OF_ROLE} AND pid = $2::int AND (extract(epoch FROM backend_start) * 1000000)::bigint = $3::bigint`,
          [found.oid, m[1], m[2]],
        );
      } catch (e) {
        if ((e as { code?: unknown }).code === INSUFFICIENT_PRIVILEGE) {
          throw new ConnectorError('TARGET_ERROR', `the session of ${username} cannot be ended: the administrator needs pg_signal_backend (GRANT pg_signal_backend TO ${c.escapeIdentifier(target.adminUsername)})`);
        }
        throw e;
      }
      return true;
    });
  }

  private async cannotSeeSessions(c: Client, username: string): Promise<ConnectorError> {
    const admin = await adminFacts(c);
    return new ConnectorError('TARGET_ERROR', `the sessions of ${username} cannot be read: the administrator needs pg_read_all_stats (GRANT pg_read_all_stats TO ${c.escapeIdentifier(admin.username)})`);
  }

  /**
   * Every refusal for these roles and databases, all at once. What a role holds inside a database (grant options,
   * 15: CREATE) is checked in the database the admin connects to and in each named database that passed its own checks.
   */
  private async refusals(target: ConnectorTarget, opts: CallOptions | undefined, c: Client, roles: string[], databases: string[], known?: AdminFacts): Promise<string[]> {
    const admin = known ?? (await adminFacts(c));
    const out: string[] = [];
    const uniqueRoles = [...new Set(roles)];
    const existing: string[] = [];
    for (const role of uniqueRoles) {
      const lines = await inspectRole(c, role, admin);
      out.push(...lines);
      if (!lines.some((l) => l.endsWith(': does not exist'))) existing.push(role);
    }
    const checkIn: string[] = [];
    for (const db of [...new Set(databases)]) {
      const lines = await inspectDatabase(c, db, admin);
      out.push(...lines);
      if (!lines.some((l) => /: (does not exist|is a template|does not allow connections|the administrator cannot grant)/.test(l))) checkIn.push(db);
    }
    if (existing.length) {
      const { rows } = await c.query<{ db: string }>('SELECT current_database() AS db');
      const inDb = async (cc: Client) => {
        for (const role of existing) out.push(...(await inspectRoleInDatabase(cc, role, admin)));
      };
      await inDb(c);
      for (const db of checkIn) if (db !== rows[0].db) await this.inDatabase(target, db, opts, inDb);
    }
    return [...new Set(out)];
  }

  /**
   * The default privileges of the granted roles (and the roles they belong to) in every database the account could
   * connect to; refused when the admin cannot connect to one of them (it could not put them back at revoke).
   */
  private async defaultAclSnapshot(target: ConnectorTarget, opts: CallOptions | undefined, c: Client, grantRoles: string[], database: string | undefined): Promise<DefaultAclSnapshot | undefined> {
    const roles = await rolesAndAncestors(c, grantRoles);
    if (!roles.length) return undefined;
    const reachable = await reachableDatabases(c, roles, database);
    const closed = reachable.filter((d) => !d.adminCan).map((d) => d.datname);
    if (closed.length) {
      throw new ConnectorError('TARGET_INVALID_NAME', `refused by the allow-list: the account could connect to database(s) ${closed.join(', ')} (through PUBLIC or a granted role), `
        + `where the administrator cannot connect to check what it leaves behind (GRANT CONNECT ON DATABASE … TO ${c.escapeIdentifier(target.adminUsername)}, or REVOKE CONNECT … FROM PUBLIC)`);
    }
    const { rows } = await c.query<{ db: string }>('SELECT current_database() AS db');
    const snapshot: DefaultAclSnapshot = { roles, databases: {} };
    for (const { datname } of reachable) {
      if (datname === rows[0].db) snapshot.databases[datname] = await defaultAcls(c, roles);
      else await this.inDatabase(target, datname, opts, async (other) => void (snapshot.databases[datname] = await defaultAcls(other, roles)));
    }
    return snapshot;
  }

  /**
   * Puts the default privileges recorded at newUser back, in every recorded database: the admin takes the
   * privileges of each role it must change for the moment (GRANT … TO CURRENT_USER), and gives them up again.
   */
  private async restoreDefaultAcls(target: ConnectorTarget, opts: CallOptions | undefined, c: Client, oid: string, admin: AdminFacts): Promise<void> {
    const snapshot = await readSnapshot(c, oid);
    if (!snapshot) return;
    const { rows } = await c.query<{ db: string }>('SELECT current_database() AS db');
    const plans: Array<{ db: string; statements: string[] }> = [];
    const roles = new Set<string>();
    for (const [db, recorded] of Object.entries(snapshot.databases)) {
      const plan = async (cc: Client) => {
        const r = await restoreStatements(cc, recorded, snapshot.roles);
        if (r.statements.length) plans.push({ db, statements: r.statements });
        for (const role of r.roles) roles.add(role);
      };
      if (db === rows[0].db) await plan(c);
      else await this.inDatabase(target, db, opts, plan);
    }
    if (!plans.length) return;
    const taken: string[] = [];
    try {
      if (!admin.superuser) {
        for (const role of roles) {
          const { rows: h } = await c.query<{ has: boolean }>("SELECT pg_catalog.pg_has_role(session_user, $1, 'USAGE') AS has", [role]);
          if (h[0].has) continue;
          await c.query(`GRANT ${c.escapeIdentifier(role)} TO CURRENT_USER${admin.major >= 16 ? ' WITH INHERIT TRUE, SET FALSE' : ''}`);
          taken.push(role);
        }
      }
      for (const p of plans) {
        const run = async (cc: Client) => {
          for (const sql of p.statements) await cc.query(sql);
        };
        if (p.db === rows[0].db) await run(c);
        else await this.inDatabase(target, p.db, opts, run);
      }
    } catch (e) {
      if (e instanceof ConnectorError) throw e;
      const why = String((e as { message?: unknown }).message ?? e).replace(/\s+/g, ' ').slice(0, 200);
      throw new ConnectorError('TARGET_ERROR', `the default privileges of ${[...roles].join(', ')} changed while the one-time account existed and could not be put back `
        + `(it can no longer log in and its sessions were ended; the administrator needs ${admin.major >= 16 ? 'ADMIN OPTION on those roles' : 'CREATEROLE'}): ${why}`);
    } finally {
      for (const role of taken) await c.query(`REVOKE ${c.escapeIdentifier(role)} FROM CURRENT_USER`).catch(() => undefined);
    }
  }

  /**
   * Ends the role's client backends — never walsenders, never this session, and no background worker wherever the admin
   * can see backend types (revoke: always, it holds the role's privileges then). A superuser's sessions cannot be ended
   * by a non-superuser (pg_signal_backend does not reach them): refused loudly, not skipped. One round trip
   * ({@link END_SESSIONS_OF_ROLE}): the checks and the termination are one statement.
   */
  private async endSessions(c: Client, username: string): Promise<{ allGone: boolean }> {
    const { rows } = await c.query<{ admin: string; verdict: 'gone' | 'self' | 'superuser' | 'privilege' | 'ended'; all_gone: boolean | null }>(END_SESSIONS_OF_ROLE, [username]);
    const row = rows[0];
    if (!row) throw new ConnectorError('TARGET_ERROR', 'the administrator\'s own role was not found in pg_roles');
    switch (row.verdict) {
      case 'gone':
        return { allGone: true }; // no role, no sessions
      case 'self':
        throw new ConnectorError('TARGET_INVALID_NAME', 'the sessions of the target\'s administrator are never ended by the vault');
      case 'superuser':
        throw new ConnectorError('TARGET_ERROR', `the sessions of ${username} cannot be ended: it is a superuser role, and only a superuser administrator may end a superuser's sessions`);
      case 'privilege':
        throw new ConnectorError('TARGET_ERROR', `the sessions of ${username} cannot be ended: the administrator needs pg_signal_backend (GRANT pg_signal_backend TO ${c.escapeIdentifier(row.admin)})`);
      default:
        // with a timeout, pg_terminate_backend waits (up to 2 s each) until the backend has exited: when this returns
        // with all_gone, the sessions are gone, not only signalled
        return { allGone: row.all_gone === true };
    }
  }

  /** Why the admin may not change a role, and what to grant. */
  private async cannotManage(c: Client, username: string): Promise<ConnectorError> {
    const admin = await adminFacts(c);
    const found = await this.roleFacts(c, username);
    const adminId = c.escapeIdentifier(admin.username);
    const why = found?.superuser ? `${username} is a superuser role, which only a superuser may change`
      : admin.major >= 16 ? `on PostgreSQL ${admin.major} it needs ADMIN OPTION on the role (GRANT ${c.escapeIdentifier(username)} TO ${adminId} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE)`
        : `it needs CREATEROLE (ALTER ROLE ${adminId} CREATEROLE)`;
    return new ConnectorError('TARGET_ERROR', `the administrator may not change role ${username}: ${why}`);
  }

  private async roleFacts(c: Client, username: string): Promise<{ oid: string; superuser: boolean } | undefined> {
    const { rows } = await c.query<{ oid: string; rolsuper: boolean }>('SELECT oid::text AS oid, rolsuper FROM pg_catalog.pg_roles WHERE rolname = $1', [username]);
    return rows[0] && { oid: rows[0].oid, superuser: rows[0].rolsuper };
  }

  /** The databases in which the role owns something or holds a grant (pg_shdepend, which is cluster-wide). */
  private async databasesWithObjectsOf(c: Client, oid: string): Promise<string[]> {
    const { rows } = await c.query<{ datname: string }>(
      `SELECT DISTINCT d.datname FROM pg_catalog.pg_shdepend s JOIN pg_catalog.pg_database d ON d.oid = s.dbid
        WHERE s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass AND s.refobjid = $1::oid ORDER BY d.datname`,
      [oid],
    );
    return rows.map((r) => r.datname);
  }

  /** Runs `work` as the admin connected to another database (a pooled connection); a database dropped meanwhile (3D000) is skipped. */
  private async inDatabase(target: ConnectorTarget, database: string, opts: CallOptions | undefined, work: (c: Client) => Promise<void>): Promise<void> {
    try {
      await this.asAdmin(target, opts, work, database);
    } catch (e) {
      if ((e as { code?: unknown }).code === '3D000') return;
      if ((e as { code?: unknown }).code === INSUFFICIENT_PRIVILEGE) {
        throw new ConnectorError('TARGET_ERROR', `the administrator may not connect to database ${database}, where the role has objects `
          + `(GRANT CONNECT ON DATABASE ${escapeIdentifier(database)} TO ${escapeIdentifier(target.adminUsername)})`);
      }
      throw e;
    }
  }

  /**
   * pg_terminate_backend only signals: wait (briefly, bounded) until the role's backends have exited, so
   * DROP OWNED does not queue behind locks a dying session still holds. Not fatal when they linger.
   */
  private async awaitBackendsGone(c: Client, oid: string, opts: CallOptions | undefined): Promise<void> {
    const deadline = Date.now() + Math.min(2000, (opts?.timeoutMs ?? 15_000) / 4);
    while (Date.now() < deadline && !opts?.signal?.aborted) {
      const { rowCount } = await c.query(`SELECT 1 ${CLIENT_BACKENDS_OF_ROLE}`, [oid]);
      if (!rowCount) return;
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /**
   * Runs `work` as the admin on a pooled connection (admin-pool.ts) when `database` is the target's own: reused only for the same address, database, admin
   * credential and TLS settings, with this call's statement_timeout/lock_timeout, and closed (never reused) when the work
   * threw or left a transaction open or the session's identity or search path changed. The work functions of this
   * connector run single autocommit statements and never SET anything (the pool checks the transaction status anyway).
   */
  private async asAdmin<T>(target: ConnectorTarget, opts: CallOptions | undefined, work: (c: Client) => Promise<T>, database = target.options.database ?? 'postgres'): Promise<T> {
    const timeouts = callTimeouts(opts);
    const driver: PoolDriver<PooledClient> = {
      open: async (signal) => {
        const client = this.client(target, { user: target.adminUsername, password: target.adminPassword, admin: true }, opts, database) as PooledClient;
        client.timeouts = timeouts;
        await this.open(client, target, signal);
        return client;
      },
      destroy: (c) => closeSoon(c),
      check: async (c) => {
        // a round trip; the admin may still log in (NOLOGIN or an expired VALID UNTIL set on the server ends reuse), and
        // the session is still the admin's own, resolving through pg_catalog only (no SET ROLE, no search_path left behind)
        const { rows } = await c.query<{ ok: boolean }>(
          `SELECT rolcanlogin AND (rolvaliduntil IS NULL OR rolvaliduntil > now()) AND current_user = session_user
                  AND current_setting('search_path') = 'pg_catalog' AS ok
             FROM pg_catalog.pg_roles WHERE rolname = session_user`);
        if (rows[0]?.ok !== true) throw new Error('the pooled session may no longer be used');
      },
      watch: (c, lost) => {
        c.on('end', lost);
        c.on('error', lost);
      },
      reusable: (c) => c.transactionStatus === 'I' && !c.sessionChanged,
    };
    try {
      // Only connections to the target's own database are kept: one kept open in another database (the per-database
      // checks of newUser and revoke) would make CREATE DATABASE from it as a template, or DROP DATABASE, fail there.
      if (database !== (target.options.database ?? 'postgres')) {
        const c = await driver.open(opts?.signal);
        const onAbort = () => driver.destroy(c);
        opts?.signal?.addEventListener('abort', onAbort, { once: true });
        try {
          return await work(c);
        } finally {
          opts?.signal?.removeEventListener('abort', onAbort);
          await c.end().catch(() => undefined);
        }
      }
      return await this.pool.use(poolKeyOf(target, database), driver, opts, async (c) => {
        if (c.timeouts.statement !== timeouts.statement || c.timeouts.lock !== timeouts.lock) {
          c.timeouts = { statement: -1, lock: -1 }; // unknown until the SET succeeded (a failure closes the connection)
          await c.query(`SET statement_timeout = ${timeouts.statement}; SET lock_timeout = ${timeouts.lock}`);
          c.timeouts = timeouts;
        }
        return work(c);
      });
    } catch (e) {
      throw this.authFailure(e, target.adminUsername);
    }
  }

  /** A fresh connection (a login as an account: never pooled, it is the proof that the password works). */
  private async connect<T>(
    target: ConnectorTarget,
    auth: { user: string; password?: string },
    opts: CallOptions | undefined,
    work: (c: Client) => Promise<T>,
  ): Promise<T> {
    const client = this.client(target, auth, opts, target.options.database ?? 'postgres');
    try {
      await this.open(client, target, opts?.signal);
      return await work(client);
    } catch (e) {
      throw this.authFailure(e, auth.user);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  private client(target: ConnectorTarget, auth: { user: string; password?: string; admin?: boolean }, opts: CallOptions | undefined, database: string): ScramOnlyClient {
    const timeouts = callTimeouts(opts);
    const client = new ScramOnlyClient({
      host: target.host,
      port: target.port,
      database,
      user: auth.user,
      password: auth.password ?? '',
      connectionTimeoutMillis: opts?.timeoutMs,
      // the server gives up too (a statement blocked on a lock would otherwise finish after the vault gave up on it
      // and, say, create a role the vault believes was never made)
      ...(opts?.timeoutMs && !auth.admin ? { statement_timeout: timeouts.statement, lock_timeout: timeouts.lock } : {}),
      // the admin resolves nothing through a schema someone else can create objects in; a pooled admin connection starts
      // with known limits (0 without a timeout, which pg's statement_timeout option would not send): later calls SET theirs
      ...(auth.admin ? { options: `-c search_path=pg_catalog -c statement_timeout=${timeouts.statement} -c lock_timeout=${timeouts.lock}` } : {}),
      application_name: 'pam-vault',
      ssl: tlsOptions(target.options) ?? false,
      requireChannelBinding: usesTls(target.options),
    });
    client.on('error', () => undefined); // a connection lost after connect fails its query; nothing else to do
    return client;
  }

  /** Connects (SCRAM only, TLS identity verified); the abort signal ends the connection, during and after connecting. */
  private async open(client: ScramOnlyClient, target: ConnectorTarget, signal: AbortSignal | undefined): Promise<void> {
    const onAbort = () => void client.end().catch(() => undefined);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      if (signal?.aborted) throw new ConnectorError('TARGET_ERROR', 'the call was aborted');
      await client.connect().catch((e: unknown) => {
        const why = usesTls(target.options) ? isTlsIdentityFailure(e) : undefined;
        throw why ? identityUnverified(why) : e;
      });
    } catch (e) {
      await client.end().catch(() => undefined);
      throw e;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  private authFailure(e: unknown, user: string): unknown {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && AUTH_FAILED.has(code)) return new ConnectorError('TARGET_AUTH_FAILED', `PostgreSQL refused the login of ${user}`);
    return e;
  }
}

/**
 * Ends a connection politely (Terminate), but destroys its socket if the server has not closed it within a second (a
 * backend that stopped answering, a network that dropped it silently): closeAll at shutdown never hangs on one.
 */
async function closeSoon(c: Client): Promise<void> {
  const timer = setTimeout(() => (c as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy(), 1000);
  try {
    await c.end().catch(() => undefined);
  } finally {
    clearTimeout(timer);
  }
}

/** A pooled admin connection and the statement/lock timeouts its session has now. */
type PooledClient = ScramOnlyClient & { timeouts: { statement: number; lock: number } };

/** The per-call server-side limits (ms; 0: none): the server gives up a little before the vault does. */
function callTimeouts(opts: CallOptions | undefined): { statement: number; lock: number } {
  return opts?.timeoutMs ? { statement: Math.max(1000, opts.timeoutMs - 2000), lock: Math.max(500, opts.timeoutMs - 3000) } : { statement: 0, lock: 0 };
}

/**
 * One statement that changes a catalog row other sessions may change at the same moment — a database's ACL, which every
 * one-time account's `GRANT CONNECT` and every revocation's `DROP OWNED` rewrite. PostgreSQL refuses the second of two
 * concurrent changes with XX000 "tuple concurrently updated" (not a lock wait): concurrent claims and revocations on
 * one database failed with it. The statement had no effect then, so it is run again, a few times, after a short jitter.
 */
async function catalogStatement(c: Client, sql: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await c.query(sql);
      return;
    } catch (e) {
      const concurrent = (e as { code?: unknown }).code === 'XX000' && String((e as { message?: unknown }).message).includes('tuple concurrently updated');
      if (!concurrent || attempt >= 6) throw e;
      await new Promise((r) => setTimeout(r, 5 + Math.random() * 20 * attempt));
    }
  }
}

import { Client, escapeIdentifier } from 'pg';
import { AdminPool, DEFAULT_POOL_SETTINGS, PooledConnector, PoolDriver, poolKeyOf, PoolSettings } from '../admin-pool';
import { ConnectorError } from '../connector.errors';
import {
  AccessInspection, CallOptions, Capability, Connector, ConnectorSupport, ConnectorTarget, DeleteUserRequest, EndSessionRequest, ListSessionsRequest, LoginRequest,
  NewUserRequest, NewUserResponse, SESSION_ID_PATTERNS, TargetSession, TerminateSessionsRequest, UpdatePasswordRequest, VerifyResult,
} from '../connector.interface';
import { adminFacts, AdminFacts, adminFactsOf, ADMIN_FACTS, databaseChecks, homeChecks } from './access-check';
import { batch } from './batch';
import { DefaultAclItem, DefaultAclSnapshot, defaultAclsStatement, parseSnapshot, restoreReadStatements, restoreStatements, snapshotComment, snapshotStatements } from './default-acl';
import { scramSha256Verifier } from './scram';
import { identityUnverified, isTlsIdentityFailure, ScramOnlyClient, tlsOptions, usesTls } from './scram-only-client';

const AUTH_FAILED = new Set(['28P01', '28000']);
/** How long a pooled admin connection to a database other than the target's own stays open unused (see asAdmin). */
const OTHER_DATABASE_IDLE_MS = 1000;
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
  /** The server's major version of each admin connection (majorOf). */
  private readonly majors = new WeakMap<Client, number>();

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
    return this.asAdmin(target, opts, async (c) => (await this.checkAccess(target, opts, c, access.roles ?? [], access.databases ?? [])).refused);
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
      const grantRoles = access.grantRoles ?? [];
      const { admin, refused, closed, snapshot } = await this.checkAccess(target, opts, c, grantRoles, access.database ? [access.database] : [], { database: access.database });
      if (refused.length) throw new ConnectorError('TARGET_INVALID_NAME', `refused by the allow-list: ${refused.join('; ')}`);
      if (closed.length) {
        throw new ConnectorError('TARGET_INVALID_NAME', `refused by the allow-list: the account could connect to database(s) ${closed.join(', ')} (through PUBLIC or a granted role), `
          + `where the administrator cannot connect to check what it leaves behind (GRANT CONNECT ON DATABASE … TO ${c.escapeIdentifier(target.adminUsername)}, or REVOKE CONNECT … FROM PUBLIC)`);
      }
      const role = c.escapeIdentifier(account.username);
      // the backstop: password logins stop at validUntil by themselves, should the vault be down at expiry
      const validUntil = account.validUntil ? ` VALID UNTIL ${c.escapeLiteral(account.validUntil.toISOString())}` : '';
      // 16+: the privileges of the granted role, but no SET ROLE to it, so nothing can be created owned by it (and
      // outlive the account). PostgreSQL 15 has no SET option: membership there always allows SET ROLE.
      const how = admin.major >= 16 ? ' WITH INHERIT TRUE, SET FALSE' : '';
      // one transaction (batch.ts): the account exists with all of it or not at all
      await catalogStatements(c, [
        `CREATE ROLE ${role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD ${c.escapeLiteral(scramSha256Verifier(account.password))}${validUntil}`,
        // before it holds any role: what those roles' default privileges were, where the account itself cannot change it
        ...(snapshot ? [`COMMENT ON ROLE ${role} IS ${c.escapeLiteral(snapshotComment(snapshot))}`] : []),
        ...(access.database ? [`GRANT CONNECT ON DATABASE ${c.escapeIdentifier(access.database)} TO ${role}`] : []),
        ...grantRoles.map((granted) => `GRANT ${c.escapeIdentifier(granted)} TO ${role}${how}`),
      ]);
    });
    return { expiresOnTarget: account.validUntil ?? null };
  }

  async deleteUser(target: ConnectorTarget, { username }: DeleteUserRequest, opts?: CallOptions): Promise<void> {
    await this.asAdmin(target, opts, async (c) => {
      // what it is, what it holds and the default privileges recorded at its creation (a comment only the admin's peers
      // may change), in one round trip
      const [facts, found, memberships, comment] = await batch(c, [
        ADMIN_FACTS,
        { text: 'SELECT oid::text AS oid, rolsuper FROM pg_catalog.pg_roles WHERE rolname = $1', values: [username] },
        { text: 'SELECT r.rolname AS role FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles r ON r.oid = m.roleid JOIN pg_catalog.pg_roles a ON a.oid = m.member WHERE a.rolname = $1', values: [username] },
        { text: "SELECT pg_catalog.shobj_description(a.oid, 'pg_authid') AS d FROM pg_catalog.pg_roles a WHERE a.rolname = $1", values: [username] },
      ]);
      const account = found.rows[0] as { oid: string; rolsuper: boolean } | undefined;
      if (!account) return; // already gone
      if (account.rolsuper) throw new ConnectorError('TARGET_INVALID_NAME', `${username} is a superuser role, never a one-time account: not revoked`);
      const admin = adminFactsOf(facts);
      const role = c.escapeIdentifier(username);
      try {
        // It can no longer log in; its memberships go first (DROP ROLE would end them anyway): the admin's own
        // membership in it then carries nothing but the account's own privileges, so a one-time account claimed
        // meanwhile is not refused for "the administrator holds the privileges" of the roles this one was given. DROP
        // OWNED needs the privileges of the role: a CREATEROLE admin gives itself membership (15: CREATEROLE may grant
        // any non-superuser role; 16+: it holds ADMIN OPTION on roles it created). DROP ROLE ends it again.
        const lockDown = [
          `ALTER ROLE ${role} NOLOGIN`,
          ...(memberships.rows as Array<{ role: string }>).map((m) => `REVOKE ${c.escapeIdentifier(m.role)} FROM ${role}`),
          ...(admin.superuser ? [] : [`GRANT ${role} TO CURRENT_USER${admin.major >= 16 ? ' WITH INHERIT TRUE' : ''}`]),
        ];
        await batch(c, lockDown.map((text) => ({ text }))).catch(async () => {
          // rolled back as a whole: one statement at a time, where a membership the admin cannot revoke (a superuser
          // granted it) stays for DROP ROLE
          await c.query(lockDown[0]);
          for (const sql of lockDown.slice(1, admin.superuser ? undefined : -1)) await c.query(sql).catch(() => undefined);
          if (!admin.superuser) await c.query(lockDown[lockDown.length - 1]);
        });
        // it can no longer log in: once every backend it had has exited (all_gone), none can appear
        if (!(await this.endSessions(c, username)).allGone) await this.awaitBackendsGone(c, account.oid, opts);
        // default privileges of the roles it was granted, as they were when it was created (they outlive DROP OWNED)
        await this.restoreDefaultAcls(target, opts, c, parseSnapshot((comment.rows[0] as { d: string | null } | undefined)?.d), admin);
        // Everything it owns is DROPPED, with what depends on it (a trigger it put on someone else's table calling its
        // function goes too), in every database it has anything in; never handed to a role with privileges (a
        // SECURITY DEFINER function reassigned to the admin would run as the admin). DROP OWNED also drops its grants,
        // and run here it covers the shared objects (grants on databases). Usually it has nothing in another database:
        // DROP OWNED and DROP ROLE in one transaction; DROP ROLE refuses (2BP01) when it does, and then it goes
        // database by database.
        try {
          await catalogStatements(c, [`DROP OWNED BY ${role} CASCADE`, `DROP ROLE IF EXISTS ${role}`]);
        } catch (e) {
          if ((e as { code?: unknown }).code !== DEPENDENT_OBJECTS_STILL_EXIST) throw e;
          await catalogStatements(c, [`DROP OWNED BY ${role} CASCADE`]);
          for (const datname of await this.databasesWithObjectsOf(c, account.oid)) {
            if (datname !== admin.db) await this.inDatabase(target, datname, opts, (other) => catalogStatements(other, [`DROP OWNED BY ${role} CASCADE`]));
          }
          await c.query(`DROP ROLE IF EXISTS ${role}`);
        }
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
   * Every refusal for these roles and databases, all at once; with `snapshot` (newUser) also the default privileges to
   * record and the databases the account could reach where the admin cannot connect (`closed`). What a role holds inside
   * a database (grant options, 15: CREATE) is checked in the database the admin connects to and in each named database
   * that passed its own checks. One round trip where the admin connects, one per other database checked or recorded.
   */
  private async checkAccess(target: ConnectorTarget, opts: CallOptions | undefined, c: Client, roles: string[], databases: string[], snapshot?: { database: string | undefined }):
    Promise<{ admin: AdminFacts; refused: string[]; closed: string[]; snapshot?: DefaultAclSnapshot }> {
    const uniqueRoles = [...new Set(roles)];
    const home = homeDatabaseOf(target);
    const checks = homeChecks(uniqueRoles, [...new Set(databases)], { major: await this.majorOf(c) }, home);
    const snap = snapshot && uniqueRoles.length ? snapshotStatements(uniqueRoles, snapshot.database) : undefined;
    const results = await batch(c, [...checks.statements, ...(snap?.statements ?? [])]);
    const mine = results.slice(0, checks.statements.length);
    const admin = adminFactsOf(mine[0]);
    const refused = checks.refusals(mine);
    const read = snap?.read(results.slice(checks.statements.length));
    const existing = uniqueRoles.filter((role) => !refused.includes(`role ${role}: does not exist`));
    const checkIn = existing.length ? checks.checkIn(mine).filter((db) => db !== home) : [];
    const closed = read?.roles.length ? read.reachable.filter((d) => !d.adminCan).map((d) => d.datname) : [];
    // the default privileges are recorded only for an account that will be created
    const record = read?.roles.length && !refused.length && !closed.length ? read : undefined;
    const recorded: Record<string, DefaultAclItem[]> = {};
    if (record?.reachable.some((d) => d.datname === home)) recorded[home] = record.here;
    const readIn = record ? record.reachable.map((d) => d.datname).filter((db) => db !== home) : [];
    for (const db of [...new Set([...checkIn, ...readIn])]) {
      await this.inDatabase(target, db, opts, async (other) => {
        const there = checkIn.includes(db) ? databaseChecks(existing, admin, db) : undefined;
        const acls = record && readIn.includes(db) ? defaultAclsStatement(record.roles) : undefined;
        const r = await batch(other, [...(there?.statements ?? []), ...(acls ? [acls] : [])]);
        if (there) refused.push(...there.refusals(r.slice(0, there.statements.length)));
        if (acls) recorded[db] = r[r.length - 1].rows as DefaultAclItem[];
      });
    }
    return { admin, refused: [...new Set(refused)], closed, ...(record ? { snapshot: { roles: record.roles, databases: recorded } } : {}) };
  }

  /** The server's major version on this admin connection (asked once per connection). */
  private async majorOf(c: Client): Promise<number> {
    let major = this.majors.get(c);
    if (major === undefined) {
      major = (await adminFacts(c)).major;
      this.majors.set(c, major);
    }
    return major;
  }

  /**
   * Puts the default privileges recorded at newUser back, in every recorded database: the admin takes the
   * privileges of each role it must change for the moment (GRANT … TO CURRENT_USER), and gives them up again.
   */
  private async restoreDefaultAcls(target: ConnectorTarget, opts: CallOptions | undefined, c: Client, snapshot: DefaultAclSnapshot | undefined, admin: AdminFacts & { db: string }): Promise<void> {
    if (!snapshot) return;
    const plans: Array<{ db: string; statements: string[] }> = [];
    const roles = new Set<string>();
    const reads = restoreReadStatements(snapshot.roles);
    for (const [db, recorded] of Object.entries(snapshot.databases)) {
      const plan = async (cc: Client) => {
        const r = await restoreStatements(cc, recorded, reads.read(await batch(cc, reads.statements)));
        if (r.statements.length) plans.push({ db, statements: r.statements });
        for (const role of r.roles) roles.add(role);
      };
      if (db === admin.db) await plan(c);
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
        if (p.db === admin.db) await run(c);
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
   * Runs `work` as the admin on a pooled connection (admin-pool.ts) to `database` (the target's own by default): reused only for the same address, database, admin
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
      // Connections to the target's other databases (the per-database checks of newUser and revoke) are pooled too, with
      // the same identity and fingerprint rules, in the place of the home database's pool (a target that moves has all of
      // them closed at once), but kept idle for a second only: DROP DATABASE and CREATE DATABASE … TEMPLATE wait up to
      // 5 s for other sessions to leave the database, so an idle vault connection never makes them fail.
      const home = target.options.database ?? 'postgres';
      const key = database === home ? poolKeyOf(target, database) : { ...poolKeyOf(target, database), place: poolKeyOf(target, home).identity, idleMs: OTHER_DATABASE_IDLE_MS };
      return await this.pool.use(key, driver, opts, async (c) => {
        if (c.timeouts.statement !== timeouts.statement || c.timeouts.lock !== timeouts.lock) {
          c.timeouts = { statement: -1, lock: -1 }; // unknown until the SET succeeded (a failure closes the connection)
          await c.query(`SET statement_timeout = ${timeouts.statement}; SET lock_timeout = ${timeouts.lock}`);
          c.timeouts = timeouts;
        }
        return work((c.watched ??= watched(c)));
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
    // while connecting, end() would leave connect() pending for ever (pg ignores the close once it is ending): the
    // socket is destroyed instead, and connect() rejects ("Connection terminated unexpectedly")
    const onAbort = () => destroySocket(client);
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
  const timer = setTimeout(() => destroySocket(c), 1000);
  try {
    await c.end().catch(() => undefined);
  } finally {
    clearTimeout(timer);
  }
}

/** The database the target's admin connects to unless told otherwise. */
function homeDatabaseOf(target: ConnectorTarget): string {
  return target.options.database ?? 'postgres';
}

/** Closes the connection's socket at once (no Terminate). */
function destroySocket(c: Client): void {
  (c as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}

/**
 * A pooled admin connection: the statement/lock timeouts its session has now, and the view of it the work gets
 * ({@link watched}).
 */
type PooledClient = ScramOnlyClient & { timeouts: { statement: number; lock: number }; watched?: Client };

/**
 * Statements that leave state in the session which PostgreSQL does not report to the client (SET ROLE, settings,
 * temporary objects, advisory locks, LISTEN, prepared statements, cursors): at the start of a statement (or after a `;`),
 * or set_config / advisory lock functions anywhere. A false positive only costs a new connection.
 */
const SESSION_STATE = /(?:^|;)\s*(?:SET|RESET|DISCARD|LISTEN|PREPARE|DECLARE|CREATE\s+(?:(?:GLOBAL|LOCAL)\s+)?TEMP(?:ORARY)?)\b|\bset_config\s*\(|\bpg_(?:try_)?advisory_/i;

/**
 * The pooled connection as the work sees it: every statement it sends whose text may change the session
 * ({@link SESSION_STATE}) marks the connection `sessionChanged`, so it is closed after the work instead of being lent on
 * (the reuse check, after checkAfterMs idle, would see only SET ROLE and search_path). Made once per connection.
 */
function watched(c: PooledClient): Client {
  const view = Object.create(c) as Client;
  view.query = ((...args: unknown[]) => {
    const q = args[0];
    const text = typeof q === 'string' ? q : typeof (q as { text?: unknown })?.text === 'string' ? (q as { text: string }).text : '';
    if (SESSION_STATE.test(text)) c.sessionChanged = true;
    return (c.query as (...a: unknown[]) => unknown).apply(c, args);
  }) as Client['query'];
  return view;
}

/** The per-call server-side limits (ms; 0: none): the server gives up a little before the vault does. */
function callTimeouts(opts: CallOptions | undefined): { statement: number; lock: number } {
  return opts?.timeoutMs ? { statement: Math.max(1000, opts.timeoutMs - 2000), lock: Math.max(500, opts.timeoutMs - 3000) } : { statement: 0, lock: 0 };
}

/**
 * Statements that change catalog rows other sessions may change at the same moment — a database's ACL, which every
 * one-time account's `GRANT CONNECT` and every revocation's `DROP OWNED` rewrite — run as one transaction (batch.ts).
 * PostgreSQL refuses the second of two concurrent changes with XX000 "tuple concurrently updated" (not a lock wait):
 * concurrent claims and revocations on one database failed with it. The transaction then had no effect, so it is run
 * again, a few times, after a short jitter.
 */
async function catalogStatements(c: Client, sql: string[]): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await batch(c, sql.map((text) => ({ text })));
      return;
    } catch (e) {
      const concurrent = (e as { code?: unknown }).code === 'XX000' && String((e as { message?: unknown }).message).includes('tuple concurrently updated');
      if (!concurrent || attempt >= 6) throw e;
      await new Promise((r) => setTimeout(r, 5 + Math.random() * 20 * attempt));
    }
  }
}

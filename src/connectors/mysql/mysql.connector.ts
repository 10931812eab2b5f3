import { createHash } from 'node:crypto';
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { AdminPool, DEFAULT_POOL_SETTINGS, PooledConnector, PoolDriver, poolKeyOf, PoolSettings } from '../admin-pool';
import { ConnectorError } from '../connector.errors';
import {
  AccessInspection, CallOptions, Capability, Connector, ConnectorSupport, ConnectorTarget, DeleteUserRequest, EndSessionRequest, ListSessionsRequest, LoginRequest,
  NewUserRequest, NewUserResponse, SESSION_ID_PATTERNS, TargetSession, TerminateSessionsRequest, UpdatePasswordRequest, VerifyResult,
} from '../connector.interface';
import { catalogGrantRefusals, MysqlGrant, staticGrantRefusals } from './mysql-access';
import { identityRefusal, openVerifiedConnection, tlsConnectionOptions, tlsDescription } from './mysql-identity';

/** Refusals of a login: bad password, no such account, or no account for this client host. */
const AUTH_FAILED = new Set(['ER_ACCESS_DENIED_ERROR', 'ER_DBACCESS_DENIED_ERROR', 'ER_HOST_NOT_PRIVILEGED', 'ER_ACCESS_DENIED_NO_PASSWORD_ERROR']);

/** Status flags of an OK packet (MySQL protocol): a transaction is open, autocommit is on, the session's state changed. */
const SERVER_STATUS_IN_TRANS = 0x0001;
const SERVER_STATUS_AUTOCOMMIT = 0x0002;
const SERVER_SESSION_STATE_CHANGED = 0x4000;

/** Threads that are the server's own, never a client's session, whatever their USER column says. */
const SYSTEM_COMMANDS = ['Binlog Dump', 'Binlog Dump GTID', 'Daemon'];
const SYSTEM_USERS = ['system user', 'event_scheduler'];

/** The global privilege that lets the administrator KILL other accounts' connections (MariaDB 10.5+, MySQL 8, else SUPER). */
const KILL_PRIVILEGES = ['CONNECTION ADMIN', 'CONNECTION_ADMIN', 'SUPER'];

/**
 * MySQL / MariaDB through `mysql2`, only over TLS with a verified server certificate (mysql-identity.ts). Account
 * names and passwords are escaped by the driver as literals ('name'@'%'); grant targets pass the allow-list
 * (mysql-access.ts) and are identifier-quoted.
 */
export class MysqlConnector implements Connector, PooledConnector {
  readonly type = 'mysql' as const;
  readonly supports: ConnectorSupport = { accountExpiry: 'none', hostKey: false };
  /** Admin connections by target (admin-pool.ts); account logins are never pooled. */
  readonly pool: AdminPool<PooledConnection>;

  constructor(pool: PoolSettings = DEFAULT_POOL_SETTINGS) {
    this.pool = new AdminPool(pool);
  }

  /** Closes every pooled admin connection (ConnectorRegistry, at shutdown). */
  closeAll(): Promise<void> {
    return this.pool.closeAll();
  }

  async verify(target: ConnectorTarget, opts?: CallOptions): Promise<VerifyResult> {
    return this.asAdmin(target, opts, async (c) => {
      const [rows] = await c.query<RowDataPacket[]>('SELECT VERSION() AS v');
      return { ok: true, serverVersion: `MySQL ${rows[0].v}`, capabilities: await capabilities(c, target) };
    });
  }

  async inspectAccess(target: ConnectorTarget, access: AccessInspection, opts?: CallOptions): Promise<string[]> {
    const refusals: string[] = [];
    if (access.groups?.length || access.roles?.length || access.databases?.length) {
      refusals.push('MySQL one-time accounts take grants ({privileges, on}), not groups, roles or databases');
    }
    const grants = access.grants ?? [];
    refusals.push(...staticGrantRefusals(grants));
    if (refusals.length || grants.length === 0) return refusals;
    return this.asAdmin(target, opts, (c) => catalogGrantRefusals(c, grants));
  }

  async isAdmin(target: ConnectorTarget, username: string, opts?: CallOptions): Promise<boolean> {
    return this.asAdmin(target, opts, async (c) => (await currentUser(c)).user === username);
  }

  async updatePassword(target: ConnectorTarget, account: UpdatePasswordRequest, opts?: CallOptions): Promise<void> {
    await this.asAdmin(target, opts, async (c) => {
      await c.query('ALTER USER ?@? IDENTIFIED BY ?', [account.username, accountHost(target), account.password]);
    });
  }

  async login(target: ConnectorTarget, account: LoginRequest, opts?: CallOptions): Promise<void> {
    await this.connect(target, { user: account.username, password: account.password }, opts, async (c) => {
      await c.query('SELECT 1');
    });
  }

  /**
   * MySQL/MariaDB have no account expiry (`supports.accountExpiry: 'none'`): a request with `validUntil` is refused
   * (TARGET_UNSUPPORTED) before it gets here, and the vault's reaper is the only remover.
   */
  async newUser(target: ConnectorTarget, account: NewUserRequest, opts?: CallOptions): Promise<NewUserResponse> {
    // defence in depth: the allow-list again, before anything touches the target
    const grants: MysqlGrant[] = account.access.grants ?? [];
    const refused = staticGrantRefusals(grants);
    if (refused.length) throw new ConnectorError('TARGET_INVALID_NAME', `a grant is not allowed: ${refused.join('; ')}`);
    await this.asAdmin(target, opts, async (c) => {
      const missing = await catalogGrantRefusals(c, grants);
      if (missing.length) throw new ConnectorError('TARGET_INVALID_NAME', `a grant is not allowed: ${missing.join('; ')}`);
      await c.query('CREATE USER ?@? IDENTIFIED BY ?', [account.username, accountHost(target), account.password]);
      for (const g of grants) {
        const [db, table] = g.on.split('.');
        // in a database-level grant (db.*) MySQL reads _ and % in the name as wildcards: escape them
        const on = `${c.escapeId(table === '*' ? db.replace(/[_%]/g, '\\$&') : db)}.${table === '*' ? '*' : c.escapeId(table)}`;
        await c.query(`GRANT ${g.privileges.map((p) => p.toUpperCase()).join(', ')} ON ${on} TO ?@?`, [account.username, accountHost(target)]);
      }
    });
    return { expiresOnTarget: null };
  }

  /**
   * Locks the account, ends its sessions and drops it. What it created with its (allow-listed) privileges are plain
   * tables and indexes: MySQL objects without an owner, they stay as data; no view, routine, trigger or event (the
   * only objects that run with their definer's rights) can have been created, the allow-list never grants that.
   */
  async deleteUser(target: ConnectorTarget, { username }: DeleteUserRequest, opts?: CallOptions): Promise<void> {
    await this.asAdmin(target, opts, async (c) => {
      // locked first, so no new session can start between the KILLs and the DROP (which leaves open sessions running)
      await c.query('ALTER USER IF EXISTS ?@? ACCOUNT LOCK', [username, accountHost(target)]);
      await killSessions(c, username);
      await c.query('DROP USER IF EXISTS ?@?', [username, accountHost(target)]);
    });
  }

  async terminateSessions(target: ConnectorTarget, { username }: TerminateSessionsRequest, opts?: CallOptions): Promise<void> {
    await this.asAdmin(target, opts, (c) => killSessions(c, username));
  }

  /**
   * The account's client connections (information_schema.PROCESSLIST, PROCESS needed): never this connection, never the
   * server's own threads. MySQL/MariaDB do not tell when a connection started (`since` is null); INFO (the statement,
   * which may hold a password) is never read.
   */
  async listSessions(target: ConnectorTarget, { username }: ListSessionsRequest, opts?: CallOptions): Promise<TargetSession[]> {
    return this.asAdmin(target, opts, async (c) =>
      (await clientSessions(c, username)).map((r) => ({
        id: `my-${r.id}`,
        username,
        kind: 'mysql' as const,
        clientAddress: r.host,
        since: null,
        state: r.command,
        database: r.db,
      })),
    );
  }

  /** KILL CONNECTION of one connection, only while it is still one of `username` (read again first). */
  async endSession(target: ConnectorTarget, { username, sessionId }: EndSessionRequest, opts?: CallOptions): Promise<boolean> {
    const m = SESSION_ID_PATTERNS.mysql.exec(sessionId);
    if (!m || !Number.isSafeInteger(Number(m[1]))) return false;
    return this.asAdmin(target, opts, async (c) => {
      const rows = await clientSessions(c, username, Number(m[1]));
      if (rows.length !== 1) return false;
      return kill(c, username, rows[0].id);
    });
  }

  /**
   * Runs `work` as the admin on a pooled connection (admin-pool.ts), reused only for the same address, database, admin
   * credential and TLS settings (CA, pin). Closed, never reused, when the work threw or left session state behind: each
   * OK packet's status flags are read (the session tracks state changes, `session_track_state_change`, set when the
   * connection is opened), so an open transaction, autocommit off, a changed variable (user or system), a temporary
   * table or a prepared statement ends the connection's reuse. What a SELECT changes (its status is not exposed by
   * mysql2) is not seen; the work functions here run single autocommit statements and never SET anything.
   *
   * Before a connection idle for a while is reused, the server is asked whether the admin account is still the one the
   * vault knows: not locked, not dropped, no role set, and (mysql_native_password) the stored hash still that of the
   * vault's password — an account revoked on the server ends the vault's reuse as PostgreSQL's NOLOGIN does.
   */
  private async asAdmin<T>(target: ConnectorTarget, opts: CallOptions | undefined, work: (c: Connection) => Promise<T>): Promise<T> {
    const driver: PoolDriver<PooledConnection> = {
      open: async (signal) => {
        const opened = await this.open(target, { user: target.adminUsername, password: target.adminPassword }, opts, signal);
        try {
          await opened.conn.query('SET SESSION session_track_state_change = ON');
        } catch (e) {
          hardDestroy(opened.core);
          throw e;
        }
        return opened;
      },
      destroy: (c) => hardDestroy(c.core),
      check: (c) => adminStillValid(c.conn, target.adminPassword),
      watch: (c, lost) => {
        c.core.on('error', lost);
        c.core.once('end', lost);
      },
      reusable: (c) => !c.stateLeft,
    };
    try {
      return await this.pool.use(poolKeyOf(target, target.options.database), driver, opts, (c) => work(tracking(c)));
    } catch (e) {
      throw this.failure(e, target, target.adminUsername);
    }
  }

  /** A fresh connection (a login as an account: never pooled, it is the proof that the password works). */
  private async connect<T>(target: ConnectorTarget, auth: { user: string; password?: string }, opts: CallOptions | undefined, work: (c: Connection) => Promise<T>): Promise<T> {
    let opened: PooledConnection | undefined;
    const onAbort = () => opened && hardDestroy(opened.core);
    opts?.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      opened = await this.open(target, auth, opts, opts?.signal);
      return await work(opened.conn);
    } catch (e) {
      throw this.failure(e, target, auth.user);
    } finally {
      opts?.signal?.removeEventListener('abort', onAbort);
      if (opened) await opened.conn.end().catch(() => hardDestroy(opened!.core));
    }
  }

  /** Opens a connection whose server identity is verified before any credential is sent; the signal destroys it while opening. */
  private async open(target: ConnectorTarget, auth: { user: string; password?: string }, opts: CallOptions | undefined, signal: AbortSignal | undefined): Promise<PooledConnection> {
    const { core, ready } = openVerifiedConnection(
      {
        host: target.host,
        port: target.port,
        user: auth.user,
        password: auth.password ?? '',
        database: target.options.database,
        connectTimeout: opts?.timeoutMs,
        multipleStatements: false,
        ...tlsConnectionOptions(target),
      },
      { host: target.host, certSha256: target.options.tlsCertSha256 },
    );
    const onAbort = () => hardDestroy(core);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      if (signal?.aborted) throw new ConnectorError('TARGET_ERROR', 'the call was aborted');
      return { core, conn: await ready, stateLeft: false };
    } catch (e) {
      hardDestroy(core);
      throw e;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  private failure(e: unknown, target: ConnectorTarget, user: string): unknown {
    const refused = identityRefusal(e, target);
    if (refused) return refused;
    const { code, errno, message } = e as { code?: unknown; errno?: unknown; message?: unknown };
    // a locked account: MySQL 3118; MariaDB 4151, which mysql2 names after MySQL's (unrelated) 4151
    const locked = errno === 3118 || (errno === 4151 && /locked/i.test(String(message)));
    if ((typeof code === 'string' && AUTH_FAILED.has(code)) || locked) {
      return new ConnectorError('TARGET_AUTH_FAILED', `MySQL refused the login of ${user}`);
    }
    return e;
  }
}

/** A connection: mysql2's core connection (to destroy) and its promise wrapper (to query). */
interface PooledConnection {
  core: { destroy(): void; on(event: 'error', listener: (arg: unknown) => void): void; once(event: string, listener: (arg: unknown) => void): void };
  conn: Connection;
  /** A statement of a work left session state behind (see {@link tracking}): the connection is never reused. */
  stateLeft: boolean;
}

/**
 * Destroys the socket. mysql2's own destroy() only half-closes it (stream.end()) and marks the connection closing, so a
 * statement in flight, or a connection attempt to a server that stays silent, never settles: the pool slot (and the
 * socket) would be held until the server answers, which may be never.
 */
function hardDestroy(core: PooledConnection['core']): void {
  const stream = (core as unknown as { stream?: { destroy(): void } }).stream;
  if (stream) stream.destroy();
  else core.destroy();
}

/** The work's view of a pooled connection: the status flags of every OK packet it gets mark state left behind. */
function tracking(c: PooledConnection): Connection {
  const note = (result: unknown) => {
    const head = Array.isArray(result) ? (result[0] as { serverStatus?: unknown }) : undefined;
    const status = head && !Array.isArray(head) && typeof head.serverStatus === 'number' ? head.serverStatus : undefined;
    if (status !== undefined && (status & SERVER_STATUS_IN_TRANS || !(status & SERVER_STATUS_AUTOCOMMIT) || status & SERVER_SESSION_STATE_CHANGED)) c.stateLeft = true;
    return result;
  };
  return new Proxy(c.conn, {
    get(conn, prop) {
      const value = Reflect.get(conn, prop, conn) as unknown;
      if (typeof value !== 'function') return value;
      if (prop === 'query' || prop === 'execute') return (...args: unknown[]) => (value as (...a: unknown[]) => Promise<unknown>).apply(conn, args).then(note);
      return (value as (...a: unknown[]) => unknown).bind(conn);
    },
  });
}

/** mysql_native_password's stored form of a password: '*' and the upper-case hex of SHA1(SHA1(password)). */
function nativePasswordHash(password: string): string {
  const inner = createHash('sha1').update(password, 'utf8').digest();
  return `*${createHash('sha1').update(inner).digest('hex').toUpperCase()}`;
}

/**
 * The reuse check of a pooled admin connection (throws when it may not be reused): the account still exists (SHOW
 * CREATE USER of a dropped account fails), is not locked, has no role set, and where the server stores
 * mysql_native_password hashes, one of them is the vault's password's (it was not changed behind the vault's back).
 */
async function adminStillValid(c: Connection, password: string | undefined): Promise<void> {
  const [rows] = await c.query<RowDataPacket[]>('SHOW CREATE USER CURRENT_USER()');
  const statement = String(Object.values(rows[0] ?? {})[0] ?? '');
  if (/\bACCOUNT LOCK\b/i.test(statement)) throw new Error('the administrator account is locked');
  const stored = [...statement.matchAll(/(?:BY PASSWORD|VIA mysql_native_password USING) '(\*[0-9A-F]{40})'/gi)].map((m) => m[1].toUpperCase());
  if (stored.length && !stored.includes(nativePasswordHash(password ?? ''))) throw new Error('the administrator password was changed on the server');
  const [role] = await c.query<RowDataPacket[]>('SELECT CURRENT_ROLE() AS r');
  const r = role[0]?.r;
  if (r !== null && r !== 'NONE') throw new Error('the session has a role set');
}

/** The host part of MySQL account names the vault manages. */
function accountHost(target: ConnectorTarget): string {
  return target.options.accountHost ?? '%';
}

/** CURRENT_USER() as user and host (the host part never holds '@'). */
async function currentUser(c: Connection): Promise<{ user: string; host: string; quoted: string }> {
  const [rows] = await c.query<RowDataPacket[]>('SELECT CURRENT_USER() AS u');
  const full = String(rows[0].u);
  const at = full.lastIndexOf('@');
  const user = full.slice(0, at);
  const host = full.slice(at + 1);
  return { user, host, quoted: `'${user}'@'${host}'` };
}

/** The administrator's global privileges (information_schema.USER_PRIVILEGES, its own rows only). */
async function globalPrivileges(c: Connection): Promise<{ who: string; privileges: Set<string> }> {
  const me = await currentUser(c);
  // an administrator allowed to read mysql.* sees every account's rows here: keep its own
  const [rows] = await c.query<RowDataPacket[]>('SELECT PRIVILEGE_TYPE AS p FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = ?', [me.quoted]);
  return { who: me.quoted, privileges: new Set(rows.map((r) => String(r.p).toUpperCase())) };
}

/** Every capability the vault relies on, present or not, each with what to grant when it is missing. */
async function capabilities(c: Connection, target: ConnectorTarget): Promise<Capability[]> {
  const { who, privileges } = await globalPrivileges(c);
  const has = (...names: string[]) => names.some((n) => privileges.has(n));
  const tls = tlsDescription(c, target);
  const [grantable] = await c.query<RowDataPacket[]>(
    "SELECT DISTINCT TABLE_SCHEMA AS db FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ? AND IS_GRANTABLE = 'YES' ORDER BY TABLE_SCHEMA",
    [who],
  );
  const grantDbs = grantable.map((r) => String(r.db));
  return [
    {
      code: 'MYSQL_TLS',
      ok: tls !== undefined,
      message: tls ? `TLS: ${tls}` : 'the connection is not TLS with a verified server certificate',
    },
    {
      code: 'MYSQL_CREATE_USER',
      ok: has('CREATE USER'),
      message: has('CREATE USER')
        ? 'CREATE USER: can create, lock, re-password and drop accounts'
        : `missing CREATE USER (creating, locking, rotating and dropping accounts): GRANT CREATE USER ON *.* TO ${who}`,
    },
    {
      code: 'MYSQL_PROCESS',
      ok: has('PROCESS'),
      message: has('PROCESS')
        ? "PROCESS: can see other accounts' sessions"
        : `missing PROCESS (seeing other accounts' sessions, to end them at revocation and check-in): GRANT PROCESS ON *.* TO ${who}`,
    },
    {
      code: 'MYSQL_CONNECTION_ADMIN',
      ok: has(...KILL_PRIVILEGES),
      message: has(...KILL_PRIVILEGES)
        ? `${KILL_PRIVILEGES.find((p) => privileges.has(p))}: can end other accounts' sessions (KILL)`
        : `missing CONNECTION ADMIN (KILL of other accounts' sessions): GRANT CONNECTION ADMIN ON *.* TO ${who} (MariaDB 10.5+; MySQL 8: CONNECTION_ADMIN; older servers: SUPER)`,
    },
    {
      code: 'MYSQL_GRANT_OPTION',
      ok: grantDbs.length > 0,
      message: grantDbs.length
        ? `can hand out privileges on: ${grantDbs.join(', ')}`
        : `holds no privilege WITH GRANT OPTION on any database: one-time accounts can only be created without grants; GRANT SELECT, INSERT, UPDATE, DELETE ON <database>.* TO ${who} WITH GRANT OPTION (only what one-time accounts may get)`,
    },
  ];
}

/** mysql2 error number of "Unknown thread id" (the session ended by itself meanwhile). */
const ER_NO_SUCH_THREAD = 1094;

const text = (v: unknown) => (v === null || v === undefined ? null : Buffer.isBuffer(v) ? v.toString('utf8') : String(v));

/**
 * The client connections of `username` (one of them with `id`) — never the server's own threads (replication dumps,
 * daemons, the event scheduler), never this connection. Fails loudly when the administrator cannot see them (PROCESS)
 * instead of finding nothing silently.
 */
async function clientSessions(c: Connection, username: string, id?: number): Promise<Array<{ id: number; host: string | null; db: string | null; command: string | null }>> {
  const { who, privileges } = await globalPrivileges(c);
  if (!privileges.has('PROCESS')) {
    throw new ConnectorError('TARGET_ERROR', `the administrator cannot see the sessions of ${username}: GRANT PROCESS ON *.* TO ${who}`);
  }
  const [found] = await c.query<RowDataPacket[]>(
    `SELECT ID AS id, USER AS user, HOST AS host, DB AS db, COMMAND AS command FROM information_schema.PROCESSLIST
      WHERE USER = ? AND ID <> CONNECTION_ID() AND COMMAND NOT IN (?) AND USER NOT IN (?)${id === undefined ? '' : ' AND ID = ?'} ORDER BY ID`,
    [username, SYSTEM_COMMANDS, SYSTEM_USERS, ...(id === undefined ? [] : [id])],
  );
  // the server compares USER without regard to case: `app` must not reach the sessions of another account `APP`
  return found
    .filter((r) => text(r.user) === username)
    .map((r) => ({ id: Number(r.id), host: text(r.host), db: text(r.db), command: text(r.command) }));
}

/** KILL CONNECTION; false when it ended by itself meanwhile. */
async function kill(c: Connection, username: string, id: number): Promise<boolean> {
  try {
    await c.query('KILL CONNECTION ?', [id]);
    return true;
  } catch (e) {
    if ((e as { errno?: unknown }).errno === ER_NO_SUCH_THREAD) return false; // it ended by itself meanwhile
    const { who } = await globalPrivileges(c);
    throw new ConnectorError(
      'TARGET_ERROR',
      `the administrator may not end the sessions of ${username}: GRANT CONNECTION ADMIN ON *.* TO ${who} (MySQL 8: CONNECTION_ADMIN; older servers: SUPER) (${(e as Error).message})`,
    );
  }
}

/** Ends the client connections of `username` (see {@link clientSessions}); fails loudly when the administrator may not. */
async function killSessions(c: Connection, username: string): Promise<void> {
  for (const { id } of await clientSessions(c, username)) await kill(c, username, id);
}

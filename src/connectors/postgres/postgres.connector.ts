import { Client, ClientConfig } from 'pg';
import { ConnectorError } from '../connector.errors';
import { AccountCredential, CallOptions, Connector, ConnectorTarget, EphemeralAccess, VerifyResult } from '../connector.interface';
import { scramSha256Verifier } from './scram';

const AUTH_FAILED = new Set(['28P01', '28000']);

/**
 * PostgreSQL through `pg`. Passwords are set as SCRAM-SHA-256 verifiers computed here; identifiers go through
 * the driver's identifier quoting and values through parameters or literal quoting.
 */
export class PostgresConnector implements Connector {
  readonly type = 'postgres' as const;

  async verify(target: ConnectorTarget, opts?: CallOptions): Promise<VerifyResult> {
    return this.asAdmin(target, opts, async (c) => {
      const { rows } = await c.query<{ server_version: string }>('SHOW server_version');
      return { ok: true, serverVersion: `PostgreSQL ${rows[0].server_version}`, capabilities: [] };
    });
  }

  // TODO(issue 11): replaced by the real catalog check and identity check
  async inspectAccess(): Promise<string[]> {
    throw new ConnectorError('TARGET_ERROR', 'inspectAccess is not implemented yet');
  }

  async isAdmin(): Promise<boolean> {
    throw new ConnectorError('TARGET_ERROR', 'isAdmin is not implemented yet');
  }

  async rotate(target: ConnectorTarget, account: AccountCredential, opts?: CallOptions): Promise<void> {
    await this.asAdmin(target, opts, async (c) => {
      // a missing role makes ALTER ROLE fail on its own (42704): no extra round trip to check first
      await c.query(`ALTER ROLE ${c.escapeIdentifier(account.username)} WITH PASSWORD ${c.escapeLiteral(scramSha256Verifier(account.password))}`);
    });
  }

  async login(target: ConnectorTarget, account: AccountCredential, opts?: CallOptions): Promise<void> {
    await this.connect(target, { user: account.username, password: account.password }, opts, async (c) => {
      await c.query('SELECT 1');
    });
  }

  async createEphemeral(target: ConnectorTarget, account: AccountCredential, access: EphemeralAccess, opts?: CallOptions): Promise<void> {
    await this.asAdmin(target, opts, async (c) => {
      const role = c.escapeIdentifier(account.username);
      // the backstop: password logins stop at validUntil by themselves, should the vault be down at expiry
      const validUntil = access.validUntil ? ` VALID UNTIL ${c.escapeLiteral(access.validUntil.toISOString())}` : '';
      await c.query(`CREATE ROLE ${role} WITH LOGIN PASSWORD ${c.escapeLiteral(scramSha256Verifier(account.password))}${validUntil}`);
      if (access.database) await c.query(`GRANT CONNECT ON DATABASE ${c.escapeIdentifier(access.database)} TO ${role}`);
      for (const granted of access.grantRoles ?? []) await c.query(`GRANT ${c.escapeIdentifier(granted)} TO ${role}`);
    });
  }

  async revokeEphemeral(target: ConnectorTarget, username: string, opts?: CallOptions): Promise<void> {
    await this.asAdmin(target, opts, async (c) => {
      const exists = await c.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [username]);
      if (exists.rowCount === 0) return; // already gone
      const role = c.escapeIdentifier(username);
      try {
        await c.query(`ALTER ROLE ${role} NOLOGIN`);
        await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [username]);
        await this.awaitBackendsGone(c, username, opts);
        // What it owns is handed to the admin and its grants dropped in EVERY database it could have touched
        // (both only act on the database they run in, plus shared objects), so DROP ROLE cannot fail on them.
        const { rows } = await c.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname');
        const { rows: here } = await c.query<{ db: string }>('SELECT current_database() AS db');
        for (const { datname } of rows) {
          if (datname === here[0].db) await this.disown(c, role);
          else await this.inDatabase(target, datname, opts, (other) => this.disown(other, role));
        }
        await c.query(`DROP ROLE IF EXISTS ${role}`);
      } catch (e) {
        // dropped by someone else meanwhile (42704 undefined_object): it is gone, which is what revoking wants
        if ((e as { code?: unknown }).code === '42704' && !(await this.roleExists(c, username))) return;
        throw e;
      }
    });
  }

  async terminateSessions(target: ConnectorTarget, username: string, opts?: CallOptions): Promise<void> {
    await this.asAdmin(target, opts, async (c) => {
      await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()', [username]);
    });
  }

  /** REASSIGN OWNED / DROP OWNED in the database `c` is connected to: objects go to the admin, grants are dropped. */
  private async disown(c: Client, role: string): Promise<void> {
    await c.query(`REASSIGN OWNED BY ${role} TO CURRENT_USER`);
    await c.query(`DROP OWNED BY ${role}`);
  }

  /** Runs `work` as the admin connected to another database; a database dropped meanwhile (3D000) is skipped. */
  private async inDatabase(target: ConnectorTarget, database: string, opts: CallOptions | undefined, work: (c: Client) => Promise<void>): Promise<void> {
    try {
      await this.connect(target, { user: target.adminUsername, password: target.adminPassword }, opts, work, database);
    } catch (e) {
      if ((e as { code?: unknown }).code === '3D000') return;
      throw e;
    }
  }

  private async roleExists(c: Client, username: string): Promise<boolean> {
    const { rowCount } = await c.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [username]);
    return (rowCount ?? 0) > 0;
  }

  /**
   * pg_terminate_backend only signals: wait (briefly, bounded) until the role's backends have exited, so
   * REASSIGN/DROP OWNED do not queue behind locks a dying session still holds. Not fatal when they linger.
   */
  private async awaitBackendsGone(c: Client, username: string, opts: CallOptions | undefined): Promise<void> {
    const deadline = Date.now() + Math.min(2000, (opts?.timeoutMs ?? 15_000) / 4);
    while (Date.now() < deadline && !opts?.signal?.aborted) {
      const { rowCount } = await c.query('SELECT 1 FROM pg_stat_activity WHERE usename = $1', [username]);
      if (!rowCount) return;
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  private asAdmin<T>(target: ConnectorTarget, opts: CallOptions | undefined, work: (c: Client) => Promise<T>): Promise<T> {
    return this.connect(target, { user: target.adminUsername, password: target.adminPassword }, opts, work);
  }

  private async connect<T>(
    target: ConnectorTarget,
    auth: { user: string; password?: string },
    opts: CallOptions | undefined,
    work: (c: Client) => Promise<T>,
    database = target.options.database ?? 'postgres',
  ): Promise<T> {
    const config: ClientConfig = {
      host: target.host,
      port: target.port,
      database,
      user: auth.user,
      password: auth.password ?? '',
      connectionTimeoutMillis: opts?.timeoutMs,
      // the server gives up too (a statement blocked on a lock would otherwise finish after the vault gave up on it
      // and, say, create a role the vault believes was never made)
      ...(opts?.timeoutMs ? { statement_timeout: Math.max(1000, opts.timeoutMs - 2000), lock_timeout: Math.max(500, opts.timeoutMs - 3000) } : {}),
      application_name: 'pam-vault',
    };
    const client = new Client(config);
    const onAbort = () => void client.end().catch(() => undefined);
    opts?.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await client.connect();
      return await work(client);
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      if (typeof code === 'string' && AUTH_FAILED.has(code)) throw new ConnectorError('TARGET_AUTH_FAILED', `PostgreSQL refused the login of ${auth.user}`);
      throw e;
    } finally {
      opts?.signal?.removeEventListener('abort', onAbort);
      await client.end().catch(() => undefined);
    }
  }
}

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
      return { ok: true, serverVersion: `PostgreSQL ${rows[0].server_version}` };
    });
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
      await c.query(`CREATE ROLE ${role} WITH LOGIN PASSWORD ${c.escapeLiteral(scramSha256Verifier(account.password))}`);
      if (access.database) await c.query(`GRANT CONNECT ON DATABASE ${c.escapeIdentifier(access.database)} TO ${role}`);
      for (const granted of access.grantRoles ?? []) await c.query(`GRANT ${c.escapeIdentifier(granted)} TO ${role}`);
    });
  }

  async revokeEphemeral(target: ConnectorTarget, username: string, opts?: CallOptions): Promise<void> {
    await this.asAdmin(target, opts, async (c) => {
      const exists = await c.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [username]);
      if (exists.rowCount === 0) return; // already gone
      const role = c.escapeIdentifier(username);
      await c.query(`ALTER ROLE ${role} NOLOGIN`);
      await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [username]);
      // objects it created are handed to the admin, then its grants dropped, so DROP ROLE cannot fail on them
      await c.query(`REASSIGN OWNED BY ${role} TO ${c.escapeIdentifier(target.adminUsername)}`);
      await c.query(`DROP OWNED BY ${role}`);
      await c.query(`DROP ROLE IF EXISTS ${role}`);
    });
  }

  async terminateSessions(target: ConnectorTarget, username: string, opts?: CallOptions): Promise<void> {
    await this.asAdmin(target, opts, async (c) => {
      await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()', [username]);
    });
  }

  private asAdmin<T>(target: ConnectorTarget, opts: CallOptions | undefined, work: (c: Client) => Promise<T>): Promise<T> {
    return this.connect(target, { user: target.adminUsername, password: target.adminPassword }, opts, work);
  }

  private async connect<T>(target: ConnectorTarget, auth: { user: string; password?: string }, opts: CallOptions | undefined, work: (c: Client) => Promise<T>): Promise<T> {
    const config: ClientConfig = {
      host: target.host,
      port: target.port,
      database: target.options.database ?? 'postgres',
      user: auth.user,
      password: auth.password ?? '',
      connectionTimeoutMillis: opts?.timeoutMs,
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

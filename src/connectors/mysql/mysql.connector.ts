import { Connection, createConnection } from 'mysql2/promise';
import { ConnectorError } from '../connector.errors';
import { AccountCredential, CallOptions, Connector, ConnectorTarget, EphemeralAccess, VerifyResult } from '../connector.interface';
import { MYSQL_GRANT_TARGET_PATTERN, MYSQL_PRIVILEGE_PATTERN } from '../../targets/names';

/** Refusals of a login: bad password, no such account, or no account for this client host. */
const AUTH_FAILED = new Set(['ER_ACCESS_DENIED_ERROR', 'ER_DBACCESS_DENIED_ERROR', 'ER_HOST_NOT_PRIVILEGED', 'ER_ACCESS_DENIED_NO_PASSWORD_ERROR']);

/**
 * MySQL / MariaDB through `mysql2`. Account names and passwords are escaped by the driver as literals
 * ('name'@'%'); grant targets are checked against strict patterns and identifier-quoted.
 */
export class MysqlConnector implements Connector {
  readonly type = 'mysql' as const;

  async verify(target: ConnectorTarget, opts?: CallOptions): Promise<VerifyResult> {
    return this.asAdmin(target, opts, async (c) => {
      const [rows] = await c.query<Array<{ v: string } & import('mysql2').RowDataPacket>>('SELECT VERSION() AS v');
      return { ok: true, serverVersion: `MySQL ${rows[0].v}`, capabilities: [] };
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
      await c.query('ALTER USER ?@? IDENTIFIED BY ?', [account.username, accountHost(target), account.password]);
    });
  }

  async login(target: ConnectorTarget, account: AccountCredential, opts?: CallOptions): Promise<void> {
    await this.connect(target, { user: account.username, password: account.password }, opts, async (c) => {
      await c.query('SELECT 1');
    });
  }

  /** `access.validUntil` is ignored: MySQL/MariaDB have no account expiry, the vault's reaper is the only remover. */
  async createEphemeral(target: ConnectorTarget, account: AccountCredential, access: EphemeralAccess, opts?: CallOptions): Promise<void> {
    for (const g of access.grants ?? []) {
      if (!g.privileges.length || !g.privileges.every((p) => MYSQL_PRIVILEGE_PATTERN.test(p)) || !MYSQL_GRANT_TARGET_PATTERN.test(g.on)) {
        throw new ConnectorError('TARGET_INVALID_NAME', 'a grant has privileges or an object that are not allowed');
      }
    }
    await this.asAdmin(target, opts, async (c) => {
      await c.query('CREATE USER ?@? IDENTIFIED BY ?', [account.username, accountHost(target), account.password]);
      for (const g of access.grants ?? []) {
        const [db, table] = g.on.split('.');
        // in a database-level grant (db.*) MySQL reads _ and % in the name as wildcards: escape them
        const dbId = db === '*' ? '*' : c.escapeId(table === '*' ? db.replace(/[_%]/g, '\\$&') : db);
        const on = `${dbId}.${table === '*' ? '*' : c.escapeId(table)}`;
        await c.query(`GRANT ${g.privileges.map((p) => p.toUpperCase()).join(', ')} ON ${on} TO ?@?`, [account.username, accountHost(target)]);
      }
    });
  }

  async revokeEphemeral(target: ConnectorTarget, username: string, opts?: CallOptions): Promise<void> {
    await this.asAdmin(target, opts, async (c) => {
      // locked first, so no new session can start between the KILLs and the DROP (which leaves open sessions running)
      await c.query('ALTER USER IF EXISTS ?@? ACCOUNT LOCK', [username, accountHost(target)]);
      await this.killSessions(c, username);
      await c.query('DROP USER IF EXISTS ?@?', [username, accountHost(target)]);
    });
  }

  async terminateSessions(target: ConnectorTarget, username: string, opts?: CallOptions): Promise<void> {
    await this.asAdmin(target, opts, (c) => this.killSessions(c, username));
  }

  private async killSessions(c: Connection, username: string): Promise<void> {
    const [rows] = await c.query<Array<{ id: number } & import('mysql2').RowDataPacket>>(
      'SELECT ID AS id FROM information_schema.PROCESSLIST WHERE USER = ? AND ID <> CONNECTION_ID()',
      [username],
    );
    for (const { id } of rows) {
      await c.query('KILL ?', [Number(id)]).catch(() => undefined); // it may have ended by itself meanwhile
    }
  }

  private asAdmin<T>(target: ConnectorTarget, opts: CallOptions | undefined, work: (c: Connection) => Promise<T>): Promise<T> {
    return this.connect(target, { user: target.adminUsername, password: target.adminPassword }, opts, work);
  }

  private async connect<T>(target: ConnectorTarget, auth: { user: string; password?: string }, opts: CallOptions | undefined, work: (c: Connection) => Promise<T>): Promise<T> {
    let conn: Connection | undefined;
    const onAbort = () => conn?.destroy();
    opts?.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      conn = await createConnection({
        host: target.host,
        port: target.port,
        user: auth.user,
        password: auth.password ?? '',
        database: target.options.database,
        connectTimeout: opts?.timeoutMs,
        multipleStatements: false,
      });
      return await work(conn);
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      if (typeof code === 'string' && AUTH_FAILED.has(code)) throw new ConnectorError('TARGET_AUTH_FAILED', `MySQL refused the login of ${auth.user}`);
      throw e;
    } finally {
      opts?.signal?.removeEventListener('abort', onAbort);
      await conn?.end().catch(() => conn?.destroy());
    }
  }
}

/** The host part of MySQL account names the vault manages. */
function accountHost(target: ConnectorTarget): string {
  return target.options.accountHost ?? '%';
}

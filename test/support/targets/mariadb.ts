import { randomBytes } from 'node:crypto';
import type { Connection, ConnectionOptions } from 'mysql2/promise';
import { assertTestName } from './run';

/**
 * The machine's MariaDB (127.0.0.1:3306, root with an empty password over TCP) prepared for the MySQL
 * connector tests. Connectors are not tested as root: each run gets its own administrator,
 * `vault_admin_<random>`@'%' with a random password and `ALL PRIVILEGES ON *.* WITH GRANT OPTION`
 * (ALL includes CREATE USER and CONNECTION ADMIN, i.e. creating accounts and KILLing their sessions),
 * so every login the tests make is a real password check over TCP.
 *
 * Root is used only to create that administrator and, in stop(), to drop it and every account created
 * through the handle. Set TEST_MARIADB_ROOT_URL (mysql://user:password@host:port) to use another server.
 */

type Mysql2Promise = typeof import('mysql2/promise');

export interface MariaHandle {
  host: string;
  port: number;
  /** `vault_admin_<hex>`, defined for host '%'. */
  adminUsername: string;
  /** Its random password (hex). */
  adminPassword: string;
  /** `CREATE USER '<name>'@'%' IDENTIFIED BY '<password>'`, run as the admin; dropped again by stop(). */
  createUser(name: string, password: string): Promise<void>;
  /** Whether an account of that user name exists, for any host (mysql.user). */
  userExists(name: string): Promise<boolean>;
  /** Runs a statement as the admin (mysql2 `query`: `?` placeholders are escaped client-side). Resolves to [rows, fields]. */
  query(sql: string, params?: unknown[]): ReturnType<Connection['query']>;
  /** Drops every account created through the handle and the admin itself. Idempotent. */
  stop(): Promise<void>;
}

function rootOptions(): ConnectionOptions {
  const u = new URL(process.env.TEST_MARIADB_ROOT_URL ?? 'mysql://root@127.0.0.1:3306');
  return {
    host: u.hostname,
    port: Number(u.port || 3306),
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
    connectTimeout: 5000,
  };
}

/** Connects as root, creates this run's administrator and resolves to a handle logged in as it. Throws (never skips) when MariaDB is unreachable. */
export async function connectMariaDb(): Promise<MariaHandle> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mysql = require('mysql2/promise') as Mysql2Promise;
  const root = rootOptions();
  const where = `${root.host}:${root.port}`;
  const openRoot = async (): Promise<Connection> => {
    try {
      const c = await mysql.createConnection(root);
      c.on('error', () => undefined);
      return c;
    } catch (e) {
      throw new Error(
        `The MySQL connector tests need the machine's MariaDB at ${where} (user ${root.user}, over TCP; set TEST_MARIADB_ROOT_URL to use another); ` +
          `it is not reachable: ${(e as Error).message}`,
        { cause: e },
      );
    }
  };

  const adminUsername = `vault_admin_${randomBytes(5).toString('hex')}`;
  const adminPassword = randomBytes(18).toString('hex');
  const rootConn = await openRoot();
  try {
    await rootConn.query("CREATE USER ?@'%' IDENTIFIED BY ?", [adminUsername, adminPassword]);
    await rootConn.query("GRANT ALL PRIVILEGES ON *.* TO ?@'%' WITH GRANT OPTION", [adminUsername]);
  } finally {
    await rootConn.end().catch(() => undefined);
  }

  const created = new Set<string>();
  let admin: Connection;
  try {
    admin = await mysql.createConnection({ host: root.host, port: root.port, user: adminUsername, password: adminPassword, connectTimeout: 5000 });
    admin.on('error', () => undefined);
  } catch (e) {
    await dropUsers(await openRoot(), [adminUsername]);
    throw new Error(`the test administrator ${adminUsername} cannot log in to MariaDB at ${where}: ${(e as Error).message}`, { cause: e });
  }

  let stopped = false;
  return {
    host: root.host!,
    port: root.port!,
    adminUsername,
    adminPassword,
    async createUser(name, password) {
      assertTestName(name);
      await admin.query("CREATE USER ?@'%' IDENTIFIED BY ?", [name, password]);
      created.add(name);
    },
    async userExists(name) {
      const [rows] = await admin.query('SELECT 1 FROM mysql.user WHERE User = ?', [name]);
      return (rows as unknown[]).length > 0;
    },
    query: (sql, params) => admin.query(sql, params),
    async stop() {
      if (stopped) return;
      stopped = true;
      await admin.end().catch(() => undefined);
      await dropUsers(await openRoot(), [...created, adminUsername]);
      created.clear();
    },
  };
}

/** Ends the accounts' sessions and drops them ('%' host), then closes `conn`. */
async function dropUsers(conn: Connection, names: string[]): Promise<void> {
  try {
    for (const name of names) {
      // DROP USER leaves open sessions running: end them so nothing of the run survives.
      const [rows] = await conn.query('SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ? AND ID <> CONNECTION_ID()', [name]);
      for (const { ID } of rows as Array<{ ID: number }>) await conn.query('KILL ?', [ID]).catch(() => undefined);
      await conn.query("DROP USER IF EXISTS ?@'%'", [name]);
    }
  } finally {
    await conn.end().catch(() => undefined);
  }
}

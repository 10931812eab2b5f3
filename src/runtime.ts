import pino from 'pino';
import { AppConfig, ConfigError, loadConfig } from './config/config';
import { MasterKeyError, MasterKeySource, resolveMasterKey } from './crypto/master-key';
import { startEmbeddedPostgres } from './database/embedded';

/** Prints one line and exits non-zero; used for every start-up failure the operator can fix. */
export function fatal(message: string, code = 1): never {
  process.stderr.write(`pam-vault: ${message}\n`);
  process.exit(code);
}

/** Driver messages can quote connection strings: strip anything that looks like a URL. */
export function safeMessage(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  return text.replace(/\b\w+:\/\/[^\s]+/g, '[url]').slice(0, 300);
}

/** Read once at boot, then removed from the process environment. */
export const SENSITIVE_ENV = ['VAULT_MASTER_KEY', 'VAULT_NEW_MASTER_KEY', 'VAULT_BOOTSTRAP_ADMIN_PASSWORD', 'DATABASE_URL'];

export interface Runtime {
  config: AppConfig;
  master: MasterKeySource;
  databaseUrl: string;
  /** Stops the embedded database if this process started one; safe to call twice. */
  stopDatabase(): Promise<void>;
}

/**
 * What the server and the admin commands share: validated configuration, the master key (with the loud
 * development-key warning), and a database URL, starting the embedded PostgreSQL when none is configured.
 */
export async function prepareRuntime(env: NodeJS.ProcessEnv, opts: { longRunning?: boolean } = {}): Promise<Runtime> {
  let config: AppConfig;
  let master: MasterKeySource;
  try {
    config = loadConfig(env);
    master = resolveMasterKey(config);
  } catch (e) {
    if (e instanceof ConfigError) fatal(e.message, 78);
    if (e instanceof MasterKeyError) fatal(e.message);
    throw e;
  }
  // Linux keeps a process's initial environment readable in /proc/<pid>/environ (to its user and root) for its whole
  // life: deleting a variable hides it from child processes (the embedded PostgreSQL) only. The server says so, once
  // (the admin commands end at once).
  const inEnvironment = SENSITIVE_ENV.filter((name) => env[name]);
  if (opts.longRunning && inEnvironment.length) {
    process.stderr.write(
      `pam-vault: WARNING: ${inEnvironment.join(', ')} given in the environment stay readable in /proc/${process.pid}/environ ` +
        `to this user and root while the vault runs; prefer ${inEnvironment.map((n) => (n === 'VAULT_NEW_MASTER_KEY' ? n : `${n}_FILE`)).join(', ')}\n`,
    );
  }
  for (const name of SENSITIVE_ENV) delete env[name];
  if (master.looseFilePermissions) {
    process.stderr.write(`pam-vault: WARNING: ${config.masterKeyFile} is readable by group or others; chmod 600 it\n`);
  }
  if (master.origin === 'dev') {
    process.stderr.write(
      '\n  WARNING: no VAULT_MASTER_KEY or VAULT_MASTER_KEY_FILE given.\n' +
        `  Using a DEVELOPMENT master key generated at ${master.devKeyPath}.\n` +
        '  It sits next to the data it protects: never use this mode in production.\n\n',
    );
  }
  if (config.databaseUrl) return { config, master, databaseUrl: config.databaseUrl, stopDatabase: async () => undefined };
  let embedded: Awaited<ReturnType<typeof startEmbeddedPostgres>> | undefined;
  try {
    embedded = await startEmbeddedPostgres(config.dataDir, config.embeddedPgPort, pino({ level: config.logLevel }));
  } catch (e) {
    fatal(`embedded PostgreSQL failed to start: ${safeMessage(e)}`);
  }
  return {
    config,
    master,
    databaseUrl: embedded.url,
    stopDatabase: async () => {
      const e = embedded;
      embedded = undefined;
      await e?.stop().catch(() => undefined);
    },
  };
}

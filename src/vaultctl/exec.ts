import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { EXIT } from './errors';
import { note } from './output';

export type TargetType = 'postgres' | 'mysql' | 'ssh';
export const TARGET_TYPES: TargetType[] = ['postgres', 'mysql', 'ssh'];

export interface Credential {
  username: string;
  password: string;
  host: string;
  port: number;
}

/** When the vault does not say (a vendor may not read targets): from the client's name. */
export function guessType(command: string): TargetType | undefined {
  const name = basename(command);
  if (/^(psql|pg_[a-z_]+|pgcli|createdb|dropdb|createuser|dropuser|vacuumdb|reindexdb|clusterdb)$/.test(name)) return 'postgres';
  if (/^(mysql[a-z_-]*|mariadb[a-z_-]*|mycli)$/.test(name)) return 'mysql';
  if (/^(ssh|scp|sftp|rsync|autossh)$/.test(name)) return 'ssh';
  return undefined;
}

/**
 * An askpass program for ssh: prints the password from the environment ssh passes on, and answers only a
 * password prompt (never a host-key question). The password itself is not in the file nor on any command line.
 */
const ASKPASS = `#!/bin/sh
# vaultctl askpass: answers ssh's password prompt from $VAULT_PASSWORD, nothing else
case "$1" in
  *assword*|*ASSWORD*) printf '%s\\n' "$VAULT_PASSWORD" ;;
  *) exit 1 ;;
esac
`;

/**
 * The child's environment: always VAULT_USERNAME, VAULT_PASSWORD, VAULT_HOST, VAULT_PORT (plus `extra`);
 * postgres: PGHOST, PGPORT, PGUSER, PGPASSWORD (and PGDATABASE when the target names one and it is not set);
 * mysql: MYSQL_PWD (host, port and user flags are the caller's: `mysql -h "$VAULT_HOST" ...`);
 * ssh: SSH_ASKPASS (see {@link ASKPASS}), SSH_ASKPASS_REQUIRE=force and DISPLAY.
 */
export function credentialEnv(
  cred: Credential,
  type: TargetType | undefined,
  base: NodeJS.ProcessEnv,
  opts: { database?: string; askpass?: string; extra?: Record<string, string> } = {},
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...base,
    ...opts.extra,
    VAULT_USERNAME: cred.username,
    VAULT_PASSWORD: cred.password,
    VAULT_HOST: cred.host,
    VAULT_PORT: String(cred.port),
  };
  delete env.VAULT_TOKEN; // the child gets the account's credential, not the caller's vault token
  delete env.VAULT_MFA_CODE;
  if (type === 'postgres') {
    Object.assign(env, { PGHOST: cred.host, PGPORT: String(cred.port), PGUSER: cred.username, PGPASSWORD: cred.password });
    if (opts.database && !base.PGDATABASE) env.PGDATABASE = opts.database;
  } else if (type === 'mysql') {
    env.MYSQL_PWD = cred.password;
  } else if (type === 'ssh' && opts.askpass) {
    Object.assign(env, { SSH_ASKPASS: opts.askpass, SSH_ASKPASS_REQUIRE: 'force', DISPLAY: base.DISPLAY || ':0' });
  }
  return env;
}

/**
 * Runs the client with the credential in its environment (never on its command line, never printed), the
 * terminal handed over (`stdio: inherit`). Resolves to the exit status to end with: the child's, 128+signal
 * when it was killed, 127 when it could not be started.
 */
export async function runWithCredential(
  command: string[],
  cred: Credential,
  type: TargetType | undefined,
  opts: { database?: string; extra?: Record<string, string> } = {},
): Promise<number> {
  let dir: string | undefined;
  let askpass: string | undefined;
  if (type === 'ssh') {
    dir = mkdtempSync(join(tmpdir(), 'vaultctl-')); // 0700
    askpass = join(dir, 'askpass');
    writeFileSync(askpass, ASKPASS, { mode: 0o700 });
    chmodSync(askpass, 0o700);
  }
  const env = credentialEnv(cred, type, process.env, { ...opts, askpass });
  try {
    return await runChild(command, env);
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Runs `command` with this environment and the terminal handed over (`stdio: inherit`); resolves to the exit status to
 * end with: the child's, 128+signal when it was killed, 127 when it could not be started (126: not executable).
 */
export function runChild(command: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise<number>((resolve) => {
    const child = spawn(command[0], command.slice(1), { stdio: 'inherit', env });
    // Ctrl-C on a terminal reaches the child by itself (same process group): vaultctl stays to clean up afterwards
    const onInt = () => (process.stdin.isTTY ? undefined : child.kill('SIGINT'));
    const forward = (sig: NodeJS.Signals) => child.kill(sig);
    process.on('SIGINT', onInt);
    process.on('SIGTERM', forward);
    process.on('SIGHUP', forward);
    const done = (status: number) => {
      process.removeListener('SIGINT', onInt);
      process.removeListener('SIGTERM', forward);
      process.removeListener('SIGHUP', forward);
      resolve(status);
    };
    child.once('error', (e: NodeJS.ErrnoException) => {
      note(`vaultctl: cannot run ${command[0]}: ${e.code ?? e.message}`);
      done(e.code === 'EACCES' ? 126 : EXIT.COMMAND_NOT_FOUND);
    });
    child.once('exit', (code, signal) => done(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0)));
  });
}

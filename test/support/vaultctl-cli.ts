import { spawn } from 'node:child_process';
import { join } from 'node:path';

/** The built CLI, exactly what the `vaultctl` bin entry runs (TEST_VAULTCTL_MAIN: another build of it). */
export const CLI = process.env.TEST_VAULTCTL_MAIN ?? join(__dirname, '../../dist/src/vaultctl/main.js');
export const ROOT = join(__dirname, '../..');

/** What one run of the CLI did. */
export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the CLI (`main`, a copy of the built file) as a child process, asynchronously (the vault answers from this very
 * process, so never spawnSync), with only the environment given: `VAULT_ADDR`, a config folder, a token.
 */
export function runCli(main: string, args: string[], o: { url: string; configDir: string; token?: string; env?: Record<string, string>; input?: string }): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? '/root',
      NODE_PATH: join(ROOT, 'node_modules'), // the copy resolves commander (and the test clients pg) from the repo
      VAULT_ADDR: o.url,
      VAULT_CONFIG_DIR: o.configDir,
      ...(o.token ? { VAULT_TOKEN: o.token } : {}),
      ...o.env,
    };
    const child = spawn(process.execPath, [main, ...args], { env, cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(o.input ?? '');
  });
}

/** Fails with the CLI's output in the message, not just the exit code. */
export function expectExit(r: CliRun, code: number): CliRun {
  expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toMatchObject({ code });
  return r;
}

export const cliJson = <T = Record<string, unknown>>(r: CliRun): T => JSON.parse(r.stdout) as T;

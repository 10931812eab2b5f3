import { spawn } from 'node:child_process';

/**
 * Small process helpers shared by the target servers the connector tests start (sshd, PostgreSQL).
 * Everything runs without a shell: arguments are passed as an argv array and secrets only ever travel on
 * stdin, never on a command line (where `ps` would show them).
 */

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Written to the child's stdin, which is then closed. */
  input?: string;
  /** Kill the child (SIGKILL) after this many milliseconds. Default 30 s. */
  timeoutMs?: number;
  /** Exit codes that count as success. Default [0]. */
  okCodes?: number[];
}

/** Runs `file args…` and resolves with its output whatever its exit code. Never rejects on a non-zero exit. */
export function runRaw(file: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C', LC_ALL: 'C' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${file}: ${e.message}`, { cause: e }));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.on('error', () => undefined); // the child may exit before reading its input
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs `file args…` and rejects with its stderr unless it exits with one of `okCodes` (default 0). */
export async function run(file: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const res = await runRaw(file, args, opts);
  const ok = opts.okCodes ?? [0];
  if (res.code === null || !ok.includes(res.code)) {
    const how = res.code === null ? `signal ${res.signal}` : `exit code ${res.code}`;
    throw new Error(`${file} ${args.join(' ')} failed (${how}): ${(res.stderr || res.stdout).trim().slice(-2000)}`);
  }
  return res;
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The test-generated account names every helper accepts (a strict subset of what useradd/PostgreSQL/MariaDB allow). */
export const TEST_NAME = /^[a-z_][a-z0-9_-]{0,31}$/;

/** Throws unless `name` matches {@link TEST_NAME}: the helpers build SQL and argv from it. */
export function assertTestName(name: string): void {
  if (!TEST_NAME.test(name)) throw new Error(`invalid test account name ${JSON.stringify(name)}: must match ${TEST_NAME}`);
}

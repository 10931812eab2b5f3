import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { secretSentinel } from './secret-sentinel';

export const DIST_MAIN = join(__dirname, '../../dist/src/main.js');
export const DIST_CLI = join(__dirname, '../../dist/src/cli.js');

/** Process tests run the built vault, exactly as the README's start command does. */
export function requireBuild(): void {
  if (!existsSync(DIST_MAIN) || !existsSync(DIST_CLI)) {
    throw new Error('dist/ is missing: process-level tests run the built vault; run `npm run build` first (npm test does)');
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export interface VaultProcess {
  child: ChildProcess;
  output: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

export function spawnVault(env: Record<string, string>): VaultProcess {
  // under the secret scan, a vault process logs at debug (unless the test chose a level) and everything it prints
  // is scanned with the rest; the secrets it was given are recorded too
  const sentinel = secretSentinel();
  const scanned = sentinel ? { LOG_LEVEL: 'debug', ...env } : env;
  if (sentinel) {
    sentinel.secret(env.VAULT_MASTER_KEY, 'vault process VAULT_MASTER_KEY');
    sentinel.secret(env.VAULT_BOOTSTRAP_ADMIN_PASSWORD, 'vault process VAULT_BOOTSTRAP_ADMIN_PASSWORD');
    sentinel.persist();
  }
  const child = spawn(process.execPath, [DIST_MAIN], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', ...scanned },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      sentinel?.processOutput(out + err);
      resolve(code);
    }),
  );
  return { child, output: () => out + err, stderr: () => err, exited };
}

/** Polls /health/ready; returns the milliseconds it took. */
export async function waitReady(port: number, proc: VaultProcess, timeoutMs: number): Promise<number> {
  const start = Date.now();
  let exitCode: number | null | undefined;
  void proc.exited.then((c) => (exitCode = c));
  while (Date.now() - start < timeoutMs) {
    if (exitCode !== undefined) throw new Error(`vault exited with ${exitCode} before it was ready:\n${proc.output().slice(-3000)}`);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/health/ready`);
      if (res.status === 200) return Date.now() - start;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`vault not ready within ${timeoutMs} ms:\n${proc.output().slice(-3000)}`);
}

export function runCli(args: string[], env: Record<string, string>): { status: number | null; stdout: string; stderr: string } {
  const res = spawnSync(process.execPath, [DIST_CLI, ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', LOG_LEVEL: 'warn', ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: res.status, stdout: res.stdout, stderr: res.stderr };
}

/**
 * The environment a built vault process needs on a test database (the crash tests add what they exercise): its
 * database, master key, bootstrap admin, port, cheap argon2, and warnings only in its log.
 */
export function builtVaultEnv(o: { databaseUrl: string; masterKey: Buffer; port: number; adminPassword: string; argon2: { memoryKib: string; timeCost: string } }): Record<string, string> {
  return {
    DATABASE_URL: o.databaseUrl,
    VAULT_MASTER_KEY: o.masterKey.toString('base64'),
    VAULT_BOOTSTRAP_ADMIN_PASSWORD: o.adminPassword,
    PORT: String(o.port),
    VAULT_ARGON2_MEMORY_KIB: o.argon2.memoryKib,
    VAULT_ARGON2_TIME_COST: o.argon2.timeCost,
    LOG_LEVEL: 'warn',
  };
}

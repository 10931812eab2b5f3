import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { launchChromium, newPerson } from '../support/browser';
import { freePort } from '../support/process';
import { canLoginPg } from '../support/targets/sessions';
import { totpAt } from '../support/totp';
import { confirmEnrolment, go, readEnrolment, signIn } from './portal-ui';

/**
 * `npm run demo` as a newcomer runs it: from a clean `git clone` of this repository (its committed state; the
 * dependencies hard-linked from this checkout instead of a network install), it builds, starts the vault with its embedded
 * database and the demo targets, and prints the portal's address and sign-ins. The portal answers; the operator signs
 * in for the first time (enrolling TOTP from the QR code), checks out an account through the portal and the password
 * logs in to the demo's PostgreSQL; then Ctrl-C (SIGINT to the whole process group, as a terminal sends it) stops
 * everything: no process the demo started is left, its data dir and its local users are gone.
 *
 * The demo vault runs on the real clock, so codes come from real time: each 30 s step is accepted once per user, and
 * the vault accepts one step of drift, so two codes are at hand at once (this step and the next).
 */

const REPO = join(__dirname, '../..');
const STARTUP_MS = 240_000; // a clean clone builds the server (tsc) and the portal (vite) first

interface Demo {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function startDemo(cloneDir: string, port: number): Demo {
  // detached: its own process group, which is what a terminal's Ctrl-C signals
  const child = spawn('npm', ['run', 'demo'], { cwd: cloneDir, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DEMO_PORT: String(port) } });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  return { child, output: () => out, exited: new Promise((resolve) => child.on('exit', (code) => resolve(code))) };
}

async function waitFor(what: string, demo: Demo, test: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void demo.exited.then(() => (exited = true));
  while (!test()) {
    if (exited) throw new Error(`the demo exited before ${what}:\n${demo.output().slice(-4000)}`);
    if (Date.now() > deadline) throw new Error(`no ${what} within ${timeoutMs} ms:\n${demo.output().slice(-4000)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Every process below `root` (by parent pid, read from /proc), with its command line. */
function processTree(root: number): Map<number, string> {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // the command name may hold spaces and parentheses: the fields after the last ')' are fixed
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      /* exited meanwhile */
    }
  }
  const tree = new Map<number, string>();
  const visit = (pid: number) => {
    for (const [child, parent] of parents) {
      if (parent !== pid || tree.has(child)) continue;
      tree.set(child, commandLine(child));
      visit(child);
    }
  };
  visit(root);
  return tree;
}

function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
  } catch {
    return '';
  }
}

/** Running (a zombie waiting for its parent counts as gone). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Ctrl-C: SIGINT to the demo's process group, as a terminal sends it to the foreground job; resolves to what is still running after `timeoutMs`. */
async function interrupt(demo: Demo, timeoutMs: number): Promise<string[]> {
  const tree = processTree(demo.child.pid!);
  process.kill(-demo.child.pid!, 'SIGINT');
  const deadline = Date.now() + timeoutMs;
  while ([...tree.keys()].some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
  return [...tree].filter(([pid]) => alive(pid)).map(([pid, cmd]) => `${pid} ${cmd}`);
}

/** The code of the first step after `lastStep` that the vault accepts now (this step or the next), waiting when both are used. */
async function realTimeCode(secret: string, lastStep: number): Promise<{ code: string; step: number }> {
  const step = Math.max(lastStep + 1, Math.floor(Date.now() / 30_000));
  while (Math.floor(Date.now() / 30_000) < step - 1) await new Promise((r) => setTimeout(r, 500));
  return { code: totpAt(secret, step * 30_000), step };
}

describe('npm run demo from a clean clone (browser e2e)', () => {
  let clone: string;
  let demo: Demo | undefined;
  let browser: Browser | undefined;

  beforeAll(() => {
    clone = mkdtempSync(join(tmpdir(), 'pam-vault-demo-clone-'));
    // as root the demo's databases run as their own system users, which must reach the binaries in the clone
    chmodSync(clone, 0o755);
    execFileSync('git', ['clone', '--quiet', REPO, clone]);
    // this checkout's dependencies, hard-linked (seconds, no network): whatever the clone's npm does to its
    // node_modules (npm ci deletes it first) never reaches this checkout's files
    // node_modules itself, never a symbolic link to it (a worktree's): the clone's npm ci would empty the target
    execFileSync('cp', ['-al', realpathSync(join(REPO, 'node_modules')), join(clone, 'node_modules')]);
    // installed after the clone's lock file, as after `npm ci`: the demo's ensure-deps step leaves them alone
    // (a second older: the file system keeps nanoseconds, utimes takes milliseconds)
    const installed = new Date(statSync(join(REPO, 'node_modules/.package-lock.json')).mtimeMs - 1000);
    utimesSync(join(clone, 'package-lock.json'), installed, installed);
  });

  afterAll(async () => {
    await browser?.close();
    // a failed test still stops the demo the way a person would, so that it removes what it made
    if (demo && alive(demo.child.pid!)) await interrupt(demo, 60_000);
    rmSync(clone, { recursive: true, force: true });
  });

  it('starts, answers, a checkout through the portal works, and Ctrl-C leaves nothing behind', async () => {
    const port = await freePort();
    const started = Date.now();
    demo = startDemo(clone, port);
    await waitFor('welcome text', demo, () => /Ctrl-C stops everything/.test(demo!.output()), STARTUP_MS);
    const startupMs = Date.now() - started;
    const out = demo.output();
    const portal = /Portal:\s+(\S+)/.exec(out)?.[1];
    expect(portal).toBe(`http://127.0.0.1:${port}/portal/`);
    const signIns = Object.fromEntries([...out.matchAll(/^ {4}(admin|operator|approver|vendor|auditor)\s+(\S+)/gm)].map((m) => [m[1], m[2]]));
    expect(Object.keys(signIns).sort()).toEqual(['admin', 'approver', 'auditor', 'operator', 'vendor']);
    // every target started, registered and verified
    expect(out).not.toContain('NOT STARTED');
    for (const name of ['demo-postgres', 'demo-ssh', 'demo-mariadb']) expect(out).toMatch(new RegExp(`${name}: .* — verified: `));
    const dataDir = /Starting the demo in (\S+)/.exec(out)?.[1] ?? '';
    expect(dataDir).toContain('pam-vault-demo-');

    // it answers: the portal page and the API
    const page0 = await fetch(portal!);
    expect(page0.status).toBe(200);
    expect(await page0.text()).toContain('<div id="root">');
    expect((await fetch(`http://127.0.0.1:${port}/health/ready`)).status).toBe(200);

    // the operator's first sign-in: enrol from the QR code, then check out report_reader (no approval) in the portal
    browser = await launchChromium();
    const context = await newPerson(browser, `http://127.0.0.1:${port}`);
    const page = await context.newPage();
    await signIn(page, 'operator', signIns.operator);
    const enrolment = await readEnrolment(page);
    const enrolCode = await realTimeCode(enrolment.secret, 0);
    await confirmEnrolment(page, enrolCode.code);

    await go(page, 'Accounts');
    await page.getByRole('searchbox', { name: 'Search target or username' }).fill('report_reader');
    await page.getByRole('link', { name: 'Request checkout of report_reader' }).click();
    const request = page.getByRole('form', { name: 'Request a checkout' });
    await request.getByLabel('Why do you need it?').fill('demo test: monthly report');
    await request.getByLabel('Authenticator code').fill((await realTimeCode(enrolment.secret, enrolCode.step)).code);
    await request.getByRole('button', { name: 'Request checkout' }).click();
    await page.waitForURL(/\/portal\/checkouts\/[0-9a-f-]{36}$/);
    const password = (await page.getByTestId('credential-password').textContent())?.trim() ?? '';
    const pgPort = Number(/demo-postgres: .* on 127\.0\.0\.1:(\d+)/.exec(out)?.[1]);
    await page.getByRole('region', { name: 'Credential' }).getByText(`127.0.0.1:${pgPort}`).waitFor();
    expect(password.length).toBeGreaterThanOrEqual(16);
    expect(await canLoginPg('127.0.0.1', pgPort, 'report_reader', password)).toBe(true);
    await page.getByRole('button', { name: 'Check in' }).click();
    await page.getByRole('status').getByText(/^Checked in/).waitFor();
    await context.close();

    const tree = [...processTree(demo.child.pid!).values()];
    expect(tree.some((cmd) => cmd.includes('scripts/demo.ts'))).toBe(true);
    expect(tree.some((cmd) => cmd.includes('/usr/sbin/sshd'))).toBe(true);
    expect(tree.some((cmd) => cmd.includes('mariadbd'))).toBe(true);
    // the vault's and the target's (by data dir: a backend just forked still shows its postmaster's command line)
    const clusters = new Set(tree.map((cmd) => /postgres -D (\S+)/.exec(cmd)?.[1]).filter((dir) => dir !== undefined));
    expect(clusters.size).toBe(2);
    const stopped = Date.now();
    const left = await interrupt(demo, 60_000);
    // what the demo printed tells why it did not stop
    expect({ left, output: left.length > 0 ? demo.output().slice(-3000) : '' }).toEqual({ left: [], output: '' });
    const stopMs = Date.now() - stopped;
    expect(demo.output()).toContain(`stopped; ${dataDir} deleted.`);
    expect(existsSync(dataDir)).toBe(false);
    // nothing else mentions it either (a process started outside the tree)
    const strays = readdirSync('/proc').filter((p) => /^\d+$/.test(p) && commandLine(Number(p)).includes(dataDir));
    expect(strays).toEqual([]);
    // the demo's local user is gone
    const sshAccount = /^ {6}account (deploy_[0-9a-f]+) /m.exec(out)?.[1];
    expect(sshAccount).toBeDefined();
    expect(execFileSync('getent', ['passwd'], { encoding: 'utf8' })).not.toMatch(new RegExp(`^${sshAccount}:`, 'm'));
    process.stdout.write(`demo: welcome after ${startupMs} ms (build included), stopped in ${stopMs} ms\n`);
  }, STARTUP_MS + 180_000);
});

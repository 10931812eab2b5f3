/**
 * bench/checkout: checkout + check-in cycles through the vault's HTTP API, beside pgbench running the minimal
 * SQL a cycle cannot avoid, at the same concurrencies, in one run.
 *
 *   npx ts-node --transpile-only bench/checkout/run.ts [--n 400] [--c 1,4,16,64] [--T 10] [--users 0] [--warmup 50] [--pgbench-mode extended]
 *
 * Vault: the real application (startTestVault: a fresh database on the machine's PostgreSQL, 127.0.0.1:5432)
 * listening on a real HTTP port, driven over keep-alive HTTP from this process. One cycle =
 *   POST /v1/checkouts {accountId, justification}  with X-MFA-Code: a real TOTP code (201, with the credential)
 *   POST /v1/checkouts/:id/checkin                                                    (200)
 * Each worker has its own account (all on one verified PostgreSQL target from startScramPostgres), so cycles never
 * wait on each other's account. The accounts have `rotateAfterCheckin: false`: the rotation after check-in is
 * measured by bench/rotation, not here (the check-in still ends the account's sessions on the target, as it must).
 * A TOTP step is accepted once per user, so many operators are seeded up front and each checkout takes one that
 * has not used the current step; when none is left, the vault's test clock is moved to the next step.
 * `--n` cycles per concurrency (after `--warmup` unmeasured ones). Peak RSS is this whole process (vault + client),
 * sampled every 50 ms while the vault runs.
 *
 * pgbench: a scratch database (bench_checkout_<hex>) on the same server (so the same fsync/synchronous_commit),
 * `users(mfa_last_step)`, `accounts(status)`, `leases`, `audit`; ONE pgbench script run = ONE cycle = two SQL
 * transactions: checkout (burn the MFA step, flip the account, insert the lease, insert an audit event) and
 * check-in (flip back, close the lease, insert an audit event). So pgbench's tps IS cycles/s here (not tps/2),
 * and its latency is per cycle. `pgbench -n -M <mode> -c <c> -j min(c,2) -T <T> -l`, p50/p99 from its log.
 *
 * Where the vault's time goes: bench/checkout/profile.ts (per-phase timings, CPU per cycle, CPU profile, what-ifs).
 *
 * The aims (issue 17's): vault throughput ≥ 0.2× pgbench at c=16, cycle p50 at c=1 ≤ 5 ms, and vault cycle p99 ≤ 10× pgbench's mean
 * cycle latency. The machine may be shared (e.g. a jest run): figures are noisy.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client as PgClient } from 'pg';
import { TEST_PG_URL } from '../../test/support/env';
import { actingAs } from '../../test/support/http';
import { PgHandle, startScramPostgres } from '../../test/support/targets/postgres';
import { runRaw } from '../../test/support/targets/run';
import { totpAt } from '../../test/support/totp';
import { startTestVault, TestVault } from '../../test/support/vault';
import { arg, runMain } from '../cli';

const N = Number(arg('n', '400'));
const CONCURRENCY = arg('c', '1,4,16,64').split(',').map(Number);
const MAX_C = Math.max(...CONCURRENCY);
const PGBENCH_SECONDS = Number(arg('T', '10'));
const USERS = Number(arg('users', '0')) || Math.max(64, 2 * MAX_C);
const WARMUP = Number(arg('warmup', '50'));
const PGBENCH_MODE = arg('pgbench-mode', 'extended'); // node-postgres sends parameterized queries with the extended protocol
const PGBENCH = '/usr/bin/pgbench';
const STEP_MS = 30_000;

if (!(N > 0) || CONCURRENCY.some((c) => !(c > 0))) throw new Error('--n and --c must be positive');

// ---------------------------------------------------------------- HTTP

class HttpError extends Error {}

interface Http {
  post(path: string, headers: Record<string, string>, body: object | undefined, expect: number): Promise<Record<string, unknown>>;
  close(): void;
}

/** A keep-alive client for one concurrency level; any status other than `expect` throws with the request and the answer. */
export function httpClient(port: number, sockets: number): Http {
  const agent = new http.Agent({ keepAlive: true, maxSockets: sockets });
  return {
    post: (path, headers, body, expect) =>
      new Promise((resolve, reject) => {
        const payload = body === undefined ? '' : JSON.stringify(body);
        const req = http.request(
          { host: '127.0.0.1', port, path, method: 'POST', agent, headers: { ...headers, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) } },
          (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (d: string) => (text += d));
            res.on('end', () => {
              if (res.statusCode !== expect) {
                // header names only (a token's prefix or a used MFA code has no place in a bench's output), no password
                const body = payload.replace(/"password":"[^"]*"/g, '"password":"[redacted]"');
                return reject(new HttpError(`POST ${path} [${Object.keys(headers).join(', ')}] ${body}\n  → ${res.statusCode} (expected ${expect}) ${text}`));
              }
              try {
                resolve(text ? (JSON.parse(text) as Record<string, unknown>) : {});
              } catch (e) {
                reject(e);
              }
            });
            res.on('error', reject);
          },
        );
        req.on('error', reject);
        req.end(payload);
      }),
    close: () => agent.destroy(),
  };
}

// ---------------------------------------------------------------- TOTP codes for many users

interface Operator {
  auth: string;
  secret: string;
  lastStep: number;
  busy: boolean;
}

/**
 * Hands out (user, fresh code) pairs. A user is lent out until its checkout answered (so two codes of one user are
 * never in flight together) and is not lent again within the same step. When every user has used the current step,
 * the shared test clock jumps to the next step — but only once every code in flight is of the current step, so none
 * is ever more than one step old when the vault checks it (it accepts ±1).
 */
export class CodeBook {
  private next = 0;
  private waiters: Array<() => void> = [];
  advances = 0;

  constructor(
    private readonly vault: TestVault,
    private readonly users: Operator[],
  ) {}

  async acquire(): Promise<{ user: Operator; code: string }> {
    for (;;) {
      const now = this.vault.clock.now().getTime();
      const step = Math.floor(now / STEP_MS);
      for (let k = 0; k < this.users.length; k++) {
        const u = this.users[(this.next + k) % this.users.length];
        if (!u.busy && u.lastStep < step) {
          this.next = (this.next + k + 1) % this.users.length;
          u.busy = true;
          u.lastStep = step;
          return { user: u, code: totpAt(u.secret, now) };
        }
      }
      if (this.users.every((u) => !u.busy || u.lastStep >= step)) {
        this.vault.clock.advance(STEP_MS - (now % STEP_MS) + 1);
        this.advances++;
        continue;
      }
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  /** Some operator's Authorization header (for routes without MFA). */
  anyAuth(): string {
    return this.users[0].auth;
  }

  release(u: Operator): void {
    u.busy = false;
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }
}

// ---------------------------------------------------------------- stats

export const pct = (sorted: number[], q: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] : NaN);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

class RssSampler {
  private peak = 0;
  private timer?: NodeJS.Timeout;
  start(): void {
    this.peak = process.memoryUsage().rss;
    this.timer = setInterval(() => (this.peak = Math.max(this.peak, process.memoryUsage().rss)), 50);
  }
  stop(): number {
    clearInterval(this.timer);
    return Math.max(this.peak, process.memoryUsage().rss) / 2 ** 20;
  }
}

// ---------------------------------------------------------------- the vault side

export interface VaultResult {
  seconds: number;
  cyclesPerSec: number;
  cycle: number[];
  checkout: number[];
  checkin: number[];
  rssMb: number;
  /** CPU time of this process (vault + client) over wall time: 100 = one core busy. */
  cpuPct: number;
  advances: number;
}

export async function vaultLevel(vault: TestVault, port: number, book: CodeBook, accounts: string[], c: number, n: number): Promise<VaultResult> {
  const client = httpClient(port, c);
  const cycle: number[] = [];
  const checkout: number[] = [];
  const checkin: number[] = [];
  const rss = new RssSampler();
  const advancesBefore = book.advances;
  rss.start();
  const cpu0 = process.cpuUsage();
  const start = nowMs();
  let started = 0;
  try {
    await Promise.all(
      Array.from({ length: c }, async (_, w) => {
        const accountId = accounts[w];
        while (started < n) {
          started++;
          const { user, code } = await book.acquire(); // not timed: waiting for a fresh code is the bench's, not the vault's
          const t0 = nowMs();
          let out: Record<string, unknown>;
          try {
            out = await client.post('/v1/checkouts', { Authorization: user.auth, 'X-MFA-Code': code }, { accountId, justification: 'bench' }, 201);
          } finally {
            book.release(user);
          }
          const t1 = nowMs();
          const credential = out.credential as { password?: unknown } | undefined;
          if (out.status !== 'active' || typeof credential?.password !== 'string') {
            throw new HttpError(`POST /v1/checkouts answered 201 without an active checkout and its credential: ${JSON.stringify({ ...out, credential: credential ? '…' : credential })}`);
          }
          const back = await client.post(`/v1/checkouts/${String(out.id)}/checkin`, { Authorization: user.auth }, undefined, 200);
          const t2 = nowMs();
          if (back.status !== 'returned') throw new HttpError(`check-in answered 200 with status ${JSON.stringify(back.status)}`);
          checkout.push(t1 - t0);
          checkin.push(t2 - t1);
          cycle.push(t2 - t0);
        }
      }),
    );
  } finally {
    client.close();
  }
  const seconds = (nowMs() - start) / 1000;
  const rssMb = rss.stop();
  const cpu = process.cpuUsage(cpu0);
  const cpuPct = ((cpu.user + cpu.system) / 1e6 / seconds) * 100;
  // every cycle must have ended cleanly: accounts back to available, sessions-ended cleanup done
  const [state] = await vault.db.query<{ out: number; cleanup: number }>(
    `SELECT (SELECT count(*)::int FROM accounts WHERE status <> 'available') AS out,
            (SELECT count(*)::int FROM checkouts WHERE cleanup NOT IN ('done', 'none')) AS cleanup`,
  );
  if (state.out || state.cleanup) throw new Error(`after c=${c}: ${state.out} accounts not available, ${state.cleanup} checkouts with cleanup not done`);
  const sort = (xs: number[]) => xs.sort((a, b) => a - b);
  return { seconds, cyclesPerSec: n / seconds, cycle: sort(cycle), checkout: sort(checkout), checkin: sort(checkin), rssMb, cpuPct, advances: book.advances - advancesBefore };
}

// ---------------------------------------------------------------- the pgbench side

const PGBENCH_SCHEMA = `
CREATE TABLE users (id int PRIMARY KEY, mfa_last_step bigint NOT NULL DEFAULT 0);
CREATE TABLE accounts (id int PRIMARY KEY, status text NOT NULL);
CREATE TABLE leases (
  id bigserial PRIMARY KEY,
  account_id int NOT NULL REFERENCES accounts (id),
  user_id int NOT NULL REFERENCES users (id),
  status text NOT NULL,
  justification text NOT NULL,
  requested_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  ended_at timestamptz
);
CREATE TABLE audit (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), type text NOT NULL, details jsonb NOT NULL, mac bytea NOT NULL);
`;

/** One script run = one cycle = two transactions. Client k uses user k+1 and account k+1; :step persists per client. */
const PGBENCH_SCRIPT = `\\set uid :client_id + 1
\\set aid :client_id + 1
\\set step :step + 1
BEGIN;
UPDATE users SET mfa_last_step = :step WHERE id = :uid AND mfa_last_step < :step;
UPDATE accounts SET status = 'checked_out' WHERE id = :aid AND status = 'available';
INSERT INTO leases (account_id, user_id, status, justification, requested_at, expires_at) VALUES (:aid, :uid, 'active', 'bench', now(), now() + interval '1 hour') RETURNING id AS lease_id \\gset
INSERT INTO audit (type, details, mac) VALUES ('checkout.requested', jsonb_build_object('accountId', :aid::int, 'leaseId', :lease_id::bigint, 'userId', :uid::int, 'justification', 'bench'), sha256(convert_to(:lease_id::text || 'requested', 'UTF8')));
COMMIT;
BEGIN;
UPDATE accounts SET status = 'available' WHERE id = :aid AND status = 'checked_out';
UPDATE leases SET status = 'returned', ended_at = now() WHERE id = :lease_id;
INSERT INTO audit (type, details, mac) VALUES ('checkout.checked_in', jsonb_build_object('accountId', :aid::int, 'leaseId', :lease_id::bigint, 'userId', :uid::int), sha256(convert_to(:lease_id::text || 'checked_in', 'UTF8')));
COMMIT;
`;

interface PgbenchResult {
  cyclesPerSec: number;
  meanMs: number;
  p50: number;
  p99: number;
  cycles: number;
}

class ScratchDb {
  readonly name = `bench_checkout_${randomBytes(5).toString('hex')}`;
  readonly url: URL;
  private client?: PgClient;
  constructor() {
    this.url = new URL(TEST_PG_URL);
    this.url.pathname = `/${this.name}`;
  }
  async create(maxC: number): Promise<void> {
    await adminQuery(`CREATE DATABASE ${this.name}`);
    this.client = new PgClient({ connectionString: this.url.toString() });
    await this.client.connect();
    await this.client.query(PGBENCH_SCHEMA);
    await this.client.query('INSERT INTO users (id) SELECT generate_series(1, $1::int)', [maxC]);
    await this.client.query("INSERT INTO accounts (id, status) SELECT generate_series(1, $1::int), 'available'", [maxC]);
  }
  async reset(): Promise<void> {
    await this.client!.query("TRUNCATE leases, audit; UPDATE users SET mfa_last_step = 0; UPDATE accounts SET status = 'available'");
    await this.client!.query('VACUUM ANALYZE');
  }
  async check(cycles: number): Promise<void> {
    const { rows } = await this.client!.query<{ leases: number; returned: number; steps: number; out: number; audit: number }>(
      `SELECT (SELECT count(*)::int FROM leases) AS leases, (SELECT count(*)::int FROM leases WHERE status = 'returned') AS returned,
              (SELECT sum(mfa_last_step)::int FROM users) AS steps, (SELECT count(*)::int FROM accounts WHERE status <> 'available') AS out,
              (SELECT count(*)::int FROM audit) AS audit`,
    );
    const r = rows[0];
    // every script run must have done its work: one step burned, one lease, both flips, two audit events
    if (r.leases !== cycles || r.returned !== cycles || r.steps !== cycles || r.out !== 0 || r.audit !== 2 * cycles) {
      throw new Error(`pgbench: ${cycles} cycles reported but the database holds ${JSON.stringify(r)}`);
    }
  }
  async drop(): Promise<void> {
    await this.client?.end().catch(() => undefined);
    await adminQuery(`DROP DATABASE IF EXISTS ${this.name} WITH (FORCE)`);
  }
}

async function adminQuery(sql: string): Promise<void> {
  const a = new PgClient({ connectionString: TEST_PG_URL });
  await a.connect();
  try {
    await a.query(sql);
  } finally {
    await a.end();
  }
}

async function pgbenchLevel(db: ScratchDb, scriptFile: string, c: number): Promise<PgbenchResult> {
  await db.reset();
  const logDir = mkdtempSync(join(tmpdir(), 'bench-checkout-pgb-'));
  try {
    const u = db.url;
    const args = [
      '-n', '-M', PGBENCH_MODE, '-c', String(c), '-j', String(Math.min(c, 2)), '-T', String(PGBENCH_SECONDS),
      '-D', 'step=0', '-f', scriptFile, '-l', `--log-prefix=${join(logDir, 'pgb')}`,
      '-h', u.hostname, '-p', u.port || '5432', '-U', decodeURIComponent(u.username) || 'postgres', db.name,
    ];
    const res = await runRaw(PGBENCH, args, { timeoutMs: (PGBENCH_SECONDS + 60) * 1000 });
    const out = `${res.stdout}\n${res.stderr}`;
    if (res.code !== 0) throw new Error(`pgbench ${args.join(' ')} exited ${res.code ?? res.signal}:\n${out}`);
    const num = (re: RegExp) => {
      const m = re.exec(out);
      if (!m) throw new Error(`pgbench output has no ${re}:\n${out}`);
      return Number(m[1]);
    };
    const cycles = num(/number of transactions actually processed: (\d+)/);
    const failed = /number of failed transactions: (\d+)/.exec(out);
    if (failed && Number(failed[1]) > 0) throw new Error(`pgbench: ${failed[1]} failed transactions:\n${out}`);
    const tps = num(/tps = ([\d.]+) \(without initial connection time\)/);
    const meanMs = num(/latency average = ([\d.]+) ms/);
    // log lines: client_id transaction_no latency_us script_no epoch_s epoch_us
    const lat: number[] = [];
    for (const f of readdirSync(logDir)) {
      for (const line of readFileSync(join(logDir, f), 'utf8').split('\n')) {
        const cols = line.split(' ');
        if (cols.length >= 3) lat.push(Number(cols[2]) / 1000);
      }
    }
    lat.sort((a, b) => a - b);
    if (lat.length !== cycles) throw new Error(`pgbench log holds ${lat.length} transactions, its summary ${cycles}`);
    await db.check(cycles);
    return { cyclesPerSec: tps, meanMs, p50: pct(lat, 0.5), p99: pct(lat, 0.99), cycles };
  } finally {
    rmSync(logDir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- main

export interface BenchVault {
  vault: TestVault;
  port: number;
  /** One account per worker (index = worker). */
  accounts: string[];
  book: CodeBook;
  /** The target cluster's postmaster. */
  targetPid: number;
  close(): Promise<void>;
}

/** The vault on a real port, one verified PostgreSQL target, `accounts` accounts on it, `users` enrolled operators. */
export async function startBenchVault(accountCount: number, userCount: number, log: (s: string) => void): Promise<BenchVault> {
  let pg: PgHandle | undefined;
  // the token TTL is raised so the clock jumps (one per `--users` checkouts) never expire the operators' sessions
  const v = await startTestVault({ env: { VAULT_ROTATION_SWEEP_MS: '3600000', VAULT_TOKEN_TTL_SECONDS: '86400' } });
  const close = async () => {
    await v.close().catch((e: unknown) => log(`vault close: ${(e as Error).message}`));
    await pg?.stop().catch(() => undefined);
  };
  try {
    await v.app.listen(0, '127.0.0.1');
    const port = (v.app.getHttpServer().address() as { port: number }).port;
    // as the admin, with a fresh step-up code on every change (registering targets and accounts needs one)
    const adminUser = actingAs(v, await v.admin());
    const asAdmin = async (path: string, body: object | undefined, expect: number): Promise<Record<string, unknown>> => {
      const r = await adminUser.post(path, body, true);
      if (r.status !== expect) throw new Error(`POST ${path} → ${r.status} (expected ${expect}) ${JSON.stringify(r.body)}`);
      return r.body as Record<string, unknown>;
    };

    // TLS with a throwaway CA the target registers (the vault's default for PostgreSQL: SCRAM with channel binding)
    pg = await startScramPostgres({ durable: true, tls: true });
    // the least-privilege administrator the README recommends (CREATEROLE, pg_signal_backend, pg_read_all_stats), made
    // before the accounts so that they are granted to it where PostgreSQL 16+ needs that
    const pgAdmin = await pg.leastPrivilegeAdmin();
    const target = await asAdmin('/v1/targets', { name: 'bench-checkout-pg', type: 'postgres', host: pg.host, port: pg.port, admin: { username: pgAdmin.username, password: pgAdmin.password }, options: { database: pg.database, tlsCa: pg.tls!.caPem } }, 201);
    await asAdmin(`/v1/targets/${String(target.id)}/verify`, undefined, 200);
    const accounts: string[] = [];
    for (let i = 0; i < accountCount; i++) {
      const name = `bc_${i}`;
      const password = `Bench-${randomBytes(12).toString('hex')}`;
      await pg.createRole(name, password);
      const acc = await asAdmin('/v1/accounts', { targetId: target.id, username: name, password, policy: { rotateAfterCheckin: false } }, 201);
      accounts.push(String(acc.id));
    }
    log(`seeding ${userCount} operators (argon2 + login + TOTP enrollment each)…`);
    const users: Operator[] = [];
    const seedStart = nowMs();
    // one at a time: createUser shares one pg client (vault.db) between its steps
    for (let i = 0; i < userCount; i++) {
      const u = await v.createUser(['operator']);
      users.push({ auth: u.auth, secret: u.secret, lastStep: -1, busy: false });
    }
    log(`seeded in ${((nowMs() - seedStart) / 1000).toFixed(1)} s`);
    // enrollment burned a step for every user: start from the next one
    v.clock.advance(STEP_MS);
    return { vault: v, port, accounts, book: new CodeBook(v, users), targetPid: pg.pid, close };
  } catch (e) {
    await close();
    throw e;
  }
}

async function main(): Promise<void> {
  let bench: BenchVault | undefined;
  const scratch = new ScratchDb();
  const workDir = mkdtempSync(join(tmpdir(), 'bench-checkout-'));
  const log = (s: string) => process.stderr.write(`${s}\n`);
  try {
    bench = await startBenchVault(MAX_C, USERS, log);
    const { vault: v, port, accounts, book } = bench;

    writeFileSync(join(workDir, 'cycle.sql'), PGBENCH_SCRIPT);
    await scratch.create(MAX_C);

    if (WARMUP > 0) {
      log(`warm-up: ${WARMUP} vault cycles at c=${Math.min(4, MAX_C)}…`);
      await vaultLevel(v, port, book, accounts, Math.min(4, MAX_C), WARMUP);
    }

    const rows: Array<{ c: number; vr: VaultResult; pr: PgbenchResult }> = [];
    for (const c of CONCURRENCY) {
      log(`c=${c}: vault, ${N} cycles…`);
      const vr = await vaultLevel(v, port, book, accounts, c, N);
      log(`c=${c}: ${vr.cyclesPerSec.toFixed(1)} cycles/s, p50 ${pct(vr.cycle, 0.5).toFixed(1)} ms, p99 ${pct(vr.cycle, 0.99).toFixed(1)} ms (${vr.advances} clock steps); pgbench -T ${PGBENCH_SECONDS}…`);
      const pr = await pgbenchLevel(scratch, join(workDir, 'cycle.sql'), c);
      log(`c=${c}: pgbench ${pr.cyclesPerSec.toFixed(1)} cycles/s, mean ${pr.meanMs.toFixed(2)} ms`);
      rows.push({ c, vr, pr });
    }

    const [{ events }] = await v.db.query<{ events: number }>('SELECT count(*)::int AS events FROM audit_events');
    process.stdout.write(report(rows, events));
  } finally {
    await bench?.close();
    await scratch.drop().catch((e: unknown) => log(`could not drop ${scratch.name}: ${(e as Error).message}`));
    rmSync(workDir, { recursive: true, force: true });
  }
}

function report(rows: Array<{ c: number; vr: VaultResult; pr: PgbenchResult }>, auditEvents: number): string {
  const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');
  const table = (head: string[], body: string[][]) => {
    const w = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
    const line = (cells: string[]) => cells.map((s, i) => s.padStart(w[i])).join(' | ');
    return [line(head), w.map((x) => '-'.repeat(x)).join('-|-'), ...body.map(line)].join('\n');
  };
  const main = table(
    ['c', 'vault cycles/s', 'vault p50 ms', 'vault p99 ms', 'pgbench cycles/s', 'pgbench mean ms', 'vault/pgbench thru', 'vault p99 / pgb mean', 'peak RSS MB'],
    rows.map(({ c, vr, pr }) => [
      String(c),
      f(vr.cyclesPerSec),
      f(pct(vr.cycle, 0.5)),
      f(pct(vr.cycle, 0.99)),
      f(pr.cyclesPerSec),
      f(pr.meanMs, 2),
      f(vr.cyclesPerSec / pr.cyclesPerSec, 2),
      f(pct(vr.cycle, 0.99) / pr.meanMs, 1),
      f(vr.rssMb, 0),
    ]),
  );
  const detail = table(
    ['c', 'vault HTTP req/s', 'checkout p50', 'checkout p99', 'checkin p50', 'checkin p99', 'cycle mean', 'pgbench p50', 'pgbench p99', 'pgbench cycles', 'node CPU %'],
    rows.map(({ c, vr, pr }) => [
      String(c),
      f((2 * vr.cycle.length) / vr.seconds),
      f(pct(vr.checkout, 0.5)),
      f(pct(vr.checkout, 0.99)),
      f(pct(vr.checkin, 0.5)),
      f(pct(vr.checkin, 0.99)),
      f(mean(vr.cycle)),
      f(pr.p50, 2),
      f(pr.p99, 2),
      String(pr.cycles),
      f(vr.cpuPct, 0),
    ]),
  );
  const at16 = rows.find((r) => r.c === 16);
  const at1 = rows.find((r) => r.c === 1);
  const aim1 = at16
    ? `vault ≥ 0.2× pgbench throughput at c=16: ${(at16.vr.cyclesPerSec / at16.pr.cyclesPerSec).toFixed(2)}× → ${at16.vr.cyclesPerSec / at16.pr.cyclesPerSec >= 0.2 ? 'MET' : 'NOT MET'}`
    : 'vault ≥ 0.2× pgbench throughput at c=16: not measured (no c=16 in --c)';
  const aim2 = at1
    ? `vault cycle p50 at c=1 ≤ 5 ms: ${pct(at1.vr.cycle, 0.5).toFixed(1)} ms → ${pct(at1.vr.cycle, 0.5) <= 5 ? 'MET' : 'NOT MET'}`
    : 'vault cycle p50 at c=1 ≤ 5 ms: not measured (no c=1 in --c)';
  const aim3 = `vault cycle p99 ≤ 10× pgbench mean cycle latency: ${rows
    .map(({ c, vr, pr }) => `c=${c} ${(pct(vr.cycle, 0.99) / pr.meanMs).toFixed(1)}× ${pct(vr.cycle, 0.99) <= 10 * pr.meanMs ? 'met' : 'NOT met'}`)
    .join(', ')} → ${rows.every(({ vr, pr }) => pct(vr.cycle, 0.99) <= 10 * pr.meanMs) ? 'MET' : 'NOT MET'}`;
  return [
    `checkout + check-in cycles, ${N} per concurrency through the vault's HTTP API (real TOTP codes, ${USERS} operators, one account per worker),`,
    `beside pgbench (${PGBENCH_SECONDS} s per concurrency, -M ${PGBENCH_MODE}) running the minimal SQL of a cycle on the same PostgreSQL server.`,
    `One cycle = checkout (MFA step burned, account flipped, lease, audit event) + check-in (flipped back, lease closed, audit event).`,
    `vault cycles/s = completed cycles per second = checkout requests per second (HTTP requests/s is twice that).`,
    `pgbench cycles/s = pgbench tps: ONE pgbench script run = ONE cycle = TWO SQL transactions (so NOT tps/2); pgbench latencies are per cycle.`,
    `Accounts have rotateAfterCheckin: false — rotation cost is measured by bench/rotation. The vault's check-in still ends the account's sessions on the target`,
    `(on a pooled admin connection to the target PostgreSQL), which pgbench does not do. Peak RSS = this whole process (vault + HTTP client), sampled every 50 ms;`,
    `node CPU % = its CPU time over wall time while the vault ran (100 = one core; the vault's Node is single-threaded).`,
    `Latencies in ms. Vault p50/p99 are per cycle (checkout request start → check-in answered).`,
    '',
    main,
    '',
    'detail (ms):',
    detail,
    '',
    `aims (issue 17): ${aim1}`,
    `      ${aim2}`,
    `      ${aim3}`,
    `(${auditEvents} audit events in the vault database; process maxRSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB; figures are noisy on a shared 2-core machine)`,
    '',
  ].join('\n');
}

runMain(module, main);

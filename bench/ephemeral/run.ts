/**
 * bench/ephemeral: PostgreSQL one-time accounts through the vault's HTTP API — request + approve + claim + revoke —
 * beside a raw `pg` script running the same target statements, at the same concurrencies, in one run.
 *
 *   npx ts-node --transpile-only bench/ephemeral/run.ts [--n 200] [--c 1,4,16] [--warmup 10] [--users 0] [--raw-connect worker|op] [--access db+role|role|none]
 *
 * --access db+role (default): each account is granted CONNECT on a database and a role; --access role: the role only;
 * --access none: login only. This bench found two vault failures with grants at c > 1, both fixed since: concurrent
 * GRANT CONNECT / DROP OWNED on one database failing with 502 "tuple concurrently updated" (1e9c448: the connector
 * retries; the raw script retries such a statement too, and counts it), and a claim refused ("the target's
 * administrator holds its privileges") while another account with the same role was being removed (373665b).
 *
 * Target: a throwaway scram-sha-256 PostgreSQL 18 with durable commits and TLS (test/support/targets/postgres.ts
 * startScramPostgres({ durable: true, tls: true })); BOTH sides connect as the vault does (TLS verified against the
 * target's CA, SCRAM-SHA-256-PLUS channel binding) and log in as its least-privilege admin (`vault_admin`: LOGIN
 * CREATEROLE, pg_signal_backend, pg_read_all_stats), never the superuser. Every account gets the same access (--access): CONNECT
 * on a database `bench_eph_db` (CONNECT revoked from PUBLIC; --access db+role) and membership of a NOLOGIN role `bench_eph_reader` (--access role, db+role)
 * (the admin holds it WITH ADMIN OPTION, INHERIT FALSE, SET FALSE, as the README's least-privilege set-up says).
 *
 * Vault (startTestVault: the real application on a fresh database of 127.0.0.1:5432, on a real HTTP port, driven over
 * keep-alive HTTP from this process). One cycle, as users do it (../shared/API.md, test/e2e/ephemeral-targets):
 *   POST /v1/ephemeral-accounts            an operator asks for a one-time account for a vendor   → 201 pending_approval
 *   POST /v1/ephemeral-accounts/:id/approve an approver (X-MFA-Code), with the request's digest  → 200 approved
 *   POST /v1/ephemeral-accounts/:id/claim   the vendor (X-MFA-Code): the role is created now      → 200 {username, password, …}
 *   POST /v1/ephemeral-accounts/:id/revoke  the vendor: role removed from the target, sessions ended → 200 revoked
 * The target's ephemeral policy (PUT …/ephemeral-policy) needs one approval. A TOTP step is accepted once per user, so
 * the approvers and vendors are one pool of users holding both roles, handed out by bench/checkout's CodeBook (which
 * moves the vault's test clock to the next step when every user has used the current one): each cycle's vendor is
 * lent for the whole cycle (so the approver of its request is always someone else, and its claim code is at most one
 * step old), its approver only for the approval. Waiting for a code is not timed; the four calls are.
 *
 * Raw (per worker: ONE admin connection kept open, `--raw-connect op` opens one per create and per drop instead): the
 * statements of src/connectors/postgres/postgres.connector.ts that change the target, in its order —
 *   create: CREATE ROLE … LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD '<SCRAM
 *           verifier computed client-side>' VALID UNTIL …; GRANT CONNECT ON DATABASE …; GRANT <role> … WITH INHERIT TRUE, SET FALSE
 *   drop:   ALTER ROLE … NOLOGIN; REVOKE <role> FROM it; GRANT <it> TO CURRENT_USER WITH INHERIT TRUE; pg_terminate_backend of its client
 *           backends; DROP OWNED BY … CASCADE; DROP ROLE
 * (the vault never REASSIGNs: what a one-time account owns is dropped, so neither side does). What the vault also does
 * and the raw script does not: the catalog checks of the allow-list (before the claim and again in newUser), the
 * default-privilege snapshot (COMMENT ON ROLE) and its restore, the role look-ups, the wait for ended backends, its own
 * database work (audited transactions, MFA, approvals) and HTTP.
 *
 * claims/s (and the raw creates/s) = c ÷ mean latency of that one call: the rate of claims alone at that concurrency.
 * At the end: every vault row is `revoked`, and no role made by the bench (either side) is left on the target.
 * Aim (issue 17): vault cycles/s ≥ 0.5× raw cycles/s, at every concurrency. Figures are noisy on a shared machine.
 */
import { randomBytes } from 'node:crypto';
import { Client as PgClient } from 'pg';
import { scramSha256Verifier } from '../../src/connectors/postgres/scram';
import { actingAs } from '../../test/support/http';
import { PgAdmin, PgHandle, startScramPostgres } from '../../test/support/targets/postgres';
import { startTestVault, TestVault } from '../../test/support/vault';
import { CodeBook, httpClient, pct } from '../checkout/run';
import { arg, runMain } from '../cli';
import { machineBusySeconds } from '../machine';

const N = Number(arg('n', '200'));
const CONCURRENCY = arg('c', '1,4,16').split(',').map(Number);
const MAX_C = Math.max(...CONCURRENCY);
const WARMUP = Number(arg('warmup', '10'));
const USERS = Number(arg('users', '0')) || Math.max(32, 3 * MAX_C);
const RAW_CONNECT = arg('raw-connect', 'worker');
/** What each account is given: `none` (login only), `role` (GRANT bench_eph_reader), `db+role` (also CONNECT on bench_eph_db); see the header. */
const ACCESS = arg('access', 'db+role');
const STEP_MS = 30_000;
const TTL_SECONDS = 3600;
const DB = 'bench_eph_db';
const GRANTED = 'bench_eph_reader';

if (!(N > 0) || CONCURRENCY.some((c) => !(c > 0))) throw new Error('--n and --c must be positive');
if (RAW_CONNECT !== 'worker' && RAW_CONNECT !== 'op') throw new Error('--raw-connect is worker or op');
if (ACCESS !== 'none' && ACCESS !== 'role' && ACCESS !== 'db+role') throw new Error('--access is none, role or db+role');
const WITH_DB = ACCESS === 'db+role';
const WITH_ROLE = ACCESS !== 'none';

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** A pool user: the CodeBook's operator fields plus the user id (it hands back the very object). */
interface BenchUser {
  id: string;
  auth: string;
  secret: string;
  lastStep: number;
  busy: boolean;
}

export interface Level {
  seconds: number;
  /** Per call (ms): vault request/approve/claim/revoke; raw create/drop. */
  calls: Record<string, number[]>;
  cycle: number[];
  /** Whole machine's busy CPU seconds per cycle (bench/machine.ts). */
  cpuMsPerCycle: number;
}

// ---------------------------------------------------------------- the vault side

export interface VaultSide {
  vault: TestVault;
  port: number;
  targetId: string;
  operatorAuth: string;
  book: CodeBook;
}

export async function vaultLevel(side: VaultSide, c: number, n: number): Promise<Level> {
  const client = httpClient(side.port, 2 * c);
  const calls: Record<string, number[]> = { request: [], approve: [], claim: [], revoke: [] };
  const cycle: number[] = [];
  const cpu0 = machineBusySeconds();
  const start = nowMs();
  let started = 0;
  try {
    await Promise.all(
      Array.from({ length: c }, async () => {
        while (started < n) {
          started++;
          const v = await side.book.acquire(); // the vendor, lent for the whole cycle
          const vendor = v.user as BenchUser;
          try {
            const t0 = nowMs();
            const req = await client.post(
              '/v1/ephemeral-accounts',
              { Authorization: side.operatorAuth },
              { targetId: side.targetId, vendorUserId: vendor.id, ttlSeconds: TTL_SECONDS, justification: 'bench: vendor maintenance', ...(WITH_ROLE ? { access: WITH_DB ? { database: DB, grantRoles: [GRANTED] } : { grantRoles: [GRANTED] } } : {}) },
              201,
            );
            const t1 = nowMs();
            if (req.status !== 'pending_approval') throw new Error(`request answered 201 with status ${JSON.stringify(req.status)}`);
            const id = String(req.id);
            const a = await side.book.acquire(); // never the vendor: it is lent out
            let t2: number;
            let t3: number;
            try {
              t2 = nowMs();
              const ok = await client.post(`/v1/ephemeral-accounts/${id}/approve`, { Authorization: a.user.auth, 'X-MFA-Code': a.code }, { requestDigest: req.requestDigest }, 200);
              t3 = nowMs();
              if (ok.status !== 'approved') throw new Error(`approve answered 200 with status ${JSON.stringify(ok.status)}`);
            } finally {
              side.book.release(a.user);
            }
            const claim = await client.post(`/v1/ephemeral-accounts/${id}/claim`, { Authorization: vendor.auth, 'X-MFA-Code': v.code }, {}, 200);
            const t4 = nowMs();
            if (typeof claim.username !== 'string' || typeof claim.password !== 'string') throw new Error('claim answered 200 without a username and password');
            const end = await client.post(`/v1/ephemeral-accounts/${id}/revoke`, { Authorization: vendor.auth }, {}, 200);
            const t5 = nowMs();
            if (end.status !== 'revoked') throw new Error(`revoke answered 200 with status ${JSON.stringify(end.status)} (lastError ${JSON.stringify(end.lastError)})`);
            calls.request.push(t1 - t0);
            calls.approve.push(t3 - t2);
            calls.claim.push(t4 - t3);
            calls.revoke.push(t5 - t4);
            cycle.push(t1 - t0 + (t5 - t2));
          } finally {
            side.book.release(vendor);
          }
        }
      }),
    );
  } finally {
    client.close();
  }
  const seconds = (nowMs() - start) / 1000;
  return { seconds, calls, cycle, cpuMsPerCycle: ((machineBusySeconds() - cpu0) * 1000) / n };
}

// ---------------------------------------------------------------- the raw side

/**
 * PostgreSQL refuses a catalog row changed by two sessions at once (XX000 "tuple concurrently updated": two GRANT
 * CONNECTs, or a GRANT and a DROP OWNED, on the same database's ACL); a script retries it (the vault does not: /tmp/requests17.md).
 */
async function retried<T>(work: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (e) {
      if (attempt >= 10 || !/tuple concurrently updated/.test(String((e as Error).message))) throw e;
      rawRetries++;
    }
  }
}
let rawRetries = 0;

class RawSide {
  private seq = 0;
  constructor(
    private readonly pg: PgHandle,
    private readonly admin: PgAdmin,
  ) {}

  private async connect(): Promise<PgClient> {
    // like the vault's connector: TLS verified against the target's CA, SCRAM with channel binding
    const c = new PgClient({
      host: this.pg.host, port: this.pg.port, user: this.admin.username, password: this.admin.password, database: this.pg.database,
      ssl: { ca: this.pg.tls!.caPem }, enableChannelBinding: true,
    });
    c.on('error', () => undefined);
    await c.connect();
    return c;
  }

  /** What PostgresConnector.newUser changes on the target, as one script would run it. */
  private async create(c: PgClient, name: string): Promise<void> {
    const role = c.escapeIdentifier(name);
    const validUntil = new Date(Date.now() + TTL_SECONDS * 1000).toISOString();
    const password = randomBytes(18).toString('base64');
    await c.query(
      `CREATE ROLE ${role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD ${c.escapeLiteral(scramSha256Verifier(password))} VALID UNTIL ${c.escapeLiteral(validUntil)}`,
    );
    if (WITH_DB) await retried(() => c.query(`GRANT CONNECT ON DATABASE ${c.escapeIdentifier(DB)} TO ${role}`));
    if (WITH_ROLE) await c.query(`GRANT ${c.escapeIdentifier(GRANTED)} TO ${role}${this.pg.version >= 16 ? ' WITH INHERIT TRUE, SET FALSE' : ''}`);
  }

  /** What PostgresConnector.deleteUser changes on the target. */
  private async drop(c: PgClient, name: string): Promise<void> {
    const role = c.escapeIdentifier(name);
    await c.query(`ALTER ROLE ${role} NOLOGIN`);
    // its memberships first, as deleteUser does (the admin's membership below then carries only the account's own privileges)
    if (WITH_ROLE) await c.query(`REVOKE ${c.escapeIdentifier(GRANTED)} FROM ${role}`);
    await c.query(`GRANT ${role} TO CURRENT_USER${this.pg.version >= 16 ? ' WITH INHERIT TRUE' : ''}`);
    await c.query("SELECT pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'", [name]);
    await retried(() => c.query(`DROP OWNED BY ${role} CASCADE`));
    await c.query(`DROP ROLE IF EXISTS ${role}`);
  }

  async level(c: number, n: number): Promise<Level> {
    const calls: Record<string, number[]> = { create: [], drop: [] };
    const cycle: number[] = [];
    const perWorker = RAW_CONNECT === 'worker' ? await Promise.all(Array.from({ length: c }, () => this.connect())) : [];
    const cpu0 = machineBusySeconds();
    const start = nowMs();
    let started = 0;
    try {
      await Promise.all(
        Array.from({ length: c }, async (_, w) => {
          while (started < n) {
            started++;
            const name = `bench_raw_${process.pid}_${this.seq++}`;
            const t0 = nowMs();
            if (RAW_CONNECT === 'worker') {
              await this.create(perWorker[w], name);
            } else {
              const conn = await this.connect();
              await this.create(conn, name).finally(() => conn.end());
            }
            const t1 = nowMs();
            if (RAW_CONNECT === 'worker') {
              await this.drop(perWorker[w], name);
            } else {
              const conn = await this.connect();
              await this.drop(conn, name).finally(() => conn.end());
            }
            const t2 = nowMs();
            calls.create.push(t1 - t0);
            calls.drop.push(t2 - t1);
            cycle.push(t2 - t0);
          }
        }),
      );
    } finally {
      await Promise.all(perWorker.map((p) => p.end().catch(() => undefined)));
    }
    const seconds = (nowMs() - start) / 1000;
    return { seconds, calls, cycle, cpuMsPerCycle: ((machineBusySeconds() - cpu0) * 1000) / n };
  }
}

// ---------------------------------------------------------------- set-up, checks, report

/** A number for a table cell ('-' when not finite). */
export const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');

/** A right-aligned text table (bench/storm prints with it too). */
export function table(head: string[], body: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((s, i) => s.padStart(w[i])).join(' | ');
  return [line(head), w.map((x) => '-'.repeat(x)).join('-|-'), ...body.map(line)].join('\n');
}

/**
 * The vault on a real port, with the PostgreSQL target registered (its least-privilege admin, TLS against its CA),
 * verified, and this ephemeral policy set — by the bootstrap admin with step-up codes (bench/storm uses it too).
 */
export async function vaultWithTarget(pg: PgHandle, admin: PgAdmin, name: string, policy: object): Promise<{ vault: TestVault; port: number; targetId: string }> {
  const vault = await startTestVault({});
  try {
    await vault.app.listen(0, '127.0.0.1');
    const port = (vault.app.getHttpServer().address() as { port: number }).port;
    const asAdmin = actingAs(vault, await vault.admin());
    const ok = async (res: Promise<{ status: number; body: Record<string, unknown> }>, status: number, what: string) => {
      const r = await res;
      if (r.status !== status) throw new Error(`${what}: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body;
    };
    const body = { name, type: 'postgres', host: pg.host, port: pg.port, admin: { username: admin.username, password: admin.password }, options: { database: pg.database, tlsCa: pg.tls!.caPem } };
    const targetId = String((await ok(asAdmin.post('/v1/targets', body, true), 201, 'POST /v1/targets')).id);
    await ok(asAdmin.post(`/v1/targets/${targetId}/verify`, {}, true), 200, 'verify');
    await ok(asAdmin.put(`/v1/targets/${targetId}/ephemeral-policy`, policy, true), 200, 'PUT ephemeral-policy');
    return { vault, port, targetId };
  } catch (e) {
    await vault.close().catch(() => undefined);
    throw e;
  }
}

export async function setUp(pg: PgHandle, admin: PgAdmin, log: (s: string) => void): Promise<VaultSide> {
  // the target: a database only grants open, a harmless group role the admin may hand out (README least-privilege set-up)
  await pg.query(`CREATE DATABASE ${DB}`);
  await pg.query(`REVOKE CONNECT ON DATABASE ${DB} FROM PUBLIC`);
  await pg.query(`GRANT CONNECT ON DATABASE ${DB} TO ${admin.username} WITH GRANT OPTION`);
  await pg.query(`CREATE ROLE ${GRANTED} NOLOGIN`);
  await pg.query(`GRANT ${GRANTED} TO ${admin.username} WITH ADMIN OPTION${pg.version >= 16 ? ', INHERIT FALSE, SET FALSE' : ''}`);

  const { vault, port, targetId } = await vaultWithTarget(pg, admin, 'bench-ephemeral-pg', { approvalsRequired: 1, maxTtlSeconds: TTL_SECONDS, allowedDatabases: [DB], allowedRoles: [GRANTED] });
  const operator = await vault.createUser(['operator']);
  log(`seeding ${USERS} approver+vendor users (argon2 + login + TOTP enrollment each)…`);
  const users: BenchUser[] = [];
  for (let i = 0; i < USERS; i++) {
    const u = await vault.createUser(['approver', 'vendor']);
    users.push({ id: u.id, auth: u.auth, secret: u.secret, lastStep: -1, busy: false });
  }
  vault.clock.advance(STEP_MS); // enrollment burned a step for every user
  return { vault, port, targetId, operatorAuth: operator.auth, book: new CodeBook(vault, users) };
}

async function rolesOf(pg: PgHandle): Promise<Set<string>> {
  const { rows } = await pg.query<{ rolname: string }>('SELECT rolname FROM pg_catalog.pg_roles');
  return new Set(rows.map((r) => r.rolname));
}

async function main(): Promise<void> {
  const log = (s: string) => process.stderr.write(`${s}\n`);
  let pg: PgHandle | undefined;
  let side: VaultSide | undefined;
  try {
    pg = await startScramPostgres({ durable: true, tls: true });
    const admin = await pg.leastPrivilegeAdmin();
    side = await setUp(pg, admin, log);
    const before = await rolesOf(pg);
    const raw = new RawSide(pg, admin);
    if (WARMUP > 0) {
      log(`warm-up: ${WARMUP} cycles each side at c=${Math.min(4, MAX_C)}…`);
      await vaultLevel(side, Math.min(4, MAX_C), WARMUP);
      await raw.level(Math.min(4, MAX_C), WARMUP);
    }
    const rows: Array<{ c: number; vr: Level; rr: Level }> = [];
    for (const c of CONCURRENCY) {
      log(`c=${c}: vault, ${N} cycles…`);
      const vr = await vaultLevel(side, c, N);
      log(`c=${c}: vault ${(N / vr.seconds).toFixed(1)} cycles/s; raw, ${N} cycles…`);
      const rr = await raw.level(c, N);
      log(`c=${c}: raw ${(N / rr.seconds).toFixed(1)} cycles/s`);
      rows.push({ c, vr, rr });
    }
    // nothing left behind: every vault row ended revoked, no role made by the bench is left on the target
    const [state] = await side.vault.db.query<{ total: number; revoked: number }>(
      "SELECT count(*)::int AS total, count(*) FILTER (WHERE status = 'revoked')::int AS revoked FROM ephemeral_accounts",
    );
    const after = await rolesOf(pg);
    const left = [...after].filter((r) => !before.has(r));
    const [{ events }] = await side.vault.db.query<{ events: number }>('SELECT count(*)::int AS events FROM audit_events');
    process.stdout.write(report(rows, { ...state, left, events, advances: side.book.advances }));
    if (state.revoked !== state.total || left.length) throw new Error(`left behind: ${state.total - state.revoked} vault rows not revoked, ${left.length} roles on the target (${left.slice(0, 5).join(', ')})`);
  } finally {
    await side?.vault.close().catch((e: unknown) => log(`vault close: ${(e as Error).message}`));
    await pg?.stop().catch(() => undefined);
  }
}

function report(rows: Array<{ c: number; vr: Level; rr: Level }>, end: { total: number; revoked: number; left: string[]; events: number; advances: number }): string {
  const ratio = (r: { vr: Level; rr: Level }) => (N / r.vr.seconds) / (N / r.rr.seconds);
  const main = table(
    ['c', 'vault cycles/s', 'raw cycles/s', 'vault/raw', 'vault claims/s', 'raw creates/s', 'vault cycle p50', 'vault cycle p99', 'raw cycle p50', 'raw cycle p99', 'aim ≥ 0.5×'],
    rows.map((r) => [
      String(r.c),
      f(N / r.vr.seconds),
      f(N / r.rr.seconds),
      f(ratio(r), 2),
      f(r.c / (mean(r.vr.calls.claim) / 1000)),
      f(r.c / (mean(r.rr.calls.create) / 1000)),
      f(pct(sorted(r.vr.cycle), 0.5)),
      f(pct(sorted(r.vr.cycle), 0.99)),
      f(pct(sorted(r.rr.cycle), 0.5), 2),
      f(pct(sorted(r.rr.cycle), 0.99), 2),
      ratio(r) >= 0.5 ? 'met' : 'NOT met',
    ]),
  );
  const detail = table(
    ['c', 'request p50/p99', 'approve p50/p99', 'claim p50/p99', 'revoke p50/p99', 'raw create p50/p99', 'raw drop p50/p99', 'vault CPU ms/cycle', 'raw CPU ms/cycle'],
    rows.map(({ c, vr, rr }) => [
      String(c),
      ...['request', 'approve', 'claim', 'revoke'].map((k) => `${f(pct(sorted(vr.calls[k]), 0.5))}/${f(pct(sorted(vr.calls[k]), 0.99))}`),
      ...['create', 'drop'].map((k) => `${f(pct(sorted(rr.calls[k]), 0.5), 2)}/${f(pct(sorted(rr.calls[k]), 0.99), 2)}`),
      f(vr.cpuMsPerCycle),
      f(rr.cpuMsPerCycle, 2),
    ]),
  );
  const all = rows.every((r) => ratio(r) >= 0.5);
  return [
    `PostgreSQL one-time accounts, ${N} cycles per concurrency: the vault's HTTP API (request → approve (MFA) → claim (MFA) → revoke)`,
    `beside a raw pg script (CREATE ROLE … VALID UNTIL${WITH_DB ? ', GRANT CONNECT' : ''}${WITH_ROLE ? ', GRANT role' : ''}; NOLOGIN${WITH_ROLE ? ', REVOKE role' : ''}, GRANT TO CURRENT_USER, terminate, DROP OWNED, DROP ROLE;`,
    `admin connection per ${RAW_CONNECT === 'worker' ? 'worker, kept open' : 'create and per drop'}), both as the target's least-privilege admin over TLS on a durable scram PostgreSQL.`,
    `claims/s and raw creates/s = c ÷ mean latency of that call. Latencies in ms; a vault cycle = its four calls (waits for a fresh TOTP step not counted).`,
    `CPU ms/cycle = the whole machine's busy CPU (every process: vault, its database, the target, this client) per cycle.`,
    '',
    main,
    '',
    'detail (ms):',
    detail,
    '',
    `aim: vault ≥ 0.5× raw cycles/s at every concurrency → ${all ? 'MET' : 'NOT MET'} (${rows.map((r) => `c=${r.c} ${f(ratio(r), 2)}×`).join(', ')})`,
    `left behind: ${end.total - end.revoked} of ${end.total} vault one-time accounts not revoked; ${end.left.length} roles made by the bench still on the target${end.left.length ? ` (${end.left.slice(0, 5).join(', ')})` : ''}`,
    `access: ${ACCESS}${WITH_DB ? ` (raw statements retried after "tuple concurrently updated": ${rawRetries})` : ''}`,
    `(${end.events} audit events in the vault database; ${end.advances} TOTP clock steps; ${USERS} approver+vendor users; figures are noisy on a shared 2-core machine)`,
    '',
  ].join('\n');
}

runMain(module, main);

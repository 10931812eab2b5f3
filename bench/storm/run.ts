/**
 * bench/storm: thousands of leases ending at once on a PostgreSQL target — checkouts whose password must be rotated
 * and one-time accounts that must be removed — through the vault's own scheduler, beside the raw-driver time for the
 * same target work at the vault's concurrency, in one run.
 *
 *   npx ts-node --transpile-only bench/storm/run.ts [--checkouts 2000] [--ephemeral 2000] [--idle 30] [--timeout 1800] [--sample 50]
 *
 * Set-up (not timed). A throwaway scram-sha-256 PostgreSQL 18, durable commits, TLS (startScramPostgres); the vault
 * (startTestVault: the real application with its default sweeps — checkout sweep and one-time account reaper every
 * 5 s, rotation sweep every 10 s, VAULT_ROTATION_CONCURRENCY = 4 — on a fresh database of 127.0.0.1:5432, on a real
 * HTTP port) is given the target with its least-privilege admin. Then, through the HTTP API as users do it:
 * `--checkouts` accounts are registered (admins with step-up codes) and checked out by operators (MFA), lease 8 h,
 * rotateAfterCheckin; `--ephemeral` one-time accounts (granted role `bench_storm_reader`) are requested by an
 * operator, approved (MFA) and claimed by their vendor (MFA), lifetime 8 h. The TOTP steps come from bench/checkout's
 * CodeBook, which moves the vault's test clock (test/support/clock.ts) a step on when every user used the current one;
 * the leases are long enough that none ends while the others are made.
 *
 * Idle: for `--idle` seconds, samplers measure GET /v1/me (one every 50 ms) and a checkout (POST /v1/checkouts with
 * MFA on a spare account, then its check-in; one a second) — their p99 is the idle p99.
 * Storm: the vault's clock is moved past the last lease's end at once, so every lease is due in the same instant;
 * the vault's scheduler does the rest on its own timers. Timed from the jump until the vault's database says every
 * checkout is `expired` with its session cleanup `done` and its account `available` without `must_rotate` (so its
 * password was rotated, logged in with and committed), and every one-time account is `expired` (removed from the
 * target). The same samplers run all along (p99 against idle, aim ≤ 3×), and this process's RSS is sampled every
 * 100 ms (aim: growth from just before the jump ≤ 100 MB; the process is the vault plus this bench's small client).
 * The samplers never move the clock: a sampler operator's code is used once per real 30 s step (a sample whose code
 * was made before the jump and checked after it is dropped, not counted as an error).
 * The vault's sweeps take 50 expired checkouts / 50 removals per pass, 4 at a time, and (since 749da43) take the next
 * pass at once while passes come back full (for up to 60 s per sweep); before that a storm of N of each could not end
 * before about N / 50 × 5 s whatever the target.
 *
 * Raw (before the storm, same target, not through the vault): as many other roles of each kind, on persistent
 * admin connections (the least-privilege admin, TLS, channel binding), with the vault's concurrency for each of its
 * two sweeps, both running together (4 + 4 workers):
 *   per checked-out account: ALTER ROLE … PASSWORD '<SCRAM verifier computed client-side>', a login as the role with
 *     the new password (the vault's rotation checks it so), pg_terminate_backend of its client backends;
 *   per one-time role: ALTER ROLE … NOLOGIN, REVOKE <granted role> FROM it, GRANT it TO CURRENT_USER, pg_terminate_backend, DROP OWNED … CASCADE,
 *     DROP ROLE (PostgresConnector.deleteUser's statements).
 *
 * Afterwards, on the target: no role the vault created for a one-time account exists, no raw role is left, and for a
 * sample (`--sample`) of the checked-out accounts the password the checkout answered no longer logs in (and none of
 * the storm's rows ended failed or needs_attention). Each aim is printed met / NOT met.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { Client as PgClient } from 'pg';
import { scramSha256Verifier } from '../../src/connectors/postgres/scram';
import { PgAdmin, PgHandle, startScramPostgres } from '../../test/support/targets/postgres';
import { totpAt } from '../../test/support/totp';
import type { TestVault } from '../../test/support/vault';
import { CodeBook, httpClient, pct } from '../checkout/run';
import { arg, runMain } from '../cli';
import { f, table, vaultWithTarget } from '../ephemeral/run';

const CHECKOUTS = Number(arg('checkouts', '2000'));
const EPHEMERAL = Number(arg('ephemeral', '2000'));
const IDLE_SECONDS = Number(arg('idle', '30'));
const TIMEOUT_SECONDS = Number(arg('timeout', '1800'));
const SAMPLE = Number(arg('sample', '50'));
/** The vault's default (VAULT_ROTATION_CONCURRENCY): each sweep's batch; the raw side uses it for each kind of work. */
const VAULT_CONCURRENCY = 4;
/** Concurrency of the set-up calls (not measured). */
const SETUP_C = 8;
const LEASE_SECONDS = 8 * 3600;
const STEP_MS = 30_000;
const GRANTED = 'bench_storm_reader';
/** Operators that only sample checkouts (each one's code is used once per real 30 s step: no clock move). */
const SAMPLERS = 40;

if (!(CHECKOUTS >= 0 && EPHEMERAL >= 0 && CHECKOUTS + EPHEMERAL > 0)) throw new Error('--checkouts and --ephemeral must be ≥ 0, one of them > 0');

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const log = (s: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${s}\n`);

interface PoolUser {
  id: string;
  auth: string;
  secret: string;
  lastStep: number;
  busy: boolean;
}

/** Runs `n` jobs with `c` workers. */
async function pool(n: number, c: number, job: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(c, n) }, async () => {
    while (next < n) await job(next++);
  }));
}

/** GET with a keep-alive agent; resolves to the status. */
function getStatus(agent: http.Agent, port: number, path: string, auth: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: 'GET', agent, headers: { Authorization: auth } }, (res) => {
      res.on('data', () => undefined);
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

// ---------------------------------------------------------------- the vault and its seeded leases

interface Seeded {
  vault: TestVault;
  port: number;
  targetId: string;
  /** Checked-out accounts: account id, checkout id, role name and the password the checkout answered (kept for the sample only). */
  checkouts: Array<{ accountId: string; checkoutId: string; username: string; password: string }>;
  ephemeral: string[];
  spareAccountId: string;
  samplers: PoolUser[];
  meAuth: string;
}

async function seed(pg: PgHandle, admin: PgAdmin): Promise<Seeded> {
  const { vault, port, targetId } = await vaultWithTarget(pg, admin, 'bench-storm-pg', { approvalsRequired: 1, maxTtlSeconds: LEASE_SECONDS, allowedRoles: [GRANTED] });

  const users = async (n: number, roles: Array<'admin' | 'operator' | 'approver' | 'vendor'>): Promise<PoolUser[]> => {
    const out: PoolUser[] = [];
    for (let i = 0; i < n; i++) {
      const u = await vault.createUser(roles);
      out.push({ id: u.id, auth: u.auth, secret: u.secret, lastStep: -1, busy: false });
    }
    return out;
  };
  const nUsers = (codes: number) => Math.max(8, Math.min(60, Math.ceil(codes / 40)));
  log('seeding users…');
  const admins = await users(nUsers(CHECKOUTS + 1), ['admin']);
  const operators = CHECKOUTS ? await users(nUsers(CHECKOUTS), ['operator']) : [];
  // each worker lends a vendor until its claim and an approver besides: more than twice the workers, or they wait on each other
  const pairs = EPHEMERAL ? await users(Math.max(3 * SETUP_C, nUsers(2 * EPHEMERAL)), ['approver', 'vendor']) : [];
  const samplers = await users(SAMPLERS, ['operator']);
  const requester = await vault.createUser(['operator']);
  vault.clock.advance(STEP_MS); // enrollment burned a step for every user
  const client = httpClient(port, 2 * SETUP_C);

  // accounts: roles made on the target by its superuser (createRole also gives the admin ADMIN OPTION on 16+), registered by admins
  log(`registering ${CHECKOUTS} + 1 accounts…`);
  const names = Array.from({ length: CHECKOUTS + 1 }, (_, i) => ({ username: `bs_${i}`, password: `Bench-${randomBytes(12).toString('hex')}` }));
  for (let i = 0; i < names.length; i += 200) {
    const chunk = names.slice(i, i + 200);
    await pg.query(chunk.map(({ username, password }) => `CREATE ROLE ${username} LOGIN PASSWORD '${password}'; GRANT ${username} TO ${admin.username} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE;`).join('\n'));
  }
  const adminBook = new CodeBook(vault, admins);
  const accountIds: string[] = new Array(names.length);
  await pool(names.length, SETUP_C, async (i) => {
    const { user, code } = await adminBook.acquire();
    try {
      const spare = i === names.length - 1;
      const policy = spare ? { rotateAfterCheckin: false } : { checkoutTtlSeconds: LEASE_SECONDS, maxCheckoutTtlSeconds: LEASE_SECONDS, rotateAfterCheckin: true };
      const acc = await client.post('/v1/accounts', { Authorization: user.auth, 'X-MFA-Code': code }, { targetId, username: names[i].username, password: names[i].password, policy }, 201);
      accountIds[i] = String(acc.id);
    } finally {
      adminBook.release(user);
    }
  });

  log(`${CHECKOUTS} checkouts…`);
  const opBook = new CodeBook(vault, operators);
  const checkouts: Seeded['checkouts'] = new Array(CHECKOUTS);
  await pool(CHECKOUTS, SETUP_C, async (i) => {
    const { user, code } = await opBook.acquire();
    try {
      const out = await client.post('/v1/checkouts', { Authorization: user.auth, 'X-MFA-Code': code }, { accountId: accountIds[i], justification: 'bench: storm', ttlSeconds: LEASE_SECONDS }, 201);
      const credential = out.credential as { password?: unknown } | undefined;
      if (out.status !== 'active' || typeof credential?.password !== 'string') throw new Error(`checkout ${i} answered 201 without an active checkout and its credential`);
      checkouts[i] = { accountId: accountIds[i], checkoutId: String(out.id), username: names[i].username, password: credential.password };
    } finally {
      opBook.release(user);
    }
  });

  log(`${EPHEMERAL} one-time accounts (request, approve, claim)…`);
  const pairBook = new CodeBook(vault, pairs);
  const ephemeral: string[] = new Array(EPHEMERAL);
  await pool(EPHEMERAL, SETUP_C, async (i) => {
    const v = await pairBook.acquire(); // the vendor, lent until its claim
    const vendor = v.user as PoolUser;
    try {
      const req = await client.post(
        '/v1/ephemeral-accounts',
        { Authorization: requester.auth },
        { targetId, vendorUserId: vendor.id, ttlSeconds: LEASE_SECONDS, justification: 'bench: storm', access: { grantRoles: [GRANTED] } },
        201,
      );
      const a = await pairBook.acquire();
      try {
        await client.post(`/v1/ephemeral-accounts/${String(req.id)}/approve`, { Authorization: a.user.auth, 'X-MFA-Code': a.code }, { requestDigest: req.requestDigest }, 200);
      } finally {
        pairBook.release(a.user);
      }
      await client.post(`/v1/ephemeral-accounts/${String(req.id)}/claim`, { Authorization: vendor.auth, 'X-MFA-Code': v.code }, {}, 200);
      ephemeral[i] = String(req.id);
    } finally {
      pairBook.release(vendor);
    }
  });
  client.close();
  return { vault, port, targetId, checkouts, ephemeral, spareAccountId: accountIds[names.length - 1], samplers, meAuth: requester.auth };
}

// ---------------------------------------------------------------- samplers

class Samplers {
  me: number[] = [];
  checkout: number[] = [];
  errors = 0;
  /** The first failure's answer (status and error code only: the request with its headers is not kept). */
  firstError = '';
  private stopped = false;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  private readonly client: ReturnType<typeof httpClient>;
  private loops: Promise<void>[] = [];

  constructor(private readonly s: Seeded) {
    this.client = httpClient(s.port, 2);
  }

  /** A sampler operator that has not used the vault clock's current step; waits for the next real step if none. */
  private async code(): Promise<{ user: PoolUser; code: string } | null> {
    while (!this.stopped) {
      const now = this.s.vault.clock.now().getTime();
      const step = Math.floor(now / STEP_MS);
      const user = this.s.samplers.find((u) => u.lastStep < step);
      if (user) {
        user.lastStep = step;
        return { user, code: totpAt(user.secret, now) };
      }
      await sleep(Math.min(1000, STEP_MS - (now % STEP_MS) + 5));
    }
    return null;
  }

  private failed(what: string): void {
    this.errors++;
    this.firstError ||= what;
  }

  start(): void {
    this.stopped = false;
    this.me = [];
    this.checkout = [];
    this.loops = [
      (async () => {
        while (!this.stopped) {
          const t0 = nowMs();
          const status = await getStatus(this.agent, this.s.port, '/v1/me', this.s.meAuth).catch(() => 0);
          if (status === 200) this.me.push(nowMs() - t0);
          else this.failed(`GET /v1/me → ${status}`);
          await sleep(50);
        }
      })(),
      (async () => {
        while (!this.stopped) {
          const got = await this.code();
          if (!got) break;
          const t0 = nowMs();
          const codeStep = got.user.lastStep;
          try {
            const out = await this.client.post('/v1/checkouts', { Authorization: got.user.auth, 'X-MFA-Code': got.code }, { accountId: this.s.spareAccountId, justification: 'bench: sample' }, 201);
            this.checkout.push(nowMs() - t0);
            await this.client.post(`/v1/checkouts/${String(out.id)}/checkin`, { Authorization: got.user.auth }, undefined, 200);
          } catch (e) {
            // a code made just before the storm's clock jump and checked after it is the bench's doing, not the vault's
            if (Math.floor(this.s.vault.clock.now().getTime() / STEP_MS) - codeStep > 1 && /MFA_INVALID/.test(String((e as Error).message))) continue;
            this.failed(`checkout sample: ${/→ \d+ \(expected \d+\) \{[^}]*?"code":"[A-Z_]+"/.exec(String((e as Error).message))?.[0] ?? (e as Error).name}`);
          }
          await sleep(1000);
        }
      })(),
    ];
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }

  close(): void {
    this.agent.destroy();
    this.client.close();
  }
}

// ---------------------------------------------------------------- the raw side

async function rawStorm(pg: PgHandle, admin: PgAdmin, n: { checkouts: number; ephemeral: number }): Promise<{ seconds: number; checkoutsSeconds: number; ephemeralSeconds: number }> {
  const tls = { ssl: { ca: pg.tls!.caPem }, enableChannelBinding: true };
  const connect = async (user: string, password: string) => {
    const c = new PgClient({ host: pg.host, port: pg.port, user, password, database: pg.database, ...tls });
    c.on('error', () => undefined);
    await c.connect();
    return c;
  };
  // the roles: made before the clock starts, like the vault's leases
  const co = Array.from({ length: n.checkouts }, (_, i) => `bs_raw_co_${i}`);
  const eph = Array.from({ length: n.ephemeral }, (_, i) => `bs_raw_eph_${i}`);
  for (let i = 0; i < co.length; i += 200) {
    await pg.query(co.slice(i, i + 200).map((r) => `CREATE ROLE ${r} LOGIN PASSWORD '${randomBytes(12).toString('hex')}'; GRANT ${r} TO ${admin.username} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE;`).join('\n'));
  }
  {
    const c = await connect(admin.username, admin.password);
    for (const r of eph) {
      await c.query(`CREATE ROLE ${r} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD ${c.escapeLiteral(scramSha256Verifier(randomBytes(12).toString('hex')))}`);
      await c.query(`GRANT ${GRANTED} TO ${r} WITH INHERIT TRUE, SET FALSE`);
    }
    await c.end();
  }
  const workers = async (names: string[], work: (c: PgClient, name: string) => Promise<void>) => {
    const conns = await Promise.all(Array.from({ length: VAULT_CONCURRENCY }, () => connect(admin.username, admin.password)));
    const t0 = nowMs();
    let next = 0;
    await Promise.all(conns.map(async (c) => {
      while (next < names.length) await work(c, names[next++]);
    }));
    const seconds = (nowMs() - t0) / 1000;
    await Promise.all(conns.map((c) => c.end()));
    return seconds;
  };
  const terminate = (c: PgClient, name: string) =>
    c.query("SELECT pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'", [name]);
  const t0 = nowMs();
  const [checkoutsSeconds, ephemeralSeconds] = await Promise.all([
    workers(co, async (c, name) => {
      const password = `Bench-${randomBytes(12).toString('hex')}`;
      await c.query(`ALTER ROLE ${c.escapeIdentifier(name)} WITH PASSWORD ${c.escapeLiteral(scramSha256Verifier(password))}`);
      const login = await connect(name, password);
      await login.query('SELECT 1');
      await login.end();
      await terminate(c, name);
    }),
    workers(eph, async (c, name) => {
      const role = c.escapeIdentifier(name);
      await c.query(`ALTER ROLE ${role} NOLOGIN`);
      await c.query(`REVOKE ${GRANTED} FROM ${role}`);
      await c.query(`GRANT ${role} TO CURRENT_USER WITH INHERIT TRUE`);
      await terminate(c, name);
      await c.query(`DROP OWNED BY ${role} CASCADE`);
      await c.query(`DROP ROLE ${role}`);
    }),
  ]);
  const seconds = (nowMs() - t0) / 1000;
  // the raw checkout roles are the bench's own: dropped (not timed)
  for (let i = 0; i < co.length; i += 200) await pg.query(co.slice(i, i + 200).map((r) => `DROP ROLE ${r};`).join('\n'));
  return { seconds, checkoutsSeconds, ephemeralSeconds };
}

// ---------------------------------------------------------------- the storm

interface StormResult {
  seconds: number;
  checkoutsSeconds: number;
  ephemeralSeconds: number;
  timedOut: boolean;
  rssBaseMb: number;
  rssPeakMb: number;
  failures: { rotationsFailed: number; cleanupFailed: number; needsAttention: number };
}

async function vaultStorm(s: Seeded): Promise<StormResult> {
  const db = s.vault.db;
  const coIds = s.checkouts.map((c) => c.checkoutId);
  const accIds = s.checkouts.map((c) => c.accountId);
  const [{ last }] = await db.query<{ last: Date | null }>(
    'SELECT greatest((SELECT max(expires_at) FROM checkouts WHERE id = ANY($1::uuid[])), (SELECT max(expires_at) FROM ephemeral_accounts WHERE id = ANY($2::uuid[]))) AS last',
    [coIds, s.ephemeral],
  );
  const remaining = async () => {
    const [r] = await db.query<{ co: number; eph: number }>(
      `SELECT (SELECT count(*)::int FROM checkouts c JOIN accounts a ON a.id = c.account_id
                WHERE c.id = ANY($1::uuid[]) AND NOT (c.status = 'expired' AND c.cleanup = 'done' AND a.status = 'available' AND NOT a.must_rotate)) AS co,
              (SELECT count(*)::int FROM ephemeral_accounts WHERE id = ANY($2::uuid[]) AND status <> 'expired') AS eph`,
      [coIds, s.ephemeral],
    );
    return r;
  };
  const before = await remaining();
  if (before.co !== coIds.length || before.eph !== s.ephemeral.length) throw new Error(`before the storm some leases had ended already: ${JSON.stringify(before)}`);
  const rssBase = process.memoryUsage().rss;
  let rssPeak = rssBase;
  const rssTimer = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage().rss)), 100);
  // every lease due in the same instant: the clock moves past the last one's end
  const jumpMs = (last ? last.getTime() : s.vault.clock.now().getTime()) - s.vault.clock.now().getTime() + 1000;
  const t0 = nowMs();
  s.vault.clock.advance(Math.max(0, jumpMs));
  let coDone = coIds.length ? NaN : 0;
  let ephDone = s.ephemeral.length ? NaN : 0;
  let timedOut = false;
  let lastLog = t0;
  for (;;) {
    const r = await remaining();
    const t = (nowMs() - t0) / 1000;
    if (r.co === 0 && Number.isNaN(coDone)) coDone = t;
    if (r.eph === 0 && Number.isNaN(ephDone)) ephDone = t;
    if (r.co === 0 && r.eph === 0) break;
    if (t > TIMEOUT_SECONDS) {
      timedOut = true;
      break;
    }
    if (nowMs() - lastLog > 10_000) {
      log(`storm ${t.toFixed(0)} s: ${r.co} checkouts and ${r.eph} one-time accounts to go`);
      lastLog = nowMs();
    }
    await sleep(200);
  }
  const seconds = (nowMs() - t0) / 1000;
  clearInterval(rssTimer);
  rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
  const [failures] = await db.query<StormResult['failures']>(
    `SELECT (SELECT count(*)::int FROM rotations WHERE account_id = ANY($1::uuid[]) AND status = 'failed') AS "rotationsFailed",
            (SELECT count(*)::int FROM checkouts WHERE id = ANY($2::uuid[]) AND cleanup = 'failed') AS "cleanupFailed",
            (SELECT count(*)::int FROM ephemeral_accounts WHERE id = ANY($3::uuid[]) AND status = 'needs_attention') AS "needsAttention"`,
    [accIds, coIds, s.ephemeral],
  );
  return { seconds, checkoutsSeconds: coDone, ephemeralSeconds: ephDone, timedOut, rssBaseMb: rssBase / 2 ** 20, rssPeakMb: rssPeak / 2 ** 20, failures };
}

/** On the target: vault-made one-time roles left, raw roles left, and how many sampled old passwords still log in. */
async function leftBehind(pg: PgHandle, s: Seeded): Promise<{ ephemeralLeft: string[]; rawLeft: number; oldPasswordsWork: number; sampled: number }> {
  const rows = await s.vault.db.query<{ username: string }>('SELECT username FROM ephemeral_accounts WHERE id = ANY($1::uuid[]) AND username IS NOT NULL', [s.ephemeral]);
  const names = rows.map((r) => r.username);
  const { rows: left } = await pg.query<{ rolname: string }>('SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY($1::text[])', [names]);
  const { rows: raw } = await pg.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_catalog.pg_roles WHERE rolname LIKE 'bs\\_raw\\_%'");
  const step = Math.max(1, Math.floor(s.checkouts.length / Math.max(1, SAMPLE)));
  let works = 0;
  let sampled = 0;
  for (let i = 0; i < s.checkouts.length && sampled < SAMPLE; i += step) {
    const { username, password } = s.checkouts[i];
    sampled++;
    const c = new PgClient({ host: pg.host, port: pg.port, user: username, password, database: pg.database, ssl: { ca: pg.tls!.caPem }, enableChannelBinding: true });
    c.on('error', () => undefined);
    try {
      await c.connect();
      works++;
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      if (code !== '28P01') throw new Error(`the old-password login of ${username} failed otherwise than with a wrong password: ${String(code)}`, { cause: e });
    } finally {
      await c.end().catch(() => undefined);
    }
  }
  return { ephemeralLeft: left.map((r) => r.rolname), rawLeft: raw[0].n, oldPasswordsWork: works, sampled };
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  let pg: PgHandle | undefined;
  let seeded: Seeded | undefined;
  let samplers: Samplers | undefined;
  try {
    pg = await startScramPostgres({ durable: true, tls: true });
    const admin = await pg.leastPrivilegeAdmin();
    await pg.query(`CREATE ROLE ${GRANTED} NOLOGIN`);
    await pg.query(`GRANT ${GRANTED} TO ${admin.username} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE`);
    const setupStart = nowMs();
    seeded = await seed(pg, admin);
    log(`seeded in ${((nowMs() - setupStart) / 1000).toFixed(0)} s (vault clock ${((seeded.vault.clock.offsetMs) / 3.6e6).toFixed(1)} h ahead)`);

    log(`raw: the same target work on ${CHECKOUTS} + ${EPHEMERAL} other roles at ${VAULT_CONCURRENCY} + ${VAULT_CONCURRENCY} workers…`);
    const raw = await rawStorm(pg, admin, { checkouts: CHECKOUTS, ephemeral: EPHEMERAL });
    log(`raw: ${raw.seconds.toFixed(2)} s`);

    samplers = new Samplers(seeded);
    log(`idle: sampling for ${IDLE_SECONDS} s…`);
    samplers.start();
    await sleep(IDLE_SECONDS * 1000);
    await samplers.stop();
    const idle = { me: sorted(samplers.me), checkout: sorted(samplers.checkout) };

    log('storm: the clock moves past every lease…');
    samplers.start();
    const storm = await vaultStorm(seeded);
    await samplers.stop();
    const during = { me: sorted(samplers.me), checkout: sorted(samplers.checkout) };
    log(`storm: ${storm.seconds.toFixed(1)} s`);
    const left = await leftBehind(pg, seeded);
    process.stdout.write(report(raw, storm, idle, during, left, `${samplers.errors}${samplers.errors ? ` (first: ${samplers.firstError})` : ''}`));
  } finally {
    samplers?.close();
    await seeded?.vault.close().catch((e: unknown) => log(`vault close: ${(e as Error).message}`));
    await pg?.stop().catch(() => undefined);
  }
}

function report(
  raw: Awaited<ReturnType<typeof rawStorm>>,
  storm: StormResult,
  idle: { me: number[]; checkout: number[] },
  during: { me: number[]; checkout: number[] },
  left: Awaited<ReturnType<typeof leftBehind>>,
  samplerErrors: string,
): string {
  const ratio = storm.seconds / raw.seconds;
  const meRatio = pct(during.me, 0.99) / pct(idle.me, 0.99);
  const coRatio = pct(during.checkout, 0.99) / pct(idle.checkout, 0.99);
  const growth = storm.rssPeakMb - storm.rssBaseMb;
  const clean = !storm.timedOut && left.ephemeralLeft.length === 0 && left.rawLeft === 0 && left.oldPasswordsWork === 0
    && storm.failures.rotationsFailed + storm.failures.cleanupFailed + storm.failures.needsAttention === 0;
  const met = (b: boolean) => (b ? 'met' : 'NOT met');
  const times = table(
    ['', 'all (s)', `${CHECKOUTS} checkouts rotated + cleaned (s)`, `${EPHEMERAL} one-time accounts removed (s)`, 'items/s'],
    [
      ['vault (its scheduler)', f(storm.seconds, 2) + (storm.timedOut ? ' TIMED OUT' : ''), f(storm.checkoutsSeconds, 2), f(storm.ephemeralSeconds, 2), f((CHECKOUTS + EPHEMERAL) / storm.seconds)],
      [`raw (${VAULT_CONCURRENCY} + ${VAULT_CONCURRENCY} workers)`, f(raw.seconds, 2), f(raw.checkoutsSeconds, 2), f(raw.ephemeralSeconds, 2), f((CHECKOUTS + EPHEMERAL) / raw.seconds)],
    ],
  );
  const lat = table(
    ['sampled', 'idle n', 'idle p50', 'idle p99', 'storm n', 'storm p50', 'storm p99', 'storm p99 / idle p99'],
    [
      ['GET /v1/me', String(idle.me.length), f(pct(idle.me, 0.5)), f(pct(idle.me, 0.99)), String(during.me.length), f(pct(during.me, 0.5)), f(pct(during.me, 0.99)), f(meRatio, 2)],
      ['POST /v1/checkouts', String(idle.checkout.length), f(pct(idle.checkout, 0.5)), f(pct(idle.checkout, 0.99)), String(during.checkout.length), f(pct(during.checkout, 0.5)), f(pct(during.checkout, 0.99)), f(coRatio, 2)],
    ],
  );
  return [
    `Expiry storm on one PostgreSQL target (scram, TLS, durable; the vault's least-privilege admin): ${CHECKOUTS} checkouts (rotate after check-in) and`,
    `${EPHEMERAL} one-time accounts, all made due at once by moving the vault's clock; the vault's own scheduler (default sweeps, concurrency ${VAULT_CONCURRENCY})`,
    `beside a raw pg script doing the same target work on as many other roles (ALTER ROLE PASSWORD + login + terminate; NOLOGIN, REVOKE, GRANT, terminate, DROP OWNED, DROP ROLE).`,
    `Latencies in ms (samplers: GET /v1/me every 50 ms, one checkout a second, both on keep-alive HTTP from this process).`,
    '',
    times,
    '',
    lat,
    '',
    `RSS of this process (vault + bench client): ${f(storm.rssBaseMb, 0)} MB just before the jump, peak ${f(storm.rssPeakMb, 0)} MB during the storm (+${f(growth, 0)} MB)`,
    `on the target afterwards: ${left.ephemeralLeft.length} vault one-time roles left${left.ephemeralLeft.length ? ` (${left.ephemeralLeft.slice(0, 3).join(', ')}…)` : ''}, ${left.rawLeft} raw roles left; `
      + `old password still logs in for ${left.oldPasswordsWork} of ${left.sampled} sampled checked-out accounts; `
      + `rotations failed ${storm.failures.rotationsFailed}, cleanups failed ${storm.failures.cleanupFailed}, one-time accounts needs_attention ${storm.failures.needsAttention}; sampler errors ${samplerErrors}`,
    '',
    'aims:',
    `  storm time ≤ 1.5× raw: ${f(ratio, 2)}× → ${met(!storm.timedOut && ratio <= 1.5)}`,
    `  GET /v1/me p99 during the storm ≤ 3× idle: ${f(meRatio, 2)}× → ${met(meRatio <= 3)}`,
    `  checkout p99 during the storm ≤ 3× idle: ${f(coRatio, 2)}× → ${met(coRatio <= 3)}`,
    `  RSS growth ≤ 100 MB: +${f(growth, 0)} MB → ${met(growth <= 100)}`,
    `  nothing left behind: ${met(clean)}`,
    '(figures are noisy on a shared 2-core machine)',
    '',
  ].join('\n');
}

runMain(module, main);

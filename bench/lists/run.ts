/**
 * bench/lists: the vault's three big list endpoints at growing table sizes — the first page and a deep keyset page
 * (the 1,000th by default) — through the real HTTP API, beside the same keyset SQL run straight on the database.
 *
 *   npx ts-node --transpile-only bench/lists/run.ts [--sizes 10000,1000000] [--samples 50] [--limit 10] [--page 1000] [--warmup 5] [--verify 100000] [--again yes]
 *
 * Vault: the real application (startTestVault: a fresh database on the machine's PostgreSQL, 127.0.0.1:5432)
 * listening on a real HTTP port, driven over one keep-alive socket from this process, as the bootstrap admin:
 *   GET /v1/accounts       keyset ascending on accounts.id (uuid)        cursor = base64url(JSON [id])
 *   GET /v1/checkouts      keyset ascending on checkouts.seq (bigint)    cursor = base64url(JSON ["seq"])
 *   GET /v1/audit-events   keyset descending on audit_events.id (bigint) cursor = base64url(JSON ["id"])
 * (the issue's `/v1/audit` is `/v1/audit-events` in the API). All three are keyset lists (src/common/pagination.ts,
 * src/database/queries.ts, src/audit/audit-query.service.ts): no OFFSET anywhere.
 *
 * Page size: `?limit=10` (`--limit`; the API's default is 50): at 10k rows a 1,000th page exists only with 10 rows a
 * page. A size too small for `--page` pages is measured at its last full page, and the table says which page.
 *
 * The deep page's cursor: the bench follows the API's own `nextCursor` from page 1 to page `--page` once per list
 * and size (timed as "walk", apart from the measured requests), and checks that the cursor it reached equals the one
 * derived from the table (the cursor is derivable: the base64url JSON of the previous page's last key, which the
 * bench reads with ORDER BY … OFFSET in SQL — the vault itself never uses OFFSET). Then `--samples` requests of the
 * first page and `--samples` of the deep page are timed, alternating (after `--warmup` unmeasured ones), p50/p99
 * printed. "SQL" columns: the list's keyset statement (all columns, LIMIT limit+1) run `--samples` times on a plain
 * pg connection — what the database alone costs — and its EXPLAIN (ANALYZE, BUFFERS): the scan node (and index) and
 * the shared buffers it touched, which show whether the database's work grows with the table, however busy the
 * machine is.
 *
 * Seeding (sizes ascending; each size tops the three tables up to that many rows, then VACUUM ANALYZE):
 *   - one target, created through the API (POST /v1/targets with the admin's MFA code; never contacted);
 *   - accounts: ONE `INSERT … SELECT generate_series` (gen_random_uuid() ids, usernames bench_<n>, status available,
 *     DEFAULT_POLICY with no scheduled rotation). `password_secret` is a fixed placeholder of a real ciphertext's
 *     length (format byte, key version, random box) that does not decrypt: no list reads the password, and no
 *     seeded account is ever checked out or rotated;
 *   - checkouts: ONE `INSERT … SELECT` from those accounts, one returned (checked-in) checkout each, cleanup done,
 *     requested by the admin — past, ended leases, so no sweep picks them up;
 *   - audit events: generated in this process so that the chain stays valid — each row's MAC and chain link are
 *     computed with the vault's own functions (src/audit/audit-chain.ts: eventMac, chainLink, headMac) under the
 *     vault's audit key, ids reserved from the table's sequence, and inserted with `INSERT … SELECT FROM unnest(…)`
 *     in batches, in ONE transaction holding the sealing lock that also moves the chain head. Sizes up to
 *     `--verify` rows are then checked with GET /v1/audit-events/verify (ok and count printed).
 * Seeding times are printed per size and table. After the largest size the smallest is measured again (`--again no`
 * to skip): the three tables are emptied (TRUNCATE, the chain head too: the chain restarts from genesis) and seeded
 * afresh — an A-B-A order, so that a busy spell of the shared machine during one size shows up as a gap between the
 * smallest size's two runs instead of passing for the cost of a larger table.
 *
 * The aim (the issue's): for each list, p50 at the largest size ≤ 2× p50 at the smallest (over the samples of both
 * its runs), for the first page and for the deep page. The machine's busy share during each size's measurements is
 * printed. (One process cannot hold two vaults side by side — a second startTestVault in the same process makes the
 * first one's tokens answer 401 — so the sizes cannot be interleaved request by request.)
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { cpus } from 'node:os';
import { Client as PgClient } from 'pg';
import { DEFAULT_POLICY } from '../../src/accounts/policy';
import { chainLink, eventMac, GENESIS_HASH, headMac } from '../../src/audit/audit-chain';
import { SEAL_LOCK } from '../../src/audit/audit-sealer.service';
import { encodeCursor } from '../../src/common/pagination';
import { KeyringService } from '../../src/crypto/keyring.service';
import { startTestVault, TestVault } from '../../test/support/vault';
import { pct } from '../checkout/run';
import { arg, runMain } from '../cli';
import { f, table } from '../ephemeral/run';
import { machineBusySeconds } from '../machine';

const SIZES = arg('sizes', '10000,1000000').split(',').map(Number).sort((a, b) => a - b);
const SAMPLES = Number(arg('samples', '50'));
const LIMIT = Number(arg('limit', '10'));
const PAGE = Number(arg('page', '1000'));
const WARMUP = Number(arg('warmup', '5'));
const VERIFY_UP_TO = Number(arg('verify', '100000'));
const AGAIN = arg('again', 'yes') !== 'no';
const AUDIT_BATCH = 20_000;

if (SIZES.some((s) => !(s > 0)) || !(SAMPLES > 0) || !(LIMIT > 0 && LIMIT <= 200) || !(PAGE > 1)) {
  throw new Error('--sizes and --samples must be positive, --limit 1..200, --page > 1');
}

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const log = (s: string) => process.stderr.write(`${s}\n`);

// ---------------------------------------------------------------- HTTP GET

/** One keep-alive socket; any status other than 200 throws with the path and the answer (never the token). */
function getClient(port: number, auth: string) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const get = (path: string): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path, method: 'GET', agent, headers: { Authorization: auth } }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => {
          if (res.statusCode !== 200) return reject(new Error(`GET ${path} → ${res.statusCode}: ${text.slice(0, 500)}`));
          try {
            resolve(JSON.parse(text) as Record<string, unknown>);
          } catch (e) {
            reject(e);
          }
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
  return { get, close: () => agent.destroy() };
}

// ---------------------------------------------------------------- the lists

interface ListDef {
  name: string;
  path: string;
  table: string;
  /** The key of the row at 0-based position $1 in the list's order (the bench's own way to derive a cursor). */
  keyAtSql: string;
  /** The list's keyset statement: first page without $1, a later page after the key $1. */
  firstSql: string;
  afterSql: string;
}

const LISTS: ListDef[] = [
  {
    name: 'accounts',
    path: '/v1/accounts',
    table: 'accounts',
    keyAtSql: 'SELECT id::text AS k FROM accounts ORDER BY id OFFSET $1 LIMIT 1',
    firstSql: `SELECT * FROM accounts ORDER BY id LIMIT ${LIMIT + 1}`,
    afterSql: `SELECT * FROM accounts WHERE id > $1::uuid ORDER BY id LIMIT ${LIMIT + 1}`,
  },
  {
    name: 'checkouts',
    path: '/v1/checkouts',
    table: 'checkouts',
    keyAtSql: 'SELECT seq::text AS k FROM checkouts ORDER BY seq OFFSET $1 LIMIT 1',
    firstSql: `SELECT * FROM checkouts ORDER BY seq LIMIT ${LIMIT + 1}`,
    afterSql: `SELECT * FROM checkouts WHERE seq > $1::bigint ORDER BY seq LIMIT ${LIMIT + 1}`,
  },
  {
    name: 'audit-events',
    path: '/v1/audit-events',
    table: 'audit_events',
    keyAtSql: 'SELECT id::text AS k FROM audit_events ORDER BY id DESC OFFSET $1 LIMIT 1',
    firstSql: `SELECT * FROM audit_events ORDER BY id DESC LIMIT ${LIMIT + 1}`,
    afterSql: `SELECT * FROM audit_events WHERE id < $1::bigint ORDER BY id DESC LIMIT ${LIMIT + 1}`,
  },
];

interface Measured {
  list: string;
  size: number;
  /** The smallest size measured again at the end, on freshly seeded tables. */
  again: boolean;
  rows: number;
  /** 'first' or the deep page's number. */
  page: number;
  http: number[];
  sql: number[];
  /** EXPLAIN (ANALYZE, BUFFERS) of the keyset statement: its scan node and the buffers it touched. */
  plan: string;
}

interface SizeInfo {
  size: number;
  again: boolean;
  seed: Record<string, number>;
  analyzeMs: number;
  walks: Record<string, { pages: number; ms: number; derivedMatches: boolean }>;
  verify?: { ok: boolean; count?: number; ms: number };
  busyPct: number;
}

// ---------------------------------------------------------------- seeding

interface Seeder {
  topUp(size: number): Promise<Record<string, number>>;
  /** Empties the three tables (and the chain head: the chain starts again from genesis with the next seeding). */
  empty(): Promise<void>;
}

async function seeder(v: TestVault, pg: PgClient, targetId: string, adminId: string): Promise<Seeder> {
  // a real ciphertext's length for a 32-character password: 1 format byte + 4 key version + 24 nonce + 32 + 16 tag
  const placeholder = Buffer.concat([Buffer.from([1, 0, 0, 0, 1]), randomBytes(24 + 32 + 16)]);
  const policy = JSON.stringify({ ...DEFAULT_POLICY, rotateAfterCheckin: false });
  const count = async (table: string) => Number((await pg.query(`SELECT count(*)::bigint AS n FROM ${table}`)).rows[0].n);
  const auditKey = v.get(KeyringService).auditKey();

  const accounts = async (size: number) => {
    const have = await count('accounts');
    if (have >= size) return;
    await pg.query(
      `INSERT INTO accounts (id, target_id, username, status, password_secret, policy, last_rotated_at, created_at, updated_at)
       SELECT gen_random_uuid(), $1::uuid, 'bench_' || g, 'available', $2::bytea, $3::jsonb, now() - interval '1 day', now(), now()
         FROM generate_series($4::bigint + 1, $5::bigint) g`,
      [targetId, placeholder, policy, have, size],
    );
  };

  const checkouts = async (size: number) => {
    const have = await count('checkouts');
    if (have >= size) return;
    // one returned checkout per seeded account that has none yet, in username order (seq follows it)
    await pg.query(
      `INSERT INTO checkouts (id, account_id, requester_id, status, justification, ttl_seconds, break_glass, approvals_required,
                             rotate_after_checkin, requested_at, activated_at, expires_at, ended_at, ended_by, end_reason, cleanup)
       SELECT gen_random_uuid(), a.id, $1::uuid, 'returned', 'bench: seeded checkout ' || a.username, 3600, false, 0,
              false, t, t, t + interval '1 hour', t + interval '10 minutes', $1::text, 'checked_in', 'done'
         FROM (SELECT a.id, a.username, now() - interval '30 days' + (substr(a.username, 7)::bigint * interval '1 second') AS t
                 FROM accounts a
                WHERE a.target_id = $2::uuid AND NOT EXISTS (SELECT 1 FROM checkouts c WHERE c.account_id = a.id)
                ORDER BY substr(a.username, 7)::bigint
                LIMIT $3::bigint) a`,
      [adminId, targetId, size - have],
    );
  };

  const audit = async (size: number) => {
    const have = await count('audit_events');
    const n = size - have;
    if (n <= 0) return;
    await pg.query('BEGIN');
    try {
      // the sealing lock: no sealing pass or verify runs while the chain grows by n links
      await pg.query('SELECT pg_advisory_xact_lock($1)', [SEAL_LOCK]);
      const [ids] = (await pg.query(`SELECT min(v)::text AS lo, max(v)::text AS hi FROM (SELECT nextval('audit_events_id_seq') AS v FROM generate_series(1, $1::int)) s`, [n])).rows as Array<{
        lo: string;
        hi: string;
      }>;
      if (BigInt(ids.hi) - BigInt(ids.lo) + 1n !== BigInt(n)) throw new Error('audit ids were not reserved as one range (the vault wrote events meanwhile)');
      const head = (await pg.query('SELECT seq::text AS seq, hash FROM audit_chain_head WHERE id = 1 FOR UPDATE')).rows[0] as { seq: string; hash: Buffer } | undefined;
      let seq = BigInt(head?.seq ?? '0');
      let hash: Buffer = head?.hash ?? GENESIS_HASH;
      const t0 = Date.now() - 30 * 86_400_000;
      for (let start = 0; start < n; start += AUDIT_BATCH) {
        const m = Math.min(AUDIT_BATCH, n - start);
        const cols = { id: [] as string[], at: [] as Date[], subject: [] as string[], details: [] as string[], mac: [] as Buffer[], seq: [] as string[], hash: [] as Buffer[] };
        for (let k = 0; k < m; k++) {
          const id = (BigInt(ids.lo) + BigInt(start + k)).toString();
          const at = new Date(t0 + (start + k) * 1000);
          const subjectId = `00000000-0000-4000-8000-${(start + k).toString(16).padStart(12, '0')}`;
          const details = { accountId: subjectId, justification: 'bench: seeded event', ttlSeconds: 3600 };
          const mac = eventMac(auditKey, { id, at, type: 'checkout.checked_in', actorId: adminId, subjectType: 'checkout', subjectId, outcome: 'success', details });
          seq += 1n;
          hash = chainLink(auditKey, hash, seq, mac);
          cols.id.push(id);
          cols.at.push(at);
          cols.subject.push(subjectId);
          cols.details.push(JSON.stringify(details));
          cols.mac.push(mac);
          cols.seq.push(seq.toString());
          cols.hash.push(hash);
        }
        await pg.query(
          `INSERT INTO audit_events (id, at, type, actor_id, subject_type, subject_id, outcome, details, mac, seq, chain_hash)
           SELECT v.id, v.at, 'checkout.checked_in', $1, 'checkout', v.subject, 'success', v.details, v.mac, v.seq, v.hash
             FROM unnest($2::bigint[], $3::timestamptz[], $4::text[], $5::jsonb[], $6::bytea[], $7::bigint[], $8::bytea[]) AS v(id, at, subject, details, mac, seq, hash)`,
          [adminId, cols.id, cols.at, cols.subject, cols.details, cols.mac, cols.seq, cols.hash],
        );
      }
      await pg.query(
        `INSERT INTO audit_chain_head (id, seq, hash, mac) VALUES (1, $1, $2, $3)
         ON CONFLICT (id) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash, mac = EXCLUDED.mac`,
        [seq.toString(), hash, headMac(auditKey, seq, hash)],
      );
      await pg.query('COMMIT');
    } catch (e) {
      await pg.query('ROLLBACK').catch(() => undefined);
      throw e;
    }
  };

  return {
    empty: async () => {
      await pg.query('BEGIN');
      try {
        await pg.query('SELECT pg_advisory_xact_lock($1)', [SEAL_LOCK]);
        await pg.query('TRUNCATE audit_events, audit_chain_head');
        await pg.query('TRUNCATE accounts CASCADE'); // checkouts and everything hanging on accounts
        await pg.query('COMMIT');
      } catch (e) {
        await pg.query('ROLLBACK').catch(() => undefined);
        throw e;
      }
    },
    topUp: async (size) => {
      const took: Record<string, number> = {};
      for (const [name, fn] of [['accounts', accounts], ['checkouts', checkouts], ['audit_events', audit]] as const) {
        const t = nowMs();
        await fn(size);
        took[name] = nowMs() - t;
      }
      return took;
    },
  };
}

// ---------------------------------------------------------------- measuring

async function timed<T>(n: number, fn: () => Promise<T>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = nowMs();
    await fn();
    out.push(nowMs() - t);
  }
  return out.sort((a, b) => a - b);
}

/** The scan node under the LIMIT (its kind and index) and the shared buffers the whole statement touched: the machine-independent cost. */
async function planOf(pg: PgClient, sql: string, params: unknown[]): Promise<string> {
  const [{ 'QUERY PLAN': [top] }] = (await pg.query(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${sql}`, params)).rows as Array<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>;
  let node = top.Plan;
  while (node['Node Type'] === 'Limit' && node.Plans?.length) node = node.Plans[0];
  const buffers = (top.Plan['Shared Hit Blocks'] ?? 0) + (top.Plan['Shared Read Blocks'] ?? 0);
  return `${node['Node Type']}${node['Index Name'] ? ` ${node['Index Name']}` : ''}, ${buffers} buf`;
}

interface PlanNode {
  'Node Type': string;
  'Index Name'?: string;
  'Shared Hit Blocks'?: number;
  'Shared Read Blocks'?: number;
  Plans?: PlanNode[];
}

async function main(): Promise<void> {
  const v = await startTestVault({ env: { VAULT_ROTATION_SWEEP_MS: '3600000', VAULT_TOKEN_TTL_SECONDS: '86400' } });
  const pg = new PgClient({ connectionString: v.db.url });
  let client: ReturnType<typeof getClient> | undefined;
  try {
    await pg.connect();
    await v.app.listen(0, '127.0.0.1');
    const port = (v.app.getHttpServer().address() as { port: number }).port;
    const admin = await v.admin();
    // a target to hang the accounts on: created through the API, never contacted (nothing verifies or rotates it)
    const target = await v
      .http()
      .post('/v1/targets')
      .set('Authorization', admin.auth)
      .set('X-MFA-Code', await admin.code())
      .send({ name: 'bench-lists', type: 'postgres', host: '127.0.0.1', port: 1, admin: { username: 'bench_admin', password: randomBytes(16).toString('hex') }, options: { database: 'postgres' } })
      .expect(201);
    const seed = await seeder(v, pg, target.body.id as string, admin.id);
    client = getClient(port, admin.auth);
    const c = client;
    const results: Measured[] = [];
    const sizes: SizeInfo[] = [];

    // the smallest size again at the end (A-B-A): a busy spell of the shared machine during one size shows as a gap
    // between the two runs of the smallest size instead of passing for the cost of the larger table
    const phases = [...SIZES.map((size) => ({ size, again: false })), ...(AGAIN && SIZES.length > 1 ? [{ size: SIZES[0], again: true }] : [])];
    for (const { size, again } of phases) {
      if (again) {
        log(`size ${size} again: emptying the tables…`);
        await seed.empty();
      }
      log(`size ${size}: seeding…`);
      const took = await seed.topUp(size);
      let t = nowMs();
      await pg.query('VACUUM ANALYZE accounts, checkouts, audit_events');
      const analyzeMs = nowMs() - t;
      log(`size ${size}: seeded (${Object.entries(took).map(([k, ms]) => `${k} ${(ms / 1000).toFixed(1)} s`).join(', ')}; VACUUM ANALYZE ${(analyzeMs / 1000).toFixed(1)} s)`);
      const info: SizeInfo = { size, again, seed: took, analyzeMs, walks: {}, busyPct: 0 };
      if (size <= VERIFY_UP_TO) {
        t = nowMs();
        const r = await c.get('/v1/audit-events/verify');
        info.verify = { ok: r.ok === true, count: r.count as number | undefined, ms: nowMs() - t };
        if (!info.verify.ok) throw new Error(`the seeded audit chain does not verify: ${JSON.stringify(r)}`);
      }
      const busy0 = machineBusySeconds();
      const wall0 = nowMs();
      for (const list of LISTS) {
        const rows = Number((await pg.query(`SELECT count(*)::bigint AS n FROM ${list.table}`)).rows[0].n);
        // follow nextCursor from page 1 up to page PAGE (or the last full page)
        const q = `?limit=${LIMIT}`;
        t = nowMs();
        let cursor: string | null = (await c.get(`${list.path}${q}`)).nextCursor as string | null;
        let page = 1;
        let next: string | null = cursor;
        while (page < PAGE && next) {
          const p = await c.get(`${list.path}${q}&cursor=${next}`);
          if ((p.items as unknown[]).length < LIMIT) break; // a short last page: measure the last full one
          cursor = next;
          next = p.nextCursor as string | null;
          page++;
        }
        const walkMs = nowMs() - t;
        if (!cursor || page < 2) throw new Error(`${list.name}: fewer than 2 full pages at ${rows} rows`);
        // the cursor of page `page` is the key of the last row of page `page - 1`
        const [{ k }] = (await pg.query(list.keyAtSql, [(page - 1) * LIMIT - 1])).rows as Array<{ k: string }>;
        const derivedMatches = encodeCursor([k]) === cursor;
        if (!derivedMatches) throw new Error(`${list.name}: the walked cursor of page ${page} is not the derived one`);
        info.walks[list.name] = { pages: page, ms: walkMs, derivedMatches };
        log(`size ${size} ${list.name}: ${rows} rows; walked to page ${page} in ${(walkMs / 1000).toFixed(1)} s; measuring…`);

        const deepPath = `${list.path}${q}&cursor=${cursor}`;
        const firstPath = `${list.path}${q}`;
        for (let i = 0; i < WARMUP; i++) {
          await c.get(firstPath);
          await c.get(deepPath);
        }
        // first and deep page requests alternate, so a busy spell on the machine falls on both alike
        const firstHttp: number[] = [];
        const deepHttp: number[] = [];
        for (let i = 0; i < SAMPLES; i++) {
          firstHttp.push(...(await timed(1, () => c.get(firstPath))));
          deepHttp.push(...(await timed(1, () => c.get(deepPath))));
        }
        const firstSql = await timed(SAMPLES, () => pg.query(list.firstSql));
        const deepSql = await timed(SAMPLES, () => pg.query(list.afterSql, [k]));
        const sort = (xs: number[]) => xs.sort((a, b) => a - b);
        results.push({ list: list.name, size, again, rows, page: 1, http: sort(firstHttp), sql: firstSql, plan: await planOf(pg, list.firstSql, []) });
        results.push({ list: list.name, size, again, rows, page, http: sort(deepHttp), sql: deepSql, plan: await planOf(pg, list.afterSql, [k]) });
      }
      info.busyPct = ((machineBusySeconds() - busy0) / (((nowMs() - wall0) / 1000) * cpus().length)) * 100;
      sizes.push(info);
    }
    process.stdout.write(report(results, sizes));
  } finally {
    client?.close();
    await pg.end().catch(() => undefined);
    await v.close().catch((e: unknown) => log(`vault close: ${(e as Error).message}`));
  }
}

// ---------------------------------------------------------------- report

function report(results: Measured[], sizes: SizeInfo[]): string {
  const main = table(
    ['list', 'size', 'rows', 'page', 'HTTP p50 ms', 'HTTP p99 ms', 'SQL p50 ms', 'SQL p99 ms', 'SQL plan (EXPLAIN ANALYZE, BUFFERS)'],
    results.map((r) => [
      r.list,
      `${r.size}${r.again ? ' again' : ''}`,
      String(r.rows),
      r.page === 1 ? 'first' : String(r.page),
      f(pct(r.http, 0.5), 2),
      f(pct(r.http, 0.99), 2),
      f(pct(r.sql, 0.5), 3),
      f(pct(r.sql, 0.99), 3),
      r.plan,
    ]),
  );
  const seeding = table(
    ['size', 'accounts s', 'checkouts s', 'audit_events s', 'VACUUM ANALYZE s', 'audit verify', 'walks (pages, s)', 'machine busy %'],
    sizes.map((s) => [
      `${s.size}${s.again ? ' again' : ''}`,
      f(s.seed.accounts / 1000, 1),
      f(s.seed.checkouts / 1000, 1),
      f(s.seed.audit_events / 1000, 1),
      f(s.analyzeMs / 1000, 1),
      s.verify ? `${s.verify.ok ? 'ok' : 'FAILED'} ${s.verify.count} events, ${f(s.verify.ms / 1000, 1)} s` : 'not run',
      Object.entries(s.walks).map(([k, w]) => `${k} ${w.pages} ${f(w.ms / 1000, 1)}`).join('; '),
      f(s.busyPct, 0),
    ]),
  );
  const lo = SIZES[0];
  const hi = SIZES[SIZES.length - 1];
  const aims = LISTS.map((list) => {
    const parts = ['first', 'deep'].map((which) => {
      const runs = (size: number) => results.filter((r) => r.list === list.name && r.size === size && (which === 'first' ? r.page === 1 : r.page !== 1));
      const small = runs(lo).filter((r) => !r.again || hi !== lo);
      const big = runs(hi).find((r) => !r.again);
      if (!small.length || !big) return { met: false, text: `${which}: not measured` };
      // the smallest size's p50 over the samples of both its runs (before and after the larger sizes)
      const smallP50 = pct(small.flatMap((r) => r.http).sort((a, b) => a - b), 0.5);
      const ratio = pct(big.http, 0.5) / smallP50;
      const each = small.length > 1 ? ` = runs ${small.map((r) => f(pct(r.http, 0.5), 2)).join(' and ')}` : '';
      return { met: ratio <= 2, text: `${which} page ${f(ratio, 2)}× (${f(pct(big.http, 0.5), 2)} vs ${f(smallP50, 2)} ms${each})` };
    });
    return `  ${list.path}: p50 at ${hi} ≤ 2× p50 at ${lo}: ${parts.map((p) => p.text).join(', ')} → ${parts.every((p) => p.met) ? 'met' : 'NOT met'}`;
  });
  return [
    `list endpoints through the vault's HTTP API (one keep-alive socket, bootstrap admin), ?limit=${LIMIT}, ${SAMPLES} samples per row after ${WARMUP} warm-up requests;`,
    `"page" = the first page or the deep keyset page reached by following nextCursor (the ${PAGE}th, or the last full page when the table has fewer);`,
    `SQL = the list's keyset statement alone on a plain pg connection; its plan's scan node and shared buffers touched (hit + read) do not depend on`,
    `how busy the machine is. Latencies in ms. Rows seeded with SQL (audit events with real MACs and chain links).`,
    '',
    main,
    '',
    'seeding, walks and verify:',
    seeding,
    '',
    'aims (the issue\'s):',
    ...aims,
    `(process maxRSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB; figures are noisy on a shared 2-core machine)`,
    '',
  ].join('\n');
}

runMain(module, main);

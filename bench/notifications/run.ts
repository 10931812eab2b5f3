/**
 * bench/notifications: what notifications cost a checkout request, and how soon they arrive, in one run.
 *
 *   npx ts-node --transpile-only bench/notifications/run.ts [--n 400] [--c 16] [--rounds 3] [--warmup 200] [--users 0] [--no-none]
 *                                                          [--events 1000] [--lag-c 4] [--lag-rate 10] [--what-if pooled-smtp]
 *
 * Vault: the real application (startTestVault: a fresh database on the machine's PostgreSQL, 127.0.0.1:5432) on a real
 * HTTP port, driven over keep-alive HTTP from this process, with VAULT_SMTP_* pointing at the test SMTP server
 * (test/support/smtp-server.ts: the `smtp-server` package in its own process, STARTTLS and AUTH required; with
 * `headersOnly` that process reads the Message-ID and delivery id itself and this one parses no mail — the receiving
 * side's work is a real SMTP server's, not the vault's, and must not run in the vault's process), three
 * approvers with e-mail addresses (set by the admin through PATCH /v1/users/:id), and accounts whose policy wants one
 * approval. One cycle =
 *   POST /v1/checkouts {accountId, justification}  with X-MFA-Code (201 pending_approval: the outbox holds an
 *                                                   `approval.requested` event and one e-mail per approver)
 *   POST /v1/checkouts/:id/checkin                  (200 returned: the requester withdraws the request)
 * Each worker has its own account on one target that is never contacted (a withdrawn request touches no target), so
 * the cycle is the request path the issue says must not slow down: the outbox rows written in the request's
 * transaction, and the deliverer's work (claim, render, an SMTP session per message, mark sent) competing with it for
 * the same CPU and database. MFA codes are real TOTP codes of many operators (bench/checkout's CodeBook).
 *
 * Throughput, one vault, rounds interleaved (off, on, none, then reversed, … so drift hits every mode alike), `--n`
 * cycles each at `--c`:
 * - on:   VAULT_SMTP_* set: every request writes its event and 3 pending deliveries, which the deliverer sends;
 * - off:  as without VAULT_SMTP_HOST (the SMTP configuration is taken away in this process): the request still writes
 *         the event and its deliveries, recorded `no_address`, and nothing is sent — notifications not configured;
 * - none: `tx.notify` does nothing (the outbox stubbed in this process): no outbox rows at all, the vault before
 *         notifications, to show what the outbox insert itself costs (skip with --no-none).
 * A round ends when its cycles are answered; an `on` round then waits until the deliverer has sent what is left, and
 * that drain is printed (e-mails left, seconds, and the throughput counting it). The aim (the issue's): on ≥ 0.9× off.
 *
 * Delivery lag: `--events` more requests in the `on` mode from `--lag-c` workers, started at a steady `--lag-rate`
 * requests/s (0: as fast as they are answered), each one event → 3 e-mails. Lag = from the request's commit (the unit
 * of work's after-commit hook, where the deliverer is nudged) to the SMTP server having the whole message (the time its
 * process read the end of DATA). p50/p90/p99/max per e-mail and per event (its last e-mail). Every message is checked
 * by Message-ID (= the delivery id): each delivery arrived, and exactly once.
 *
 * `--what-if pooled-smtp` runs the same with the e-mail sender's connections pooled in this process (see
 * poolSmtpConnections): what reusing SMTP sessions would change, printed as such.
 */
import { randomBytes } from 'node:crypto';
import { cpus } from 'node:os';
import type { Role } from '../../src/common/actor';
import { APP_CONFIG, AppConfig } from '../../src/config/config';
import type { Tx } from '../../src/database/unit-of-work';
import { NotificationOutbox } from '../../src/notifications/outbox';
import { createFakeTarget } from '../../test/support/fake-target';
import { actingAs } from '../../test/support/http';
import { SmtpServer, startSmtpServer } from '../../test/support/smtp-server';
import { startTestVault, TestUser, TestVault } from '../../test/support/vault';
import { CodeBook, httpClient, pct } from '../checkout/run';
import { arg, runMain } from '../cli';
import { machineBusySeconds } from '../machine';

const N = Number(arg('n', '400'));
const C = Number(arg('c', '16'));
const ROUNDS = Number(arg('rounds', '3'));
const EVENTS = Number(arg('events', '1000'));
const LAG_C = Number(arg('lag-c', '4'));
const LAG_RATE = Number(arg('lag-rate', '10'));
const USERS = Number(arg('users', '0')) || Math.max(64, 2 * Math.max(C, LAG_C));
const WARMUP = Number(arg('warmup', '200'));
const WITH_NONE = !process.argv.includes('--no-none');
/** What-if, this process only: the e-mail sender's connections come from one pooled transport (reused, STARTTLS + AUTH once per connection). */
const POOLED_SMTP = arg('what-if', '') === 'pooled-smtp';
const APPROVERS = 3;
const STEP_MS = 30_000;

if (![N, C, ROUNDS, LAG_C].every((x) => Number.isInteger(x) && x > 0) || !(EVENTS >= 0) || !(LAG_RATE >= 0)) throw new Error('--n, --c, --rounds and --lag-c must be positive integers');

type Mode = 'on' | 'off' | 'none';

const nowMs = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (s: string) => process.stderr.write(`${s}\n`);

// ---------------------------------------------------------------- the bench vault

interface Bench {
  vault: TestVault;
  smtp: SmtpServer;
  port: number;
  accounts: string[];
  book: CodeBook;
  approvers: TestUser[];
  /** after-commit time of each event this process wrote (ms since the epoch) */
  committed: Map<string, number>;
  setMode(mode: Mode): void;
  close(): Promise<void>;
}

async function startBench(accountCount: number, userCount: number): Promise<Bench> {
  if (POOLED_SMTP) poolSmtpConnections();
  // the test SMTP server's own process reads the headers; this one (the vault's) parses nothing
  const smtp = await startSmtpServer({ headersOnly: true });
  let vault: TestVault | undefined;
  const close = async () => {
    await vault?.close().catch((e: unknown) => log(`vault close: ${(e as Error).message}`));
    await smtp.stop().catch(() => undefined);
  };
  try {
    vault = await startTestVault({
      env: {
        ...smtp.env,
        VAULT_PUBLIC_URL: 'https://vault.bench.test',
        VAULT_ROTATION_SWEEP_MS: '3600000',
        VAULT_CHECKOUT_SWEEP_MS: '3600000',
        VAULT_EPHEMERAL_SWEEP_MS: '3600000',
        VAULT_TOKEN_TTL_SECONDS: '86400',
      },
    });
    const v = vault;
    await v.app.listen(0, '127.0.0.1');
    const port = (v.app.getHttpServer().address() as { port: number }).port;
    const admin = await v.admin();
    const as = actingAs(v, admin);

    const targetId = await createFakeTarget(v, 'postgres', 'bench-notify-target');
    const accounts: string[] = [];
    for (let i = 0; i < accountCount; i++) {
      const res = await as.post('/v1/accounts', { targetId, username: `bn_${i}`, password: `Bench-${randomBytes(12).toString('hex')}`, policy: { approvalsRequired: 1, rotateAfterCheckin: false } }, true);
      if (res.status !== 201) throw new Error(`POST /v1/accounts → ${res.status} ${JSON.stringify(res.body)}`);
      accounts.push(res.body.id as string);
    }
    const approvers: TestUser[] = [];
    for (let i = 0; i < APPROVERS; i++) approvers.push(await createUserWithEmail(v, admin, ['approver'], `approver${i}@bench.test`));

    log(`seeding ${userCount} operators (argon2 + login + TOTP enrollment each)…`);
    const users: ConstructorParameters<typeof CodeBook>[1] = [];
    for (let i = 0; i < userCount; i++) {
      const u = await v.createUser(['operator']);
      users.push({ auth: u.auth, secret: u.secret, lastStep: -1, busy: false });
    }
    v.clock.advance(STEP_MS); // enrollment burned a step for every user

    // the commit time of every event, and the switch between the modes
    const config = v.get<AppConfig>(APP_CONFIG);
    const smtpConfig = config.smtp;
    let mode: Mode = 'on';
    const committed = new Map<string, number>();
    const outbox = v.get(NotificationOutbox);
    const join = outbox.join.bind(outbox);
    outbox.join = (tx: Tx) => {
      join(tx);
      const notify = tx.notify;
      tx.notify = async (input) => {
        if (mode === 'none') return 'none';
        const id = await notify(input);
        tx.afterCommit(() => committed.set(id, nowMs()));
        return id;
      };
    };
    const setMode = (m: Mode) => {
      mode = m;
      (config as { smtp?: AppConfig['smtp'] }).smtp = m === 'on' ? smtpConfig : undefined;
    };
    return { vault: v, smtp, port, accounts, book: new CodeBook(v, users), approvers, committed, setMode, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/**
 * `--what-if pooled-smtp`: every `createTransport` the e-mail sender calls answers one shared pooled transport (up to
 * 8 connections, each kept open and reused: the server's greeting, STARTTLS and AUTH once per connection instead of
 * once per message), and its `close` is a no-op. Not what the vault does; what it would gain.
 */
function poolSmtpConnections(): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const nodemailer = require('nodemailer') as { createTransport: (o: object) => { close(): void } };
  const real = nodemailer.createTransport.bind(nodemailer);
  let shared: { close(): void } | undefined;
  nodemailer.createTransport = (o: object) => {
    shared ??= Object.assign(real({ ...o, pool: true, maxConnections: 8, maxMessages: Infinity }), { close: () => undefined });
    return shared;
  };
}

/** A user with an e-mail address, set by the admin through the API. */
async function createUserWithEmail(v: TestVault, admin: TestUser, roles: Role[], email: string): Promise<TestUser> {
  const u = await v.createUser(roles);
  const res = await actingAs(v, admin).patch(`/v1/users/${u.id}`, { email }, true);
  if (res.status !== 200) throw new Error(`PATCH /v1/users/:id {email} → ${res.status} ${JSON.stringify(res.body)}`);
  return u;
}

// ---------------------------------------------------------------- one round

interface Round {
  mode: Mode;
  seconds: number;
  cyclesPerSec: number;
  request: number[];
  cycle: number[];
  /** CPU ms of this process (vault + client + deliverer) per cycle while the round ran */
  cpuMsPerCycle: number;
  /** the whole machine's CPU ms per cycle (this process, PostgreSQL, the SMTP server, the kernel) while the round ran */
  machineMsPerCycle: number;
  /** `on`: deliveries still pending when the last cycle was answered */
  backlog: number;
  /** `on`: seconds from the last answer until the outbox had nothing pending */
  drainSeconds: number;
}

/**
 * `n` cycles from `c` workers; `rate` > 0: the k-th request starts no earlier than k/rate seconds after the first
 * (a steady arrival rate instead of as fast as the vault answers).
 */
async function round(b: Bench, mode: Mode, c: number, n: number, rate = 0): Promise<Round> {
  b.setMode(mode);
  const client = httpClient(b.port, c);
  const request: number[] = [];
  const cycle: number[] = [];
  const cpu0 = process.cpuUsage();
  const busy0 = machineBusySeconds();
  const start = nowMs();
  let started = 0;
  try {
    await Promise.all(
      Array.from({ length: c }, async (_, w) => {
        const accountId = b.accounts[w];
        while (started < n) {
          const k = started++;
          if (rate > 0) await sleep(start + (k * 1000) / rate - nowMs());
          const { user, code } = await b.book.acquire();
          const t0 = nowMs();
          let out: Record<string, unknown>;
          try {
            out = await client.post('/v1/checkouts', { Authorization: user.auth, 'X-MFA-Code': code }, { accountId, justification: 'bench: notifications' }, 201);
          } finally {
            b.book.release(user);
          }
          const t1 = nowMs();
          if (out.status !== 'pending_approval') throw new Error(`POST /v1/checkouts answered ${JSON.stringify(out.status)}, not pending_approval`);
          const back = await client.post(`/v1/checkouts/${String(out.id)}/checkin`, { Authorization: user.auth }, undefined, 200);
          const t2 = nowMs();
          if (back.status !== 'returned') throw new Error(`withdrawal answered ${JSON.stringify(back.status)}`);
          request.push(t1 - t0);
          cycle.push(t2 - t0);
        }
      }),
    );
  } finally {
    client.close();
  }
  const end = nowMs();
  const cpu = process.cpuUsage(cpu0);
  const machine = machineBusySeconds() - busy0;
  const seconds = (end - start) / 1000;
  let backlog = 0;
  let drainSeconds = 0;
  if (mode === 'on') {
    backlog = await pending(b);
    while ((await pending(b)) > 0) await sleep(20);
    drainSeconds = (nowMs() - end) / 1000;
  }
  const sort = (xs: number[]) => xs.sort((x, y) => x - y);
  return { mode, seconds, cyclesPerSec: n / seconds, request: sort(request), cycle: sort(cycle), cpuMsPerCycle: (cpu.user + cpu.system) / 1000 / n, machineMsPerCycle: (machine * 1000) / n, backlog, drainSeconds };
}

async function pending(b: Bench): Promise<number> {
  const [row] = await b.vault.db.query<{ n: number }>("SELECT count(*)::int AS n FROM notification_deliveries WHERE status = 'pending'");
  return row.n;
}

// ---------------------------------------------------------------- delivery lag

interface Lag {
  rate: number;
  events: number;
  mails: number;
  /** from the first request until the last e-mail arrived */
  seconds: number;
  perMail: number[];
  perEvent: number[];
  duplicates: number;
  missing: number;
}

async function lagRun(b: Bench, c: number, n: number, rate: number): Promise<Lag> {
  b.committed.clear();
  const seen = b.smtp.messages.length;
  const start = nowMs();
  await round(b, 'on', c, n, rate);
  // every e-mail delivery of these events, by id; each must arrive exactly once
  const eventIds = [...b.committed.keys()];
  const rows = await b.vault.db.query<{ id: string; event_id: string }>("SELECT id, event_id FROM notification_deliveries WHERE event_id = ANY ($1::uuid[]) AND channel_kind = 'email'", [eventIds]);
  const eventOf = new Map(rows.map((r) => [r.id, r.event_id]));
  const arrived = () => new Set(b.smtp.messages.slice(seen).map((m) => m.deliveryId).filter((id) => id !== undefined && eventOf.has(id))).size;
  for (const deadline = nowMs() + 60_000; arrived() < rows.length && nowMs() < deadline; ) await sleep(50);
  const seconds = (nowMs() - start) / 1000;
  await sleep(500); // a late duplicate would show
  const arrivals = new Map<string, number[]>();
  for (const m of b.smtp.messages.slice(seen)) {
    const id = m.deliveryId;
    if (id === undefined || !eventOf.has(id)) continue;
    if (m.messageId !== `${id}@vault`) throw new Error(`message ${m.seq}: Message-ID ${m.messageId} is not its delivery id ${id}`);
    arrivals.set(id, [...(arrivals.get(id) ?? []), m.receivedAt]);
  }
  const perMail: number[] = [];
  const lastOfEvent = new Map<string, number>();
  let duplicates = 0;
  let missing = 0;
  for (const [id, eventId] of eventOf) {
    const at = arrivals.get(id);
    if (!at) {
      missing++;
      continue;
    }
    duplicates += at.length - 1;
    const lag = Math.min(...at) - (b.committed.get(eventId) as number);
    perMail.push(lag);
    lastOfEvent.set(eventId, Math.max(lastOfEvent.get(eventId) ?? -Infinity, lag));
  }
  const sort = (xs: number[]) => xs.sort((x, y) => x - y);
  return { rate, events: eventIds.length, mails: rows.length, seconds, perMail: sort(perMail), perEvent: sort([...lastOfEvent.values()]), duplicates, missing };
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const b = await startBench(Math.max(C, LAG_C), USERS);
  try {
    if (WARMUP > 0) {
      // at the measured concurrency, each mode: the first rounds of a run were slower in every mode without it
      log(`warm-up: ${WARMUP} cycles in each mode at c=${C}…`);
      for (const m of WITH_NONE ? (['off', 'on', 'none'] as const) : (['off', 'on'] as const)) await round(b, m, C, WARMUP);
    }
    const modes: Mode[] = WITH_NONE ? ['off', 'on', 'none'] : ['off', 'on'];
    const rounds: Round[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      for (const m of r % 2 === 0 ? modes : [...modes].reverse()) {
        log(`round ${r + 1}/${ROUNDS} ${m}: ${N} cycles at c=${C}…`);
        const res = await round(b, m, C, N);
        log(`  ${res.cyclesPerSec.toFixed(1)} cycles/s, request p50 ${pct(res.request, 0.5).toFixed(1)} ms p99 ${pct(res.request, 0.99).toFixed(1)} ms${m === 'on' ? `, ${res.backlog} left to send, drained in ${res.drainSeconds.toFixed(2)} s` : ''}`);
        rounds.push(res);
      }
    }
    let lag: Lag | undefined;
    if (EVENTS > 0) {
      log(`delivery lag: ${EVENTS} requests (each ${APPROVERS} e-mails) at c=${LAG_C}${LAG_RATE > 0 ? `, ${LAG_RATE} requests/s` : ', as fast as they are answered'}…`);
      lag = await lagRun(b, LAG_C, EVENTS, LAG_RATE);
    }
    const [totals] = await b.vault.db.query<{ sent: number; failed: number; pending: number }>(
      "SELECT count(*) FILTER (WHERE status = 'sent')::int AS sent, count(*) FILTER (WHERE status = 'failed')::int AS failed, count(*) FILTER (WHERE status = 'pending')::int AS pending FROM notification_deliveries",
    );
    process.stdout.write(report(rounds, lag, totals));
    const k = b.smtp.counters;
    process.stdout.write(`SMTP sessions the server saw: ${k.connections} connections, ${k.secured} TLS upgrades, ${k.authOk} logins, ${k.mailFrom} MAIL commands\n`);
  } finally {
    await b.close();
  }
}

function report(rounds: Round[], lag: Lag | undefined, totals: { sent: number; failed: number; pending: number }): string {
  const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');
  const table = (head: string[], body: string[][]) => {
    const w = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
    const line = (cells: string[]) => cells.map((s, i) => s.padStart(w[i])).join(' | ');
    return [line(head), w.map((x) => '-'.repeat(x)).join('-|-'), ...body.map(line)].join('\n');
  };
  const modeList: Mode[] = WITH_NONE ? ['off', 'on', 'none'] : ['off', 'on'];
  const by = (m: Mode) => rounds.filter((r) => r.mode === m);
  /** cycles/s over every round of a mode together (total cycles / total seconds) */
  const rate = (rs: Round[], drain = false) => (rs.length ? (rs.length * N) / rs.reduce((s, r) => s + r.seconds + (drain ? r.drainSeconds : 0), 0) : NaN);
  const all = (rs: Round[], k: 'request' | 'cycle') => rs.flatMap((r) => r[k]).sort((x, y) => x - y);
  const cpu = (rs: Round[]) => rs.reduce((s, r) => s + r.cpuMsPerCycle, 0) / rs.length;
  const machine = (rs: Round[]) => rs.reduce((s, r) => s + r.machineMsPerCycle, 0) / rs.length;
  /** how busy the machine was while a mode's rounds ran, in % of one core (200% = both of 2 cores) */
  const busy = (rs: Round[]) => (100 * rs.reduce((s, r) => s + (r.machineMsPerCycle * N) / 1000, 0)) / rs.reduce((s, r) => s + r.seconds, 0);
  const ons = by('on');
  const sent = ons.reduce((s, r) => s + r.backlog, 0);
  const drained = ons.reduce((s, r) => s + r.drainSeconds, 0);
  const on = rate(ons);
  const off = rate(by('off'));
  const ratio = on / off;
  const lines = [
    ...(POOLED_SMTP ? ['WHAT-IF pooled-smtp: the e-mail sender reuses pooled SMTP connections in this run (not what the vault does).'] : []),
    `checkout requests with an approval policy (1 approval; ${APPROVERS} approvers with e-mail addresses), withdrawn again: ${N} cycles per round at c=${C}, ${ROUNDS} round(s) per mode, interleaved.`,
    `One cycle = POST /v1/checkouts (MFA, 201 pending_approval) + POST /v1/checkouts/:id/checkin (200 returned). SMTP server: the smtp-server package in its own process, STARTTLS + AUTH.`,
    `on = VAULT_SMTP_* set, ${APPROVERS} e-mails per request, sent by the deliverer in the vault's process; off = no SMTP server configured (deliveries recorded no_address, nothing sent);`,
    `none = tx.notify a no-op (no outbox rows at all). Latencies in ms; CPU = this process (vault + HTTP client) per cycle. "left" = deliveries still pending when the round's last`,
    `cycle was answered, "drain s" = seconds until none was.`,
    '',
    table(
      ['round', 'mode', 'cycles/s', 'request p50', 'request p99', 'cycle p50', 'cycle p99', 'CPU ms', 'left', 'drain s'],
      rounds.map((r, i) => [String(i + 1), r.mode, f(r.cyclesPerSec), f(pct(r.request, 0.5)), f(pct(r.request, 0.99)), f(pct(r.cycle, 0.5)), f(pct(r.cycle, 0.99)), f(r.cpuMsPerCycle, 2), r.mode === 'on' ? String(r.backlog) : '-', r.mode === 'on' ? f(r.drainSeconds, 2) : '-']),
    ),
    '',
    table(
      ['mode', 'cycles/s', 'vs off', 'request p50', 'request p99', 'CPU ms/cycle', 'machine CPU ms/cycle', 'machine busy', 'cycles/s incl. drain'],
      modeList.map((m) => [
        m,
        f(rate(by(m))),
        f(rate(by(m)) / off, 3),
        f(pct(all(by(m), 'request'), 0.5)),
        f(pct(all(by(m), 'request'), 0.99)),
        f(cpu(by(m)), 2),
        f(machine(by(m)), 2),
        `${f(busy(by(m)), 0)}% of ${cpus().length * 100}%`,
        m === 'on' ? f(rate(by(m), true)) : '-',
      ]),
    ),
    '',
    `aim: checkout throughput with notifications on ≥ 0.9× off, same run: ${f(ratio, 3)}× → ${ratio >= 0.9 ? 'MET' : 'NOT MET'}`,
    `     counting the time to send what the round left (on incl. drain / off): ${f(rate(ons, true) / off, 3)}×; the deliverer alone sent ${sent} e-mails in ${f(drained, 2)} s after the rounds (${f(sent / drained, 1)} e-mails/s)`,
  ];
  if (lag) {
    lines.push(
      '',
      `delivery lag: ${lag.events} events (${lag.mails} e-mails) from ${lag.events} requests at c=${LAG_C}, ${lag.rate > 0 ? `${lag.rate} requests/s` : 'as fast as answered'}; first request to last e-mail ${f(lag.seconds, 1)} s`,
      `(${f(lag.mails / lag.seconds, 1)} e-mails/s). Lag = the request's commit (the unit of work's after-commit hook) → the SMTP server has the whole message (its clock, same machine).`,
      `${lag.missing} missing, ${lag.duplicates} duplicates (by Message-ID = delivery id).`,
      table(
        ['', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms'],
        [
          ['per e-mail', f(pct(lag.perMail, 0.5)), f(pct(lag.perMail, 0.9)), f(pct(lag.perMail, 0.99)), f(lag.perMail[lag.perMail.length - 1])],
          ['per event (its last e-mail)', f(pct(lag.perEvent, 0.5)), f(pct(lag.perEvent, 0.9)), f(pct(lag.perEvent, 0.99)), f(lag.perEvent[lag.perEvent.length - 1])],
        ],
      ),
    );
  }
  lines.push('', `deliveries in the vault database: ${totals.sent} sent, ${totals.pending} pending, ${totals.failed} failed. Figures are noisy on a shared 2-core machine.`, '');
  return lines.join('\n');
}

runMain(module, main);


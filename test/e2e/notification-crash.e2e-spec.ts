import { randomBytes, randomUUID } from 'node:crypto';
import request, { Response } from 'supertest';
import { UnitOfWork } from '../../src/database/unit-of-work';
import { NotificationDeliverer } from '../../src/notifications/deliverer';
import { verifyVaultSignature } from '../../src/notifications/senders/webhook.sender';
import { createTestDatabase, TestDatabase } from '../support/db';
import { createFakeTarget } from '../support/fake-target';
import { actingAs } from '../support/http';
import { builtVaultEnv, freePort, requireBuild, spawnVault, VaultProcess, waitReady } from '../support/process';
import { secretSentinel } from '../support/secret-sentinel';
import { SmtpServer, startSmtpServer } from '../support/smtp-server';
import { base32Decode, hotp } from '../support/totp';
import { ADMIN_PASSWORD, startTestVault, TEST_ENV, TestVault } from '../support/vault';
import { startWebhookReceiver, WebhookReceiver } from '../support/webhook-receiver';

/**
 * INVARIANT 22, the hard way: the built vault runs as a child process against a real SMTP server (its own process:
 * STARTTLS, AUTH) and a real HTTP receiver, and notifications must survive what a process can suffer.
 *
 * - Killed (SIGKILL, VAULT_CRASH_POINT) after the change committed and before the send, or after the send and before
 *   it was recorded: a fresh process delivers every delivery of every committed event (those the dead one had
 *   claimed once its claim lapses); before-send never duplicates, after-send duplicates only with the same
 *   Message-ID / Idempotency-Key; the delivery log says `sent` for each.
 * - Two processes on one database each deliver each delivery exactly once in the normal case, never zero times.
 * - An SMTP server that hangs, or is gone, never slows a checkout request: the request path only inserts.
 *
 * The events come from the real flow: checkout requests with an approval policy, through the processes' HTTP ports
 * with real-time TOTP codes, each telling the three approvers (by e-mail) and a webhook channel. The set-up (users,
 * addresses, channel, route, target, accounts: admin step-up actions) runs in an in-process vault on the test clock
 * first; that vault stays up to write a burst of events for the two-instance case, its own deliverer silenced so that
 * only the processes deliver.
 */
const STEP_MS = 30_000;
const APPROVERS = 3;
const PUBLIC_URL = 'https://vault.example.test';

/** Answers the body, failing with the status and body when the status is not the one expected. */
function expectStatus(res: Response, status: number) {
  expect({ status: res.status, body: res.body }).toMatchObject({ status });
  return res.body;
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const start = Date.now();
  while (Date.now() - start < timeoutMs) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** An operator signed in through a vault process, with real-time codes: each step once, at most one step ahead. */
interface Operator {
  auth: string;
  code(): Promise<string>;
}

describe('notifications: crash, two instances, a slow SMTP server (built vault, real SMTP server and webhook receiver)', () => {
  let db: TestDatabase;
  let smtp: SmtpServer;
  let hook: WebhookReceiver;
  let setup: TestVault;
  const masterKey = randomBytes(32);
  const hookSecret = `whsec-${randomBytes(16).toString('hex')}`;
  const procs: VaultProcess[] = [];
  const approverEmails: string[] = [];
  let adminAuth = '';
  /** Accounts whose policy wants one approval, each used by one request. */
  const accounts: string[] = [];
  /** Operators created by the set-up, not enrolled: each signs in through a process once. */
  const pool: Array<{ username: string; password: string }> = [];

  const start = async (extra: Record<string, string> = {}): Promise<{ proc: VaultProcess; port: number }> => {
    const port = await freePort();
    const proc = spawnVault({
      ...builtVaultEnv({ databaseUrl: db.url, masterKey, port, adminPassword: ADMIN_PASSWORD, argon2: { memoryKib: TEST_ENV.VAULT_ARGON2_MEMORY_KIB, timeCost: TEST_ENV.VAULT_ARGON2_TIME_COST } }),
      VAULT_ROTATION_SWEEP_MS: '3600000',
      VAULT_CHECKOUT_SWEEP_MS: '3600000',
      VAULT_EPHEMERAL_SWEEP_MS: '3600000',
      VAULT_NOTIFY_SWEEP_MS: '250',
      VAULT_PUBLIC_URL: PUBLIC_URL,
      VAULT_NOTIFY_ALLOWED_HOSTS: TEST_ENV.VAULT_NOTIFY_ALLOWED_HOSTS,
      ...smtp.env,
      ...extra,
    });
    procs.push(proc);
    await waitReady(port, proc, 30_000);
    return { proc, port };
  };
  const stop = async (proc: VaultProcess) => {
    if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill('SIGTERM');
    await proc.exited;
  };

  /** Signs one of the set-up's operators in through the process on `port` (enrolling TOTP with real-time codes). */
  const signIn = async (port: number): Promise<Operator> => {
    const made = pool.shift();
    if (!made) throw new Error('the set-up made too few operators');
    const http = () => request(`http://127.0.0.1:${port}`);
    const first = expectStatus(await http().post('/v1/auth/login').send(made), 200);
    const { secret } = expectStatus(await http().post('/v1/me/mfa/totp').set('Authorization', `Bearer ${first.accessToken}`), 200);
    let last = 0;
    const code = async () => {
      const step = Math.max(last + 1, Math.floor(Date.now() / STEP_MS));
      const wait = (step - 1) * STEP_MS - Date.now(); // the vault accepts the next step too
      if (wait > 0) await new Promise((r) => setTimeout(r, wait + 100));
      last = step;
      return hotp(base32Decode(secret as string), step);
    };
    const confirmed = expectStatus(await http().post('/v1/me/mfa/totp/confirm').set('Authorization', `Bearer ${first.accessToken}`).send({ code: await code() }), 200);
    // what a process handed out is a secret too: the scan looks for it in every message and webhook body
    const sentinel = secretSentinel();
    sentinel?.secret(secret as string, 'TOTP seed from a vault process');
    sentinel?.secret(first.accessToken as string, 'access token from a vault process');
    sentinel?.secret(confirmed.accessToken as string, 'access token from a vault process');
    sentinel?.persist();
    return { auth: `Bearer ${confirmed.accessToken}`, code };
  };

  /** A checkout request of the next free account through the process on `port`: its id, or null if it never answered. */
  const requestCheckout = async (port: number, op: Operator): Promise<{ id: string | null; ms: number; outcome: string }> => {
    const accountId = accounts.shift();
    if (!accountId) throw new Error('the set-up made too few accounts');
    const code = await op.code();
    const t0 = Date.now();
    const res = await request(`http://127.0.0.1:${port}`)
      .post('/v1/checkouts')
      .set('Authorization', op.auth)
      .set('X-MFA-Code', code)
      .send({ accountId, justification: 'disk full on the primary' })
      .then(
        (r) => ({ r }),
        (e: Error & { code?: string }) => ({ failed: `${e.code ?? ''} ${e.message}` }), // the process died under it
      );
    const ms = Date.now() - t0;
    if ('failed' in res) return { id: null, ms, outcome: `failed: ${res.failed}` };
    expect({ status: res.r.status, body: res.r.body }).toMatchObject({ status: 201, body: { status: 'pending_approval' } });
    return { id: res.r.body.id as string, ms, outcome: 'answered 201' };
  };

  type Delivery = { id: string; event_id: string; channel_kind: string; recipient: string; status: string; attempts: number; last_error: string | null; claimed_by: string | null };
  const deliveriesOf = (eventIds: string[]) =>
    db.query<Delivery>('SELECT id, event_id, channel_kind, recipient, status, attempts, last_error, claimed_by FROM notification_deliveries WHERE event_id = ANY ($1::uuid[]) ORDER BY seq', [eventIds]);
  /** The approval.requested events of checkouts committed on these accounts. */
  const eventsOfAccounts = async (accountIds: string[]) =>
    db.query<{ id: string; subject_id: string }>(
      "SELECT e.id, e.subject_id FROM notification_events e JOIN checkouts c ON c.id::text = e.subject_id WHERE e.type = 'approval.requested' AND c.account_id = ANY ($1::uuid[])",
      [accountIds],
    );

  /** How many times each delivery id arrived: at the SMTP server (by Message-ID) and at the webhook receiver (by Idempotency-Key). */
  const arrivals = (ids: Set<string>) => {
    const count = new Map<string, number>();
    for (const m of smtp.messages) {
      const id = m.messageId?.replace(/@vault$/, '');
      if (!id || !ids.has(id)) continue;
      expect(m.deliveryId).toBe(id); // X-Vault-Delivery and Message-ID carry the same key
      count.set(id, (count.get(id) ?? 0) + 1);
    }
    for (const r of hook.requests) {
      const id = r.headers['idempotency-key'] as string | undefined;
      if (!id || !ids.has(id)) continue;
      expect(r.headers['x-vault-delivery']).toBe(id);
      expect(verifyVaultSignature(hookSecret, r.headers['x-vault-signature'] as string, r.rawBody)).toBe(true);
      expect((r.json as { id: string }).id).toBe(id);
      count.set(id, (count.get(id) ?? 0) + 1);
    }
    return count;
  };

  /** The delivery log as an administrator reads it through a process. */
  const deliveryLog = async (port: number, eventIds: Set<string>) => {
    const out: Array<{ id: string; status: string; eventId: string; attempts: number; lastError: string | null }> = [];
    let cursor: string | null = null;
    do {
      const page: { items: typeof out; nextCursor: string | null } = expectStatus(
        await request(`http://127.0.0.1:${port}`)
          .get('/v1/notifications')
          .query({ eventType: 'approval.requested', limit: 100, ...(cursor ? { cursor } : {}) })
          .set('Authorization', adminAuth),
        200,
      );
      out.push(...page.items.filter((d) => eventIds.has(d.eventId)));
      cursor = page.nextCursor;
    } while (cursor);
    return out;
  };

  beforeAll(async () => {
    requireBuild();
    db = await createTestDatabase();
    smtp = await startSmtpServer();
    hook = await startWebhookReceiver();
    // the set-up vault writes with the SMTP server configured (people's e-mail is `pending`, not `no_address`), but
    // never delivers: the processes do
    setup = await startTestVault({
      db,
      masterKey,
      env: { ...smtp.env, VAULT_PUBLIC_URL: PUBLIC_URL, VAULT_NOTIFY_SWEEP_MS: '3600000', VAULT_ROTATION_SWEEP_MS: '3600000', VAULT_CHECKOUT_SWEEP_MS: '3600000', VAULT_EPHEMERAL_SWEEP_MS: '3600000' },
    });
    setup.get(NotificationDeliverer).nudge = () => undefined;
    const admin = await setup.admin();
    adminAuth = admin.auth;
    const as = actingAs(setup, admin);
    for (let i = 0; i < APPROVERS; i++) {
      const approver = await setup.createUser(['approver'], { enroll: false });
      const email = `approver${i}-${randomBytes(3).toString('hex')}@example.test`;
      expectStatus(await as.patch(`/v1/users/${approver.id}`, { email }, true), 200);
      approverEmails.push(email);
    }
    for (let i = 0; i < 16; i++) {
      const u = await setup.createUser(['operator'], { enroll: false });
      pool.push({ username: u.username, password: u.password });
    }
    const channel = expectStatus(await as.post('/v1/notification-channels', { name: 'incident-hook', kind: 'webhook', config: { url: hook.url('/vault') }, secret: hookSecret }, true), 201);
    expectStatus(await as.post('/v1/notification-routes', { channelId: channel.id, eventTypes: ['approval.requested'] }, true), 201);
    const targetId = await createFakeTarget(setup, 'postgres', 'notify-crash-target'); // never contacted: requests touch no target
    for (let i = 0; i < 16; i++) {
      const created = expectStatus(await as.post('/v1/accounts', { targetId, username: `nc_${i}`, password: `Pw-${randomBytes(10).toString('hex')}`, policy: { approvalsRequired: 1 } }, true), 201);
      accounts.push(created.id);
    }
  }, 120_000);

  afterAll(async () => {
    for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await setup?.close();
    await hook?.stop();
    await smtp?.stop();
    await db?.drop();
  });

  describe.each(['notify-before-send', 'notify-after-send'] as const)('killed at %s', (point) => {
    it('a fresh process delivers every delivery of every committed event; duplicates only with the same key; the log says sent', async () => {
      // the doomed process: its claims last 3 × 2 s + 30 s; it dies at its first delivery
      const { proc: doomed, port } = await start({ VAULT_CRASH_POINT: point, VAULT_NOTIFY_TIMEOUT_MS: '2000' });
      const ops = await Promise.all([0, 1, 2].map(() => signIn(port)));
      const mine = accounts.slice(0, 3);
      const answers = await Promise.all(ops.map((op) => requestCheckout(port, op)));
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([doomed.exited, new Promise((r) => (timer = setTimeout(r, 20_000)))]);
      clearTimeout(timer);
      if (doomed.child.signalCode === null) throw new Error(`the vault never reached ${point}: ${JSON.stringify(answers)}\n${doomed.output().slice(-2000)}`);
      expect(doomed.child.signalCode).toBe('SIGKILL');

      // what it left: every committed request with its event and deliveries (3 approvers + the webhook), none sent
      const events = await eventsOfAccounts(mine);
      expect(events.length).toBeGreaterThanOrEqual(1);
      for (const a of answers) if (a.id) expect(events.map((e) => e.subject_id)).toContain(a.id);
      const eventIds = events.map((e) => e.id);
      const left = await deliveriesOf(eventIds);
      expect(left).toHaveLength(events.length * (APPROVERS + 1));
      for (const e of eventIds) {
        const own = left.filter((d) => d.event_id === e);
        expect(own.filter((d) => d.channel_kind === 'email').map((d) => d.recipient).sort()).toEqual([...approverEmails].sort());
        expect(own.filter((d) => d.channel_kind === 'webhook').map((d) => d.recipient)).toEqual(['incident-hook']);
      }
      expect(left.every((d) => d.status === 'pending')).toBe(true);
      expect(left.some((d) => d.claimed_by !== null)).toBe(true); // the dead process had claimed some
      const ids = new Set(left.map((d) => d.id));
      await smtp.settled(); // the server process reports its messages over IPC
      const before = arrivals(ids);
      if (point === 'notify-before-send') expect([...before.values()]).toEqual([]);
      else expect(before.size).toBeGreaterThanOrEqual(1); // the one whose send completed, at least

      // a fresh process: the unclaimed at once, the dead one's claims once they lapse
      const { proc: healthy, port: healthyPort } = await start();
      try {
        await waitFor('every delivery to be sent', async () => (await deliveriesOf(eventIds)).every((d) => d.status === 'sent'), 75_000);
        await new Promise((r) => setTimeout(r, 1000)); // a late duplicate would show
        await smtp.settled(); // the server process reports its messages over IPC
        const after = arrivals(ids);
        expect([...ids].filter((id) => !after.has(id))).toEqual([]); // none lost
        const duplicated = [...after].filter(([, n]) => n > 1).map(([id]) => id);
        if (point === 'notify-before-send') {
          expect(duplicated).toEqual([]);
        } else {
          expect(duplicated.length).toBeGreaterThanOrEqual(1); // the one killed between sending and recording
          for (const id of duplicated) expect(before.has(id)).toBe(true); // only what the dead process had sent
          expect(Math.max(...after.values())).toBe(2);
        }
        const sent = await deliveriesOf(eventIds);
        expect(sent.every((d) => d.status === 'sent' && d.attempts === 1 && d.last_error === null)).toBe(true);
        const log = await deliveryLog(healthyPort, new Set(eventIds));
        expect(log.map((d) => [d.id, d.status, d.attempts, d.lastError]).sort()).toEqual([...ids].map((id) => [id, 'sent', 1, null]).sort());
        // the mail says what is asked and links to it
        const mail = smtp.messages.find((m) => m.deliveryId && ids.has(m.deliveryId) && m.envelope.to[0] === approverEmails[0]);
        const checkoutId = events.find((e) => sent.some((d) => d.id === mail?.deliveryId && d.event_id === e.id))?.subject_id;
        expect(mail).toMatchObject({ secure: true, user: smtp.username });
        expect(mail?.text).toContain(`${PUBLIC_URL}/portal/checkouts/${checkoutId}`);
        expect(mail?.html).toContain(`href="${PUBLIC_URL}/portal/checkouts/${checkoutId}"`);
        expect(mail?.text).toContain('disk full on the primary');
      } finally {
        await stop(healthy);
      }
      expect(await db.query("SELECT id FROM audit_events WHERE type = 'notification.failed'")).toEqual([]);
    }, 150_000);
  });

  it('two processes on one database deliver each delivery exactly once, never zero times', async () => {
    const a = await start();
    const b = await start();
    try {
      // requests through each (each process nudges its own deliverer), and a burst committed at once by a third
      // writer that both pick up in their sweeps
      const [opsA, opsB] = await Promise.all([Promise.all([0, 1, 2].map(() => signIn(a.port))), Promise.all([0, 1, 2].map(() => signIn(b.port)))]);
      const mine = accounts.slice(0, 6);
      const burst = (async () => {
        const ids: string[] = [];
        await setup.get(UnitOfWork).run(async ({ notify }) => {
          for (let i = 0; i < 25; i++) ids.push(await notify({ type: 'approval.requested', subjectType: 'checkout', subjectId: randomUUID(), to: { roles: ['approver'] }, facts: { summary: `burst ${i}` } }));
        });
        return ids;
      })();
      const answers = await Promise.all([...opsA.map((op) => requestCheckout(a.port, op)), ...opsB.map((op) => requestCheckout(b.port, op))]);
      expect(answers.map((x) => x.outcome)).toEqual(Array(6).fill('answered 201'));
      const eventIds = [...(await eventsOfAccounts(mine)).map((e) => e.id), ...(await burst)];
      expect(eventIds).toHaveLength(31);
      await waitFor('every delivery to be sent', async () => (await deliveriesOf(eventIds)).every((d) => d.status === 'sent'), 60_000);
      await new Promise((r) => setTimeout(r, 1000)); // a late duplicate would show
      const rows = await deliveriesOf(eventIds);
      expect(rows).toHaveLength(31 * (APPROVERS + 1));
      await smtp.settled(); // the server process reports its messages over IPC
      const count = arrivals(new Set(rows.map((d) => d.id)));
      expect(rows.map((d) => count.get(d.id) ?? 0)).toEqual(rows.map(() => 1));
      expect(rows.every((d) => d.attempts === 1)).toBe(true);
      // each process delivered some: the claims, not luck, kept them apart
      expect(new Set(rows.map((d) => d.claimed_by)).size).toBe(2);
    } finally {
      await Promise.all([stop(a.proc), stop(b.proc)]);
    }
  }, 120_000);

  it('an SMTP server that hangs, or is gone, never slows a checkout request: the request path only inserts', async () => {
    const timeoutMs = 4000;
    const { proc, port } = await start({ VAULT_NOTIFY_TIMEOUT_MS: String(timeoutMs) });
    try {
      const ops = await Promise.all([0, 1, 2].map(() => signIn(port)));
      // the server takes connections and never greets
      await smtp.hangNext(100, { stage: 'connect' });
      const connections = smtp.counters.connections;
      const first = await requestCheckout(port, ops[0]);
      // the three e-mails are one batch (one circuit), sent one after another: the first holds the connection
      await waitFor('the deliverer to be stuck on the SMTP server', async () => smtp.counters.connections >= connections + 1, 10_000);
      const second = await requestCheckout(port, ops[1]); // while the first's e-mails wait for a greeting
      expect(first.ms).toBeLessThan(timeoutMs / 4);
      expect(second.ms).toBeLessThan(timeoutMs / 4);
      const eventOf = async (checkoutId: string | null) => (await db.query<{ id: string }>('SELECT id FROM notification_events WHERE subject_id = $1', [checkoutId]))[0].id;
      const eventIds = [await eventOf(first.id), await eventOf(second.id)];
      // the deadline ends the first e-mail's attempt; it waits for its retry, and while it backs off the SMTP server's
      // circuit is open: the rest of its batch was given back without an attempt and waits with it (as do the second's
      // e-mails) instead of each spending a timeout; the webhooks go out meanwhile
      await waitFor('the first attempt to time out', async () => (await deliveriesOf([eventIds[0]])).some((d) => d.channel_kind === 'email' && d.attempts >= 1), timeoutMs + 10_000);
      const emails = (await deliveriesOf([eventIds[0]])).filter((x) => x.channel_kind === 'email');
      expect(emails.every((d) => d.status === 'pending')).toBe(true);
      expect(emails.filter((d) => d.attempts > 0).map((d) => [d.attempts, d.last_error?.slice(0, 8)])).toEqual([[1, 'TIMEOUT:']]);
      await waitFor('the webhooks to be sent', async () => (await deliveriesOf(eventIds)).filter((d) => d.channel_kind === 'webhook').every((d) => d.status === 'sent'), 10_000);
      // the server answers again: every e-mail is delivered once the backoffs (7.5-15 s each) have passed
      await smtp.clearFailures();
      await waitFor('the retries to deliver', async () => (await deliveriesOf(eventIds)).every((d) => d.status === 'sent'), 60_000);
      const delivered = await deliveriesOf(eventIds);
      await smtp.settled(); // the server process reports its messages over IPC
      const count = arrivals(new Set(delivered.map((d) => d.id)));
      expect(delivered.map((d) => count.get(d.id))).toEqual(delivered.map(() => 1));

      // the server is gone
      await smtp.stop();
      const third = await requestCheckout(port, ops[2]);
      expect(third.ms).toBeLessThan(timeoutMs / 4);
      const [gone] = await db.query<{ id: string }>('SELECT id FROM notification_events WHERE subject_id = $1', [third.id]);
      // the first e-mail of the batch fails and opens the circuit; the others are given back and wait with it
      await waitFor('the first attempt to fail', async () => (await deliveriesOf([gone.id])).some((d) => d.channel_kind === 'email' && d.attempts >= 1), 15_000);
      const goneEmails = (await deliveriesOf([gone.id])).filter((x) => x.channel_kind === 'email');
      expect(goneEmails.every((d) => d.status === 'pending')).toBe(true);
      expect(goneEmails.filter((d) => d.attempts > 0).map((d) => d.last_error)).toEqual([expect.stringMatching(/^SMTP_UNREACHABLE/)]);
    } finally {
      await stop(proc);
    }
  }, 150_000);
});

/**
 * The outbox and the deliverer in the module tier (a real database, senders replaced by recording fakes, no HTTP):
 * what `tx.notify` records with the change (recipients decided then, mutes, missing addresses, routed channels),
 * nothing when the change rolls back, at-least-once delivery with one idempotency key across retries, `failed` after
 * the limit with an audit event and an alert through the other channels, and two instances delivering each once.
 */
import { randomUUID } from 'node:crypto';
import type { Role } from '../../src/common/actor';
import { SecretBoxService } from '../../src/crypto/secret-box.service';
import { UnitOfWork } from '../../src/database/unit-of-work';
import { channelSecretRef, NotificationDeliverer } from '../../src/notifications/deliverer';
import { NotificationStore } from '../../src/notifications/notification-store';
import { NotificationsService } from '../../src/notifications/notifications.service';
import { DeliveryError, OutgoingDelivery, RenderedMessage, Sender } from '../../src/notifications/senders/sender';
import { createTestDatabase, TestDatabase } from '../support/db';
import { buildModule, ModuleHarness, TEST_ADMIN } from '../support/module-harness';
import { startWebhookReceiver, WebhookReceiver } from '../support/webhook-receiver';

class RecordingSender implements Sender {
  readonly sent: Array<{ d: OutgoingDelivery; m: RenderedMessage }> = [];
  failures: Array<DeliveryError> = [];
  constructor(readonly kind: Sender['kind']) {}
  async send(d: OutgoingDelivery, m: RenderedMessage): Promise<void> {
    const failure = this.failures.shift();
    this.sent.push({ d, m });
    if (failure) throw failure;
  }
}

const ENV = { VAULT_SMTP_HOST: '127.0.0.1', VAULT_SMTP_FROM: 'vault@example.test', VAULT_SMTP_TLS: 'none', VAULT_PUBLIC_URL: 'https://vault.example.test', VAULT_NOTIFY_MAX_ATTEMPTS: '3' };

async function user(h: ModuleHarness, roles: Role[], o: { email?: string | null; disabled?: boolean; muted?: string[] } = {}): Promise<string> {
  const id = randomUUID();
  await h.db.query('INSERT INTO users (id, username, password_hash, roles, email, disabled, muted_notifications) VALUES ($1, $2, $3, $4, $5, $6, $7)', [
    id,
    `u${id.slice(0, 8)}`,
    'not-a-hash',
    roles,
    o.email === undefined ? `u${id.slice(0, 8)}@example.test` : o.email,
    o.disabled ?? false,
    o.muted ?? [],
  ]);
  return id;
}

async function channel(h: ModuleHarness, kind: 'webhook' | 'slack', eventTypes: string[] = []): Promise<string> {
  const id = randomUUID();
  await h.db.query("INSERT INTO notification_channels (id, name, kind, config) VALUES ($1, $2, $3, '{}')", [id, `ch-${id.slice(0, 6)}`, kind]);
  await h.db.query('INSERT INTO notification_routes (id, channel_id, event_types) VALUES ($1, $2, $3)', [randomUUID(), id, eventTypes]);
  return id;
}

describe('notification outbox and deliverer (module tier)', () => {
  let db: TestDatabase;
  let h: ModuleHarness;
  const email = new RecordingSender('email');
  const webhook = new RecordingSender('webhook');
  const slack = new RecordingSender('slack');
  beforeAll(async () => {
    db = await createTestDatabase();
    h = await buildModule({ env: ENV, db });
    for (const s of [email, webhook, slack]) h.get(NotificationDeliverer).register(s);
  }, 60_000);
  afterAll(async () => {
    await h?.close();
    await db?.drop();
  });
  beforeEach(async () => {
    await h.get(NotificationDeliverer).idle();
    await h.db.query("UPDATE notification_deliveries SET status = 'sent' WHERE status = 'pending'"); // each test counts its own
    await h.db.query('DELETE FROM notification_routes');
    await h.db.query('DELETE FROM notification_channels');
    for (const s of [email, webhook, slack]) {
      s.sent.length = 0;
      s.failures = [];
    }
  });

  /** Writes an event, and waits for the sweep its commit nudged (so each test sees a settled outbox). */
  const notify = async (input: Parameters<import('../../src/notifications/outbox').NotifyFn>[0]) => {
    const id = await h.get(UnitOfWork).run(({ notify }) => notify(input));
    await h.get(NotificationDeliverer).idle();
    return id;
  };
  const deliveries = (eventId: string) =>
    h.db.query<{ recipient_user_id: string | null; channel_id: string | null; status: string; attempts: number; last_error: string | null }>(
      'SELECT recipient_user_id, channel_id, status, attempts, last_error FROM notification_deliveries WHERE event_id = $1 ORDER BY seq',
      [eventId],
    );

  it('records who is told at the moment of the change: enabled holders of the role, with an address, unless they muted an optional kind', async () => {
    const withMail = await user(h, ['approver']);
    const noMail = await user(h, ['approver'], { email: null });
    const disabled = await user(h, ['approver'], { disabled: true });
    const requester = await user(h, ['approver', 'operator']);
    await user(h, ['operator']);
    const hook = await channel(h, 'webhook', ['approval.requested']);
    await channel(h, 'slack', ['alert.break_glass']); // not routed for this type
    const eventId = await notify({ type: 'approval.requested', subjectType: 'checkout', subjectId: randomUUID(), to: { roles: ['approver'], except: [requester] }, facts: { summary: 'x asks for root' } });
    const rows = await deliveries(eventId);
    const people = rows.filter((r) => r.channel_id === null);
    expect(people.map((r) => [r.recipient_user_id, r.status]).sort()).toEqual([[withMail, 'sent'], [noMail, 'no_address']].sort());
    expect(people.some((r) => r.recipient_user_id === disabled || r.recipient_user_id === requester)).toBe(false);
    expect(rows.filter((r) => r.channel_id !== null).map((r) => r.channel_id)).toEqual([hook]);
    // an approver added afterwards was not told about this request
    await user(h, ['approver']);
    expect(await deliveries(eventId)).toHaveLength(rows.length);

    const muter = await user(h, ['operator'], { muted: ['request.approved', 'approval.requested'] });
    const optional = await notify({ type: 'request.approved', subjectType: 'checkout', to: { users: [muter] }, facts: { summary: 'approved' } });
    expect((await deliveries(optional))[0].status).toBe('muted');
    const required = await notify({ type: 'approval.requested', subjectType: 'checkout', to: { users: [muter] }, facts: { summary: 'decide' } });
    expect((await deliveries(required))[0].status).toBe('sent'); // approvals cannot be muted: written and delivered
  });

  it('writes nothing when the change rolls back', async () => {
    const before = await h.db.query<{ n: number }>('SELECT count(*)::int AS n FROM notification_events');
    await expect(
      h.get(UnitOfWork).run(async ({ notify }) => {
        await notify({ type: 'alert.break_glass', subjectType: 'checkout', to: { roles: ['admin'] }, facts: { summary: 'break glass' } });
        throw new Error('the change failed');
      }),
    ).rejects.toThrow('the change failed');
    expect(await h.db.query('SELECT count(*)::int AS n FROM notification_events')).toEqual(before);
  });

  it('delivers at least once, retrying with the same idempotency key, and renders a link to the portal', async () => {
    const hook = await channel(h, 'webhook');
    const to = await user(h, ['auditor']);
    webhook.failures = [new DeliveryError('WEBHOOK_HTTP_500', 'the receiver answered 500', true)];
    const eventId = await notify({ type: 'alert.cleanup_failed', subjectType: 'checkout', subjectId: 'c-1', to: { users: [to] }, facts: { summary: 'cleanup failed', code: 'TARGET_UNREACHABLE' } });
    let rows = await deliveries(eventId); // the sweep the commit nudged has run
    expect(rows.find((r) => r.channel_id === null)?.status).toBe('sent');
    const hooked = rows.find((r) => r.channel_id === hook);
    expect(hooked).toMatchObject({ status: 'pending', attempts: 1, last_error: expect.stringMatching(/^WEBHOOK_HTTP_500/) });
    await h.db.query('UPDATE notification_deliveries SET next_attempt_at = now() WHERE event_id = $1', [eventId]); // the backoff has passed
    await h.get(NotificationDeliverer).sweep();
    rows = await deliveries(eventId);
    expect(rows.find((r) => r.channel_id === hook)).toMatchObject({ status: 'sent', attempts: 2 });
    expect(webhook.sent).toHaveLength(2);
    expect(new Set(webhook.sent.map((s) => s.d.id)).size).toBe(1);
    expect(webhook.sent[0].m.payload.id).toBe(webhook.sent[0].d.id);
    expect(email.sent[0].m.text).toContain('https://vault.example.test/portal/checkouts/c-1');
    expect(email.sent[0].m.html).toContain('href="https://vault.example.test/portal/checkouts/c-1"');
  });

  it('gives a delivery up after the limit: failed, audited, and the administrators are told through the other channels', async () => {
    const failing = await channel(h, 'webhook');
    const other = await channel(h, 'slack');
    await user(h, ['admin']);
    webhook.failures = Array.from({ length: 5 }, () => new DeliveryError('WEBHOOK_HTTP_503', 'the receiver answered 503', true));
    const eventId = await notify({ type: 'alert.account_needs_attention', subjectType: 'account', to: { none: true }, facts: { summary: 'needs attention' } });
    for (let i = 0; i < 2; i++) {
      await h.db.query("UPDATE notification_deliveries SET next_attempt_at = now() WHERE status = 'pending'");
      await h.get(NotificationDeliverer).sweep();
    }
    await h.get(NotificationDeliverer).idle();
    expect((await deliveries(eventId)).find((r) => r.channel_id === failing)).toMatchObject({ status: 'failed', attempts: 3 });
    const [audited] = await h.db.query<{ details: Record<string, unknown> }>("SELECT details FROM audit_events WHERE type = 'notification.failed' ORDER BY id DESC LIMIT 1");
    expect(audited.details).toMatchObject({ eventType: 'alert.account_needs_attention', channelKind: 'webhook', code: 'WEBHOOK_HTTP_503', attempts: 3 });
    const [alert] = await h.db.query<{ id: string }>("SELECT id FROM notification_events WHERE type = 'alert.delivery_failed' ORDER BY seq DESC LIMIT 1");
    const alertRows = await deliveries(alert.id);
    expect(alertRows.some((r) => r.channel_id === other)).toBe(true);
    expect(alertRows.some((r) => r.channel_id === failing)).toBe(false); // never back to the channel that failed
    expect(alertRows.some((r) => r.channel_id === null)).toBe(true); // and the administrators by e-mail
  });

  it('two instances deliver each delivery once', async () => {
    const second = await buildModule({ env: ENV, db });
    const email2 = new RecordingSender('email');
    second.get(NotificationDeliverer).register(email2);
    try {
      const people = await Promise.all(Array.from({ length: 12 }, () => user(h, ['auditor'])));
      // one transaction, one commit: both instances then sweep the same 240 deliveries at once
      await h.get(UnitOfWork).run(async ({ notify: n }) => {
        for (let i = 0; i < 20; i++) await n({ type: 'alert.mfa_failures', subjectType: 'user', to: { users: people }, facts: { summary: `burst ${i}` } });
      });
      await Promise.all([h.get(NotificationDeliverer).sweep(1000), second.get(NotificationDeliverer).sweep(1000), h.get(NotificationDeliverer).idle()]);
      const ids = [...email.sent, ...email2.sent].map((s) => s.d.id);
      expect(ids.length).toBe(240);
      expect(new Set(ids).size).toBe(240);
      expect(email.sent.length).toBeGreaterThan(0);
      expect(email2.sent.length).toBeGreaterThan(0);
    } finally {
      await second.close();
    }
  }, 120_000);
});

/**
 * Review 3's findings, with a real webhook receiver that can hang (deadline 1.5 s) and a recording e-mail sender: one
 * hanging channel does not hold up the others (worker pool, per-channel limit, circuit), shutdown does not wait for a
 * backlog, failures alert once per channel per window, a disabled channel pauses, a channel deleted under a change
 * does not fail it, a disabled person is not told on a retry, a role of any size fits the insert, and a secret that
 * no longer decrypts is not retried.
 */
describe('notification deliverer under failing receivers (review 3)', () => {
  const ENV3 = { ...ENV, VAULT_NOTIFY_MAX_ATTEMPTS: '8', VAULT_NOTIFY_TIMEOUT_MS: '1500' };
  let db: TestDatabase;
  let h: ModuleHarness;
  let hook: WebhookReceiver;
  const email = new RecordingSender('email');
  const at: number[] = [];
  const recordTimes: Sender = { kind: 'email', send: async (d, m) => (at.push(Date.now()), email.send(d, m)) };

  beforeAll(async () => {
    db = await createTestDatabase();
    h = await buildModule({ env: ENV3, db });
    h.get(NotificationDeliverer).register(recordTimes);
    hook = await startWebhookReceiver();
  }, 60_000);
  afterAll(async () => {
    await hook?.stop();
    await h?.close();
    await db?.drop();
  });
  beforeEach(async () => {
    await h.get(NotificationDeliverer).idle();
    await h.db.query("UPDATE notification_deliveries SET status = 'sent' WHERE status = 'pending'");
    await h.db.query('DELETE FROM notification_routes');
    await h.db.query('DELETE FROM notification_channels');
    email.sent.length = 0;
    email.failures = [];
    at.length = 0;
    hook.reset();
    hook.setDefault({ status: 200 });
  });

  const deliverer = () => h.get(NotificationDeliverer);
  const webhookChannel = async (url: string, o: { secret?: Buffer } = {}) => {
    const id = randomUUID();
    const secret = o.secret ?? h.get(SecretBoxService).encrypt(channelSecretRef(id), 'review3-signing-secret-0123456789');
    await h.db.query("INSERT INTO notification_channels (id, name, kind, config, secret) VALUES ($1, $2, 'webhook', $3::jsonb, $4)", [id, `hook-${id.slice(0, 6)}`, JSON.stringify({ url }), secret]);
    await h.db.query('INSERT INTO notification_routes (id, channel_id, event_types) VALUES ($1, $2, $3)', [randomUUID(), id, []]);
    return id;
  };
  const breakGlass = (n: number, uow = h.get(UnitOfWork), type: 'alert.break_glass' | 'checkout.expiring' = 'alert.break_glass') =>
    uow.run(async ({ notify }) => {
      for (let i = 0; i < n; i++) await notify({ type, subjectType: 'checkout', subjectId: randomUUID(), to: { none: true }, facts: { summary: `event ${i}` } });
    });
  const channelDeliveries = (channelId: string) =>
    h.db.query<{ status: string; attempts: number; last_error: string | null }>('SELECT status, attempts, last_error FROM notification_deliveries WHERE channel_id = $1', [channelId]);
  const alertsTo = (userId: string) => email.sent.filter((s) => s.d.eventType === 'alert.delivery_failed' && s.d.to?.startsWith(`u${userId.slice(0, 8)}`));

  it('F1: a webhook that hangs until the deadline does not hold up the approvers\' e-mail', async () => {
    const approver = await user(h, ['approver']);
    const burst = async () => {
      at.length = 0;
      const t0 = Date.now();
      await h.get(UnitOfWork).run(async ({ notify }) => {
        for (let i = 0; i < 16; i++) await notify({ type: 'approval.requested', subjectType: 'checkout', subjectId: randomUUID(), to: { users: [approver] }, facts: { summary: `request ${i}` } });
      });
      for (const end = Date.now() + 10_000; at.length < 16 && Date.now() < end; ) await new Promise((r) => setTimeout(r, 10));
      expect(at).toHaveLength(16);
      return Math.max(...at) - t0;
    };
    const fast = await burst();
    await deliverer().idle();
    hook.setDefault({ hang: true });
    const channelId = await webhookChannel(hook.url('/slow'));
    const slow = await burst();
    // the e-mails did not wait for the webhook's deadline (1.5 s), let alone one per batch
    expect(slow).toBeLessThan(Math.max(1000, fast * 3));
    await deliverer().idle();
    // the first sends to the channel timed out; the rest waited behind its open circuit instead of each spending a timeout
    const rows = await channelDeliveries(channelId);
    expect(rows.filter((r) => r.attempts > 0).length).toBeLessThanOrEqual(4);
    expect(rows.every((r) => r.status === 'pending')).toBe(true);
    expect(rows.filter((r) => r.attempts > 0).every((r) => r.last_error?.startsWith('TIMEOUT'))).toBe(true);
    // the receiver is back and the backoff has passed: the circuit closes and every delivery goes out
    hook.setDefault({ status: 200 });
    await h.db.query("UPDATE notification_deliveries SET next_attempt_at = now() WHERE status = 'pending'");
    await deliverer().sweep();
    expect((await channelDeliveries(channelId)).every((r) => r.status === 'sent')).toBe(true);
  }, 60_000);

  it('F7: shutdown does not wait for a backlog behind a hanging webhook: in-flight sends end by their deadline, nothing new is taken', async () => {
    const second = await buildModule({ env: ENV3, db });
    hook.setDefault({ hang: true });
    const channelId = await webhookChannel(hook.url('/x'));
    await breakGlass(40, second.get(UnitOfWork)); // its commit nudges the second instance's deliverer
    await new Promise((r) => setTimeout(r, 200));
    const t0 = Date.now();
    await second.close();
    const took = Date.now() - t0;
    expect(took).toBeLessThan(1500 + 1500);
    const rows = await channelDeliveries(channelId);
    expect(rows.filter((r) => r.attempts > 0).length).toBeLessThanOrEqual(4);
    expect(rows.every((r) => r.status === 'pending')).toBe(true); // left for another instance (or the next start)
  }, 60_000);

  it('F8: a channel that keeps failing alerts each administrator once per window, not once per failed delivery', async () => {
    const admin = await user(h, ['admin']);
    hook.setDefault({ status: 404 }); // not worth a retry: each fails at once
    const channelId = await webhookChannel(hook.url('/gone'));
    await breakGlass(25, undefined, 'checkout.expiring');
    await deliverer().idle();
    await deliverer().sweep();
    expect((await channelDeliveries(channelId)).filter((r) => r.status === 'failed')).toHaveLength(25);
    expect(alertsTo(admin)).toHaveLength(1);
    const [{ n }] = await h.db.query<{ n: number }>("SELECT count(*)::int AS n FROM notification_events WHERE type = 'alert.delivery_failed' AND subject_id = $1", [channelId]);
    expect(n).toBe(1);
  }, 60_000);

  it('F8b: a channel disabled during an outage is paused: its deliveries wait, and are sent once it is enabled again', async () => {
    const admin = await user(h, ['admin']);
    hook.setDefault({ status: 503 });
    const channelId = await webhookChannel(hook.url('/down'));
    await breakGlass(20);
    await deliverer().idle();
    await h.db.query('UPDATE notification_channels SET enabled = false WHERE id = $1', [channelId]);
    await h.db.query("UPDATE notification_deliveries SET next_attempt_at = now() WHERE status = 'pending'");
    const requests = hook.requests.length;
    await deliverer().sweep();
    await deliverer().idle();
    let rows = await channelDeliveries(channelId);
    expect(rows.filter((r) => r.status === 'pending')).toHaveLength(20);
    expect(hook.requests.length).toBe(requests); // nothing was tried while disabled
    expect(alertsTo(admin)).toHaveLength(0); // an outage that is retried is no failure yet
    hook.setDefault({ status: 200 });
    await h.db.query('UPDATE notification_channels SET enabled = true WHERE id = $1', [channelId]);
    await deliverer().sweep();
    rows = await channelDeliveries(channelId);
    expect(rows.filter((r) => r.status === 'sent')).toHaveLength(20);
  }, 60_000);

  it('F2: a channel deleted while a change writes its outbox rows waits for the change; the change commits', async () => {
    const channelId = await webhookChannel(hook.url('/ok'));
    const store = h.get(NotificationStore);
    const original = store.writeEvent.bind(store);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let read!: () => void;
    const wasRead = new Promise<void>((r) => (read = r));
    store.writeEvent = async (em, event) => {
      const written = await original(em, event); // the channel is locked FOR KEY SHARE, its delivery inserted
      read();
      await gate; // the change goes on after the admin's delete was issued
      return written;
    };
    try {
      const change = h.get(UnitOfWork).run(({ notify }) => notify({ type: 'alert.break_glass', subjectType: 'checkout', subjectId: randomUUID(), to: { none: true }, facts: { summary: 'break glass' } }));
      const outcome = change.then(
        () => 'committed',
        (e: Error) => `failed: ${e.message}`,
      );
      await wasRead;
      const deleted = h.get(NotificationsService).deleteChannel(TEST_ADMIN, channelId);
      await new Promise((r) => setTimeout(r, 300)); // the delete is waiting for the change
      release();
      expect(await outcome).toBe('committed');
      await deleted;
      expect(await h.db.query('SELECT id FROM notification_channels WHERE id = $1', [channelId])).toHaveLength(0);
    } finally {
      store.writeEvent = original;
    }
    // what it had queued for the channel is not sent anywhere: failed, without an alert about it
    await deliverer().sweep();
    const [orphan] = await h.db.query<{ status: string; last_error: string }>(
      "SELECT status, last_error FROM notification_deliveries WHERE channel_id IS NULL AND channel_kind = 'webhook' ORDER BY seq DESC LIMIT 1",
    );
    expect(orphan).toMatchObject({ status: 'failed', last_error: expect.stringMatching(/^CHANNEL_DELETED/) });
  }, 30_000);

  it('F3: a retried delivery to a person disabled meanwhile is not sent: RECIPIENT_DISABLED, not retried, no alert; the recorded address stays', async () => {
    const admin = await user(h, ['admin']);
    const approver = await user(h, ['approver'], { email: 'old-address@example.test' });
    email.failures = [new DeliveryError('SMTP_TEMPORARY', 'deferred (451)', true)];
    const eventId = await h.get(UnitOfWork).run(({ notify }) => notify({ type: 'approval.requested', subjectType: 'checkout', subjectId: randomUUID(), to: { users: [approver] }, facts: { summary: 'x asks for root' } }));
    await deliverer().idle();
    await h.db.query("UPDATE users SET disabled = true, email = 'new-address@example.test' WHERE id = $1", [approver]);
    await h.db.query("UPDATE notification_deliveries SET next_attempt_at = now() WHERE status = 'pending'");
    await deliverer().sweep();
    await deliverer().idle();
    expect(email.sent.map((s) => s.d.to)).toEqual(['old-address@example.test']);
    const [row] = await h.db.query<{ status: string; attempts: number; last_error: string; recipient: string }>('SELECT status, attempts, last_error, recipient FROM notification_deliveries WHERE event_id = $1', [eventId]);
    expect(row).toMatchObject({ status: 'failed', attempts: 2, last_error: expect.stringMatching(/^RECIPIENT_DISABLED/), recipient: 'old-address@example.test' });
    expect(alertsTo(admin)).toHaveLength(0);
  });

  it('F4: a change tells 11,000 people (more rows than one INSERT has parameters for)', async () => {
    await h.db.query(
      "INSERT INTO users (id, username, password_hash, roles, email) SELECT gen_random_uuid(), 'bulk' || g, 'x', '{auditor}', 'bulk' || g || '@example.test' FROM generate_series(1, 11000) g",
    );
    try {
      const eventId = await h.get(UnitOfWork).run(({ notify }) => notify({ type: 'alert.break_glass', subjectType: 'checkout', subjectId: randomUUID(), to: { roles: ['auditor'] }, facts: { summary: 'break glass' } }));
      await deliverer().idle();
      const [{ n }] = await h.db.query<{ n: number }>("SELECT count(*)::int AS n FROM notification_deliveries WHERE event_id = $1 AND recipient LIKE 'bulk%'", [eventId]);
      expect(n).toBe(11000);
    } finally {
      await h.db.query("UPDATE notification_deliveries SET status = 'sent' WHERE status = 'pending'");
      await h.db.query("DELETE FROM users WHERE username LIKE 'bulk%'");
    }
  }, 60_000);

  it('claims in batches of at most 10 deliveries of ONE circuit (people\'s e-mail is one, each webhook its own), each sent once and recorded', async () => {
    const [a, b] = [await webhookChannel(hook.url('/a')), await webhookChannel(hook.url('/b'))];
    const store = h.get(NotificationStore);
    const batches: string[][] = [];
    const real = store.takeDue.bind(store);
    const spy = jest.spyOn(store, 'takeDue').mockImplementation(async (...args) => {
      const batch = await real(...args);
      if (batch.length) batches.push(batch.map((d) => (d.channelId === null ? 'smtp' : d.channelId)));
      return batch;
    });
    try {
      const auditors = await h.db.query<{ id: string }>("INSERT INTO users (id, username, password_hash, roles, email) SELECT gen_random_uuid(), 'batch' || g, 'x', '{auditor}', 'batch' || g || '@example.test' FROM generate_series(1, 4) g RETURNING id");
      // 6 changes × (4 e-mails + 2 webhooks): 36 deliveries
      await h.get(UnitOfWork).run(async ({ notify }) => {
        for (let i = 0; i < 6; i++) await notify({ type: 'alert.break_glass', subjectType: 'checkout', subjectId: randomUUID(), to: { users: auditors.map((u) => u.id) }, facts: { summary: `batch ${i}` } });
      });
      await deliverer().idle();
      expect(batches.flat().sort()).toEqual([...Array(24).fill('smtp'), ...Array(6).fill(a), ...Array(6).fill(b)].sort());
      for (const batch of batches) {
        expect(batch.length).toBeLessThanOrEqual(10);
        expect(new Set(batch).size).toBe(1);
      }
      expect(batches.length).toBeLessThan(36); // batched, not one by one
      const rows = await h.db.query<{ status: string; attempts: number }>("SELECT status, attempts FROM notification_deliveries d JOIN notification_events e ON e.id = d.event_id WHERE e.payload->>'summary' LIKE 'batch %'");
      expect(rows).toHaveLength(36);
      expect(rows.every((r) => r.status === 'sent' && r.attempts === 1)).toBe(true);
      expect(hook.requests).toHaveLength(12);
    } finally {
      spy.mockRestore();
      await h.db.query("DELETE FROM users WHERE username LIKE 'batch%'");
    }
  });

  it('a channel secret that no longer decrypts fails at once (CHANNEL_SECRET_UNREADABLE), not after every retry', async () => {
    const channelId = await webhookChannel(hook.url('/s'), { secret: Buffer.from('not a ciphertext of this vault') });
    await breakGlass(1);
    await deliverer().idle();
    expect(await channelDeliveries(channelId)).toEqual([{ status: 'failed', attempts: 1, last_error: expect.stringMatching(/^CHANNEL_SECRET_UNREADABLE/) }]);
    expect(hook.requests).toHaveLength(0);
  });
});

/**
 * The outbox and the deliverer in the module tier (a real database, senders replaced by recording fakes, no HTTP):
 * what `tx.notify` records with the change (recipients decided then, mutes, missing addresses, routed channels),
 * nothing when the change rolls back, at-least-once delivery with one idempotency key across retries, `failed` after
 * the limit with an audit event and an alert through the other channels, and two instances delivering each once.
 */
import { randomUUID } from 'node:crypto';
import type { Role } from '../../src/common/actor';
import { UnitOfWork } from '../../src/database/unit-of-work';
import { NotificationDeliverer } from '../../src/notifications/deliverer';
import { DeliveryError, OutgoingDelivery, RenderedMessage, Sender } from '../../src/notifications/senders/sender';
import { createTestDatabase, TestDatabase } from '../support/db';
import { buildModule, ModuleHarness } from '../support/module-harness';

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

import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, IncomingHttpHeaders, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SecretBoxService } from '../../src/crypto/secret-box.service';
import { UnitOfWork } from '../../src/database/unit-of-work';
import { channelSecretRef } from '../../src/notifications/deliverer';
import type { NotifyInput } from '../../src/notifications/events';
import { verifyVaultSignature } from '../../src/notifications/senders/webhook.sender';
import { actingAs } from '../support/http';
import { startTestVault, TestUser, TestVault } from '../support/vault';

/**
 * The notifications API (issue 14) on the real application and PostgreSQL: channels and routes (admin, step-up; reads
 * also auditor), the write-only channel secret (encrypted bound to its row, never in an answer or an audit event; the
 * secret scan of `npm test` looks for every `secret` these requests sent in every log line, audit event and error
 * body), the test message to one channel (a real HTTP receiver checks the signature), the delivery log (newest
 * first, keyset pages, filters), and people's own e-mail address and muted kinds (PATCH /v1/me).
 */

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}

type Page<T> = { items: T[]; nextCursor: string | null };
type Delivery = { id: string; eventId: string; eventType: string; status: string; recipient: string; recipientUserId: string | null; channel: { id: string | null; kind: string; name: string | null }; attempts: number; lastError: string | null; summary: string; createdAt: string; sentAt: string | null };

describe('notifications API (e2e, real PostgreSQL)', () => {
  let vault: TestVault;
  let admin: TestUser;
  let auditor: TestUser;
  let operator: TestUser;
  let hook: Server;
  let hookUrl: string;
  const received: Received[] = [];

  const as = (u: TestUser) => actingAs(vault, u);
  const secret = () => `whsec-${randomBytes(16).toString('hex')}`;
  const slackUrl = () => `https://hooks.slack.example/services/T0/B0/${randomBytes(12).toString('hex')}`;
  /** What a refused request must leave as it was: the channels and routes, the admin's last used code, the audit log. */
  const state = async () =>
    JSON.stringify(
      await vault.db.query(
        `SELECT (SELECT md5(coalesce(string_agg(c::text, '|' ORDER BY c.id), '')) FROM notification_channels c) AS channels,
                (SELECT md5(coalesce(string_agg(r::text, '|' ORDER BY r.id), '')) FROM notification_routes r) AS routes,
                (SELECT md5(coalesce(string_agg(u::text, '|' ORDER BY u.id), '')) FROM users u) AS users,
                (SELECT count(*) FROM audit_events) AS events`,
      ),
    );
  const auditOf = async (type: string, subjectId: string) =>
    (await vault.db.query<{ details: Record<string, unknown> }>('SELECT details FROM audit_events WHERE type = $1 AND subject_id = $2 ORDER BY id', [type, subjectId])).map((r) => r.details);
  const notify = (input: NotifyInput) => vault.get(UnitOfWork).run((tx) => tx.notify(input));
  const log = async (query = '') => (await as(admin).get(`/v1/notifications${query}`).expect(200)).body as Page<Delivery>;
  const eventually = async <T>(read: () => Promise<T>, ok: (v: T) => boolean, ms = 15_000): Promise<T> => {
    const end = Date.now() + ms;
    for (;;) {
      const v = await read();
      if (ok(v)) return v;
      if (Date.now() > end) throw new Error(`not reached in time: ${JSON.stringify(v)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const webhook = async (name: string, s = secret()) => {
    const res = await as(admin).post('/v1/notification-channels', { name, kind: 'webhook', config: { url: hookUrl }, secret: s }, true).expect(201);
    return { id: res.body.id as string, secret: s };
  };

  beforeAll(async () => {
    hook = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString('utf8')));
      req.on('end', () => {
        received.push({ headers: req.headers, body });
        res.writeHead(200).end('ok');
      });
    });
    await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
    hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`;
    vault = await startTestVault();
    admin = await vault.admin();
    [auditor, operator] = await Promise.all([vault.createUser(['auditor']), vault.createUser(['operator'])]);
  }, 60_000);
  afterAll(async () => {
    await vault?.close();
    await new Promise((r) => hook?.close(r));
  });

  it('admin adds channels with a step-up code; the secret is stored encrypted, answered only as secretSet, audited as hasSecret', async () => {
    const s = secret();
    const body = { name: 'soc-webhook', kind: 'webhook', config: { url: hookUrl }, secret: s };
    const before = await state();
    expect((await as(admin).post('/v1/notification-channels', body).expect(401)).body.code).toBe('MFA_REQUIRED');
    expect((await as(auditor).post('/v1/notification-channels', body, true).expect(403)).body.code).toBe('FORBIDDEN');
    expect((await as(operator).post('/v1/notification-channels', body, true).expect(403)).body.code).toBe('FORBIDDEN');
    expect(await state()).toBe(before);

    const created = await as(admin).post('/v1/notification-channels', body, true).expect(201);
    expect(created.body).toEqual({
      id: expect.any(String),
      name: 'soc-webhook',
      kind: 'webhook',
      config: { url: hookUrl },
      secretSet: true,
      enabled: true,
      createdAt: expect.any(String),
      updatedAt: expect.any(String),
    });
    const id = created.body.id as string;
    const [row] = await vault.db.query<{ secret: Buffer }>('SELECT secret FROM notification_channels WHERE id = $1', [id]);
    expect(row.secret.includes(Buffer.from(s))).toBe(false);
    expect(vault.get(SecretBoxService).decrypt(channelSecretRef(id), row.secret)).toBe(s);
    // bound to its row: another row's id does not open it
    expect(() => vault.get(SecretBoxService).decrypt(channelSecretRef(randomUUID()), row.secret)).toThrow();
    expect(await auditOf('notification.channel_created', id)).toEqual([{ name: 'soc-webhook', kind: 'webhook', config: { url: hookUrl }, enabled: true, hasSecret: true }]);

    const email = await as(admin).post('/v1/notification-channels', { name: 'ops-mail', kind: 'email', config: { to: ['ops@example.com', 'oncall@example.org'] }, enabled: false }, true).expect(201);
    expect(email.body).toMatchObject({ kind: 'email', config: { to: ['ops@example.com', 'oncall@example.org'] }, secretSet: false, enabled: false });
    const slack = await as(admin).post('/v1/notification-channels', { name: 'sec-slack', kind: 'slack', config: {}, secret: slackUrl() }, true).expect(201);
    expect(slack.body).toMatchObject({ kind: 'slack', config: {}, secretSet: true });
    await as(admin).post('/v1/notification-channels', { name: 'sec-teams', kind: 'teams', config: {}, secret: 'https://example.webhook.office.example/webhookb2/' + randomBytes(8).toString('hex') }, true).expect(201);

    const dup = await as(admin).post('/v1/notification-channels', { name: 'ops-mail', kind: 'email', config: { to: ['x@example.com'] } }, true).expect(409);
    expect(dup.body.code).toBe('CHANNEL_NAME_TAKEN');

    // reads: admin and auditor, by name, in keyset pages; never a secret
    expect((await as(operator).get('/v1/notification-channels').expect(403)).body.code).toBe('FORBIDDEN');
    const names: string[] = [];
    let cursor: string | null = null;
    do {
      const page: Page<{ name: string; secretSet: boolean }> = (await as(auditor).get(`/v1/notification-channels?limit=2${cursor ? `&cursor=${cursor}` : ''}`).expect(200)).body;
      expect(page.items.length).toBeLessThanOrEqual(2);
      names.push(...page.items.map((c) => c.name));
      for (const c of page.items) expect(Object.keys(c)).not.toContain('secret');
      cursor = page.nextCursor;
    } while (cursor);
    expect(names).toEqual(['ops-mail', 'sec-slack', 'sec-teams', 'soc-webhook']);
    expect((await as(auditor).get('/v1/notification-channels?kind=email').expect(200)).body.items.map((c: { name: string }) => c.name)).toEqual(['ops-mail']);
    expect((await as(auditor).get(`/v1/notification-channels/${id}`).expect(200)).body).toEqual(created.body);
    await as(auditor).get(`/v1/notification-channels/${randomUUID()}`).expect(404);
  });

  it.each([
    ['an http URL to another host', { kind: 'webhook', config: { url: 'http://hooks.example.com/x' }, secret: 'a-signing-secret-of-32-characters' }],
    ['a URL with a password in it', { kind: 'webhook', config: { url: 'https://user:pw@hooks.example.com/x' }, secret: 'a-signing-secret-of-32-characters' }],
    ['a URL that is not one', { kind: 'webhook', config: { url: 'hooks.example.com/x' }, secret: 'a-signing-secret-of-32-characters' }],
    ['a webhook without a signing secret', { kind: 'webhook', config: { url: 'https://hooks.example.com/x' } }],
    ['a signing secret too short', { kind: 'webhook', config: { url: 'https://hooks.example.com/x' }, secret: 'short' }],
    ['a webhook with e-mail addresses', { kind: 'webhook', config: { url: 'https://hooks.example.com/x', to: ['a@example.com'] }, secret: 'a-signing-secret-of-32-characters' }],
    ['an e-mail channel with a secret', { kind: 'email', config: { to: ['a@example.com'] }, secret: 'a-signing-secret-of-32-characters' }],
    ['an e-mail channel without addresses', { kind: 'email', config: { to: [] } }],
    ['an address that is not one', { kind: 'email', config: { to: ['Alice <alice@example.com>'] } }],
    ['an address with a line break', { kind: 'email', config: { to: ['a@example.com\r\nBcc: b@example.com'] } }],
    ['a Slack URL over http', { kind: 'slack', config: {}, secret: 'http://hooks.slack.example/services/x' }],
    ['a Slack channel with a config URL', { kind: 'slack', config: { url: 'https://hooks.slack.example/services/x' }, secret: 'https://hooks.slack.example/services/y' }],
    ['a Teams channel without its URL', { kind: 'teams', config: {} }],
    ['an unknown kind', { kind: 'pager', config: {} }],
    ['an unknown config field', { kind: 'email', config: { to: ['a@example.com'], cc: ['b@example.com'] } }],
    ['a bad name', { name: 'bad\u202Ename', kind: 'email', config: { to: ['a@example.com'] } }],
  ])('refuses %s with 400 VALIDATION_FAILED, before the step-up code is used, and stores nothing', async (_label, body) => {
    const before = await state();
    const res = await as(admin).post('/v1/notification-channels', { name: `bad-${randomBytes(3).toString('hex')}`, ...body }, true).expect(400);
    expect(res.body.code).toBe('VALIDATION_FAILED');
    expect(JSON.stringify(res.body)).not.toMatch(/signing-secret|hooks\.slack\.example\/services\/y/);
    expect(await state()).toBe(before);
  });

  it('changes a channel: name, config, enabled, a new secret (audited as secretChanged, never shown); a change that does not fit the kind is 400 CHANNEL_CONFIG_INVALID and changes nothing', async () => {
    const { id } = await webhook('to-change');
    const s2 = secret();
    const renamed = await as(admin).patch(`/v1/notification-channels/${id}`, { name: 'changed', secret: s2, enabled: false }, true).expect(200);
    expect(renamed.body).toMatchObject({ id, name: 'changed', enabled: false, secretSet: true, config: { url: hookUrl } });
    expect(JSON.stringify(renamed.body)).not.toContain(s2);
    const [row] = await vault.db.query<{ secret: Buffer; version: number }>('SELECT secret, version FROM notification_channels WHERE id = $1', [id]);
    expect(vault.get(SecretBoxService).decrypt(channelSecretRef(id), row.secret)).toBe(s2);
    expect(row.version).toBe(2);
    const [updated] = await auditOf('notification.channel_updated', id);
    expect(updated).toEqual({
      before: { name: 'to-change', kind: 'webhook', config: { url: hookUrl }, enabled: true },
      after: { name: 'changed', kind: 'webhook', config: { url: hookUrl }, enabled: false },
      secretChanged: true,
    });
    expect((await as(admin).patch(`/v1/notification-channels/${id}`, { name: 'x' }).expect(401)).body.code).toBe('MFA_REQUIRED');
    expect((await as(auditor).patch(`/v1/notification-channels/${id}`, { name: 'x' }, true).expect(403)).body.code).toBe('FORBIDDEN');

    const before = await state();
    for (const body of [{ config: { to: ['a@example.com'] } }, { config: {} }, { secret: 'too-short' }]) {
      const res = await as(admin).patch(`/v1/notification-channels/${id}`, body, true).expect(400);
      expect(res.body.code).toBe('CHANNEL_CONFIG_INVALID');
    }
    expect((await as(admin).patch(`/v1/notification-channels/${id}`, { config: { url: 'http://example.com/' } }, true).expect(400)).body.code).toBe('VALIDATION_FAILED');
    expect((await as(admin).patch(`/v1/notification-channels/${id}`, { name: 'soc-webhook' }, true).expect(409)).body.code).toBe('CHANNEL_NAME_TAKEN');
    // the codes those requests used are the only change: the channel, the routes and the other users are as they were
    const after = JSON.parse(await state()) as Array<Record<string, string>>;
    const was = JSON.parse(before) as Array<Record<string, string>>;
    expect({ channels: after[0].channels, routes: after[0].routes }).toEqual({ channels: was[0].channels, routes: was[0].routes });
    await as(admin).patch(`/v1/notification-channels/${randomUUID()}`, { name: 'nobody' }, true).expect(404);
  });

  it('routes: admin routes event types (and targets) to a channel; the outbox then delivers matching events to it; auditors read them', async () => {
    const { id: channelId } = await webhook('routed');
    const targetId = randomUUID();
    expect((await as(admin).post('/v1/notification-routes', { channelId, eventTypes: ['alert.break_glass'] }).expect(401)).body.code).toBe('MFA_REQUIRED');
    for (const body of [{ channelId, eventTypes: ['no.such_type'] }, { channelId, eventTypes: ['alert.break_glass', 'alert.break_glass'] }, { channelId, targetIds: [] }, { channelId: 'nope' }, { channelId, targetIds: ['x'] }]) {
      expect((await as(admin).post('/v1/notification-routes', body, true).expect(400)).body.code).toBe('VALIDATION_FAILED');
    }
    await as(admin).post('/v1/notification-routes', { channelId: randomUUID(), eventTypes: [] }, true).expect(404);

    const route = await as(admin).post('/v1/notification-routes', { channelId, eventTypes: ['alert.break_glass'], targetIds: [targetId] }, true).expect(201);
    expect(route.body).toEqual({ id: expect.any(String), channelId, channelName: 'routed', eventTypes: ['alert.break_glass'], targetIds: [targetId], createdAt: expect.any(String) });
    const all = await as(admin).post('/v1/notification-routes', { channelId }, true).expect(201);
    expect(all.body).toMatchObject({ eventTypes: [], targetIds: null });
    expect(await auditOf('notification.route_created', route.body.id)).toEqual([{ channelId, channel: 'routed', eventTypes: ['alert.break_glass'], targetIds: [targetId] }]);

    expect((await as(operator).get('/v1/notification-routes').expect(403)).body.code).toBe('FORBIDDEN');
    const listed = (await as(auditor).get(`/v1/notification-routes?channelId=${channelId}&limit=1`).expect(200)).body as Page<{ id: string }>;
    expect(listed.items.map((r) => r.id)).toEqual([route.body.id]);
    const next = (await as(auditor).get(`/v1/notification-routes?channelId=${channelId}&limit=1&cursor=${listed.nextCursor}`).expect(200)).body as Page<{ id: string }>;
    expect(next).toEqual({ items: [expect.objectContaining({ id: all.body.id })], nextCursor: null });
    await as(auditor).get(`/v1/notification-routes/${route.body.id}`).expect(200);

    // the catch-all route goes; the specific one takes break-glass alerts about its target only
    await as(admin).delete(`/v1/notification-routes/${all.body.id}`, true).expect(204);
    await as(admin).delete(`/v1/notification-routes/${all.body.id}`, true).expect(404);
    const routed = await notify({ type: 'alert.break_glass', subjectType: 'checkout', subjectId: randomUUID(), targetId, to: { none: true }, facts: { summary: 'break-glass on the routed target' } });
    const elsewhere = await notify({ type: 'alert.break_glass', subjectType: 'checkout', subjectId: randomUUID(), targetId: randomUUID(), to: { none: true }, facts: { summary: 'break-glass elsewhere' } });
    const otherType = await notify({ type: 'alert.cleanup_failed', subjectType: 'checkout', subjectId: randomUUID(), targetId, to: { none: true }, facts: { summary: 'cleanup failed' } });
    const mine = (await log(`?channelId=${channelId}`)).items;
    expect(mine.map((d) => d.eventId)).toEqual([routed]);
    expect(mine.map((d) => d.eventId)).not.toContain(elsewhere);
    expect(mine.map((d) => d.eventId)).not.toContain(otherType);
    expect(mine[0]).toMatchObject({ eventType: 'alert.break_glass', channel: { id: channelId, kind: 'webhook', name: 'routed' }, recipient: 'routed', recipientUserId: null });
    await as(admin).delete(`/v1/notification-routes/${route.body.id}`, true).expect(204);
  });

  it('a test message goes to that channel alone, signed with its secret; the log shows it sent; a disabled channel is 409 CHANNEL_DISABLED', async () => {
    const { id, secret: s } = await webhook('tested');
    expect((await as(admin).post(`/v1/notification-channels/${id}/test`).expect(401)).body.code).toBe('MFA_REQUIRED');
    expect((await as(auditor).post(`/v1/notification-channels/${id}/test`, {}, true).expect(403)).body.code).toBe('FORBIDDEN');
    const res = await as(admin).post(`/v1/notification-channels/${id}/test`, {}, true).expect(202);
    expect(res.body).toEqual({ eventId: expect.any(String), deliveryId: expect.any(String), status: 'pending' });
    const { deliveryId, eventId } = res.body as { deliveryId: string; eventId: string };
    const [row] = await eventually(
      async () => (await log(`?eventType=notification.test&channelId=${id}`)).items,
      (items) => items.length === 1 && items[0].status !== 'pending',
    );
    expect(row).toMatchObject({ id: deliveryId, eventId, eventType: 'notification.test', status: 'sent', attempts: 1, lastError: null, channel: { id, kind: 'webhook', name: 'tested' }, recipient: 'tested' });
    expect(row.sentAt).toEqual(expect.any(String));
    // only this channel was told (no person, no other channel)
    expect((await vault.db.query('SELECT id FROM notification_deliveries WHERE event_id = $1', [eventId])).length).toBe(1);
    const got = received.find((r) => r.headers['x-vault-delivery'] === deliveryId);
    expect(got).toBeDefined();
    expect(verifyVaultSignature(s, got!.headers['x-vault-signature'] as string, got!.body)).toBe(true);
    expect(JSON.parse(got!.body)).toMatchObject({ id: deliveryId, type: 'notification.test', subject: { type: 'channel', id } });
    expect(got!.body).not.toContain(s);
    expect(await auditOf('notification.test_sent', id)).toEqual([{ name: 'tested', kind: 'webhook', eventId, deliveryId }]);

    await as(admin).patch(`/v1/notification-channels/${id}`, { enabled: false }, true).expect(200);
    expect((await as(admin).post(`/v1/notification-channels/${id}/test`, {}, true).expect(409)).body.code).toBe('CHANNEL_DISABLED');
    await as(admin).post(`/v1/notification-channels/${randomUUID()}/test`, {}, true).expect(404);
  });

  it('the delivery log: newest first in keyset pages, filtered by status, type, channel, recipient and time; auditors read it, operators cannot', async () => {
    const since = (await vault.db.query<{ now: Date }>('SELECT now() AS now'))[0].now.toISOString();
    const people = await Promise.all([vault.createUser(['approver']), vault.createUser(['approver'])]);
    const events: string[] = [];
    for (let i = 0; i < 3; i++) {
      events.push(await notify({ type: 'approval.requested', subjectType: 'checkout', subjectId: randomUUID(), to: { users: people.map((p) => p.id) }, facts: { summary: `request ${i}`, requester: 'olivia' } }));
    }
    // without VAULT_SMTP_HOST, people's e-mail is recorded as undeliverable at once
    const pages: Delivery[][] = [];
    let cursor: string | null = null;
    do {
      const page: Page<Delivery> = await log(`?since=${encodeURIComponent(since)}&eventType=approval.requested&limit=4${cursor ? `&cursor=${cursor}` : ''}`);
      pages.push(page.items);
      cursor = page.nextCursor;
    } while (cursor);
    const rows = pages.flat();
    expect(pages.map((p) => p.length)).toEqual([4, 2]);
    expect(rows.map((d) => d.eventId)).toEqual([events[2], events[2], events[1], events[1], events[0], events[0]]);
    expect(new Set(rows.map((d) => d.id)).size).toBe(6);
    for (const d of rows) {
      expect(d).toMatchObject({ eventType: 'approval.requested', status: 'no_address', attempts: 0, channel: { id: null, kind: 'email', name: null }, sentAt: null });
      expect(people.map((p) => p.id)).toContain(d.recipientUserId);
      expect(people.map((p) => p.username)).toContain(d.recipient); // no address: the username says who was not told
    }
    expect(rows.find((d) => d.eventId === events[0])?.summary).toBe('request 0');

    const one = await log(`?recipientUserId=${people[0].id}`);
    expect(one.items.map((d) => d.eventId)).toEqual([events[2], events[1], events[0]]);
    expect((await log(`?status=no_address&recipientUserId=${people[1].id}`)).items).toHaveLength(3);
    expect((await log(`?status=sent&recipientUserId=${people[1].id}`)).items).toEqual([]);
    expect((await log(`?since=${encodeURIComponent(new Date(Date.now() + 3_600_000).toISOString())}`)).items).toEqual([]);

    expect((await as(auditor).get(`/v1/notifications?recipientUserId=${people[0].id}`).expect(200)).body.items).toHaveLength(3);
    expect((await as(operator).get('/v1/notifications').expect(403)).body.code).toBe('FORBIDDEN');
    for (const q of ['status=lost', 'eventType=no.such', 'channelId=x', 'recipientUserId=1', 'since=yesterday', 'cursor=abc', 'limit=0', 'unknown=1']) {
      expect({ q, code: (await as(auditor).get(`/v1/notifications?${q}`).expect(400)).body.code }).toEqual({ q, code: 'VALIDATION_FAILED' });
    }
  });

  it('deleting a channel takes its routes and fails what it still had to deliver; the log keeps its deliveries', async () => {
    const { id } = await webhook('short-lived');
    await as(admin).post('/v1/notification-routes', { channelId: id, eventTypes: ['alert.audit_verify_failed'] }, true).expect(201);
    // a delivery still pending: due later, set in the same transaction, so no sweep takes it first
    const eventId = await vault.get(UnitOfWork).run(async (tx) => {
      const written = await tx.notify({ type: 'alert.audit_verify_failed', subjectType: 'audit', to: { none: true }, facts: { summary: 'chain broken' } });
      await tx.em.query("UPDATE notification_deliveries SET next_attempt_at = now() + interval '1 hour' WHERE event_id = $1", [written]);
      return written;
    });
    expect((await as(admin).delete(`/v1/notification-channels/${id}`).expect(401)).body.code).toBe('MFA_REQUIRED');
    await as(admin).delete(`/v1/notification-channels/${id}`, true).expect(204);
    await as(admin).get(`/v1/notification-channels/${id}`).expect(404);
    expect(await vault.db.query('SELECT id FROM notification_routes WHERE channel_id = $1', [id])).toEqual([]);
    const [d] = (await log('?eventType=alert.audit_verify_failed')).items.filter((x) => x.eventId === eventId);
    expect(d).toMatchObject({ status: 'failed', recipient: 'short-lived', channel: { id: null, kind: 'webhook', name: null }, lastError: expect.stringMatching(/^CHANNEL_DELETED/) });
    expect(await auditOf('notification.channel_deleted', id)).toEqual([{ name: 'short-lived', kind: 'webhook', config: { url: hookUrl }, enabled: true, routes: 1, abandonedDeliveries: 1 }]);
    await as(admin).delete(`/v1/notification-channels/${id}`, true).expect(404);
  });

  it('people: an admin sets or clears a user e-mail; a person sets their own and mutes optional kinds with a step-up code, never a required one', async () => {
    const alice = await vault.createUser(['operator', 'approver']);
    const set = await as(admin).patch(`/v1/users/${alice.id}`, { email: 'alice@example.com' }, true).expect(200);
    expect(set.body).toMatchObject({ id: alice.id, email: 'alice@example.com', mutedNotifications: [] });
    const [audited] = (await auditOf('user.updated', alice.id)).slice(-1);
    expect(audited).toMatchObject({ before: { email: null }, after: { email: 'alice@example.com' } });
    expect((await as(admin).patch(`/v1/users/${alice.id}`, { email: 'not an address' }, true).expect(400)).body.code).toBe('VALIDATION_FAILED');
    await as(admin).patch(`/v1/users/${alice.id}`, { email: null }, true).expect(200);
    expect((await as(admin).get(`/v1/users/${alice.id}`).expect(200)).body.email).toBeNull();

    // her own: the step-up code, since approval requests go to this address
    expect((await as(alice).patch('/v1/me', { email: 'alice@corp.example' }).expect(401)).body.code).toBe('MFA_REQUIRED');
    const mine = await as(alice).patch('/v1/me', { email: 'alice@corp.example', mutedNotifications: ['request.approved', 'checkout.expiring'] }, true).expect(200);
    expect(mine.body).toMatchObject({ id: alice.id, kind: 'user', email: 'alice@corp.example', mutedNotifications: ['checkout.expiring', 'request.approved'] });
    expect((await as(alice).get('/v1/me').expect(200)).body).toMatchObject({ email: 'alice@corp.example', mutedNotifications: ['checkout.expiring', 'request.approved'] });
    expect((await as(admin).get(`/v1/users/${alice.id}`).expect(200)).body).toMatchObject({ email: 'alice@corp.example', mutedNotifications: ['checkout.expiring', 'request.approved'] });
    expect(await auditOf('user.notifications_updated', alice.id)).toEqual([
      { before: { email: null, mutedNotifications: [] }, after: { email: 'alice@corp.example', mutedNotifications: ['checkout.expiring', 'request.approved'] } },
    ]);

    // a required kind, an unknown one, a bad address: refused before the code is used, nothing changes
    const before = await state();
    const required = await as(alice).patch('/v1/me', { mutedNotifications: ['request.denied', 'approval.requested'] }, true).expect(400);
    expect(required.body).toMatchObject({ code: 'NOTIFICATION_REQUIRED', message: expect.stringContaining('approval.requested') });
    for (const body of [{ mutedNotifications: ['alert.break_glass'] }, { mutedNotifications: ['notification.test'] }]) {
      expect((await as(alice).patch('/v1/me', body, true).expect(400)).body.code).toBe('NOTIFICATION_REQUIRED');
    }
    for (const body of [{ mutedNotifications: ['no.such_kind'] }, { mutedNotifications: 'request.approved' }, { email: 'alice@' }, { email: null }, { roles: ['admin'] }]) {
      expect((await as(alice).patch('/v1/me', body, true).expect(400)).body.code).toBe('VALIDATION_FAILED');
    }
    expect(await state()).toBe(before);

    // what the mutes do: an optional kind she muted is recorded as muted, a required one is still for her
    const approved = await notify({ type: 'request.approved', subjectType: 'checkout', subjectId: randomUUID(), to: { users: [alice.id] }, facts: { summary: 'approved' } });
    const asked = await notify({ type: 'approval.requested', subjectType: 'checkout', subjectId: randomUUID(), to: { users: [alice.id] }, facts: { summary: 'please decide' } });
    const hers = (await log(`?recipientUserId=${alice.id}`)).items;
    expect(hers.find((d) => d.eventId === approved)).toMatchObject({ status: 'muted', recipient: 'alice@corp.example' });
    expect(hers.find((d) => d.eventId === asked)?.status).not.toBe('muted');

    // unmute all; a service token has no e-mail and cannot change one
    expect((await as(alice).patch('/v1/me', { mutedNotifications: [] }, true).expect(200)).body.mutedNotifications).toEqual([]);
    const token = await as(admin).post('/v1/service-tokens', { name: 'notif auditor', roles: ['auditor'] }, true).expect(201);
    const svc = `Bearer ${token.body.token as string}`;
    expect((await vault.http().get('/v1/me').set('Authorization', svc).expect(200)).body).toMatchObject({ kind: 'service', email: null, mutedNotifications: [] });
    expect((await vault.http().patch('/v1/me').set('Authorization', svc).set('X-MFA-Code', '123456').send({ email: 'bot@example.com' }).expect(403)).body.code).toBe('FORBIDDEN');
  });

  it('a webhook, Slack or Teams URL whose host is an internal address is 400 CHANNEL_CONFIG_INVALID, at creation and change (review 3, R2)', async () => {
    for (const url of ['https://169.254.169.254/latest/meta-data/iam/', 'https://10.1.2.3:8443/actuator', 'https://[fd00::1]/', 'https://[::ffff:a9fe:a9fe]/', 'https://192.168.0.10/hook']) {
      const res = await as(admin).post('/v1/notification-channels', { name: 'ssrf', kind: 'webhook', config: { url }, secret: secret() }, true).expect(400);
      expect([url, res.body.code]).toEqual([url, 'CHANNEL_CONFIG_INVALID']);
    }
    for (const kind of ['slack', 'teams']) {
      const res = await as(admin).post('/v1/notification-channels', { name: 'ssrf', kind, config: {}, secret: 'https://169.254.169.254/services/T0/B0/x' }, true).expect(400);
      expect(res.body).toMatchObject({ code: 'CHANNEL_CONFIG_INVALID', message: expect.not.stringContaining('169.254') });
    }
    expect(await vault.db.query("SELECT id FROM notification_channels WHERE name = 'ssrf'")).toEqual([]);
    const { id } = await webhook('egress-check');
    expect((await as(admin).patch(`/v1/notification-channels/${id}`, { config: { url: 'https://10.0.0.1/x' } }, true).expect(400)).body.code).toBe('CHANNEL_CONFIG_INVALID');
    // a public host, and the loopback receiver this vault's VAULT_NOTIFY_ALLOWED_HOSTS lists, are fine
    await as(admin).patch(`/v1/notification-channels/${id}`, { config: { url: 'https://hooks.example.com/in' } }, true).expect(200);
    await as(admin).patch(`/v1/notification-channels/${id}`, { config: { url: hookUrl } }, true).expect(200);
    await as(admin).delete(`/v1/notification-channels/${id}`, true).expect(204);
  });

  it("a generic webhook URL's query (a token) is not shown to auditors nor kept in the audit log (review 3, R3)", async () => {
    const token = randomBytes(12).toString('hex');
    const url = `https://chat.example.test/v1/spaces/AAA/messages?key=k&token=${token}`;
    const created = await as(admin).post('/v1/notification-channels', { name: 'gchat', kind: 'webhook', config: { url }, secret: secret() }, true).expect(201);
    expect(created.body.config.url).toBe('https://chat.example.test/v1/spaces/AAA/messages?…');
    const seen = await as(auditor).get(`/v1/notification-channels/${created.body.id}`).expect(200);
    expect(seen.body.config.url).toBe('https://chat.example.test/v1/spaces/AAA/messages?…');
    expect(JSON.stringify((await as(auditor).get('/v1/notification-channels?limit=200').expect(200)).body)).not.toContain(token);
    await as(admin).patch(`/v1/notification-channels/${created.body.id}`, { enabled: false }, true).expect(200);
    const audit = JSON.stringify(await vault.db.query('SELECT details FROM audit_events WHERE subject_id = $1', [created.body.id]));
    expect(audit).toContain('messages?…');
    expect(audit).not.toContain(token);
    // the whole URL is what the vault posts to
    const [row] = await vault.db.query<{ config: { url: string } }>('SELECT config FROM notification_channels WHERE id = $1', [created.body.id]);
    expect(row.config.url).toBe(url);
    await as(admin).delete(`/v1/notification-channels/${created.body.id}`, true).expect(204);
  });

  it('no answer, audit event or delivery row holds a channel secret', async () => {
    const secrets = (await vault.db.query<{ id: string; secret: Buffer | null }>('SELECT id, secret FROM notification_channels')).flatMap((c) =>
      c.secret ? [vault.get(SecretBoxService).decrypt(channelSecretRef(c.id), c.secret)] : [],
    );
    expect(secrets.length).toBeGreaterThanOrEqual(3);
    const audit = JSON.stringify(await vault.db.query('SELECT details FROM audit_events'));
    const deliveries = JSON.stringify(await vault.db.query('SELECT d.*, e.payload FROM notification_deliveries d JOIN notification_events e ON e.id = d.event_id'));
    const answers = JSON.stringify([(await as(admin).get('/v1/notification-channels?limit=200').expect(200)).body, (await log('?limit=200')).items]);
    for (const s of secrets) {
      expect(audit).not.toContain(s);
      expect(deliveries).not.toContain(s);
      expect(answers).not.toContain(s);
    }
  });
});

describe('VAULT_NOTIFY_EMAIL_DOMAINS: addresses are not verified, so they stay inside the organisation (review 3, R1)', () => {
  let vault: TestVault;
  let admin: TestUser;
  let operator: TestUser;
  const as = (u: TestUser) => actingAs(vault, u);

  beforeAll(async () => {
    vault = await startTestVault({ env: { VAULT_NOTIFY_EMAIL_DOMAINS: 'corp.example,subsidiary.example' } });
    admin = await vault.admin();
    operator = await vault.createUser(['operator']);
  }, 60_000);
  afterAll(async () => {
    await vault?.close();
  });

  it('PATCH /v1/me, PATCH /v1/users/:id and an e-mail channel take only addresses in the listed domains (400 EMAIL_DOMAIN_NOT_ALLOWED, nothing changed)', async () => {
    for (const email of ['ceo@victim.example', 'x@corp.example.evil.example', 'x@sub.corp.example']) {
      const res = await as(operator).patch('/v1/me', { email }, true).expect(400);
      expect([email, res.body.code]).toEqual([email, 'EMAIL_DOMAIN_NOT_ALLOWED']);
      expect((await as(admin).patch(`/v1/users/${operator.id}`, { email }, true).expect(400)).body.code).toBe('EMAIL_DOMAIN_NOT_ALLOWED');
    }
    expect((await as(operator).get('/v1/me').expect(200)).body.email).toBeNull();
    expect((await as(operator).patch('/v1/me', { email: 'op@Corp.Example' }, true).expect(200)).body.email).toBe('op@Corp.Example');
    expect((await as(admin).patch(`/v1/users/${operator.id}`, { email: 'op@subsidiary.example' }, true).expect(200)).body.email).toBe('op@subsidiary.example');
    await as(admin).patch(`/v1/users/${operator.id}`, { email: null }, true).expect(200);

    const bad = await as(admin).post('/v1/notification-channels', { name: 'oncall', kind: 'email', config: { to: ['secops@corp.example', 'someone@gmail.example'] } }, true).expect(400);
    expect(bad.body.code).toBe('EMAIL_DOMAIN_NOT_ALLOWED');
    const ok = await as(admin).post('/v1/notification-channels', { name: 'oncall', kind: 'email', config: { to: ['secops@corp.example'] } }, true).expect(201);
    expect((await as(admin).patch(`/v1/notification-channels/${ok.body.id}`, { config: { to: ['x@outside.example'] } }, true).expect(400)).body.code).toBe('EMAIL_DOMAIN_NOT_ALLOWED');
  });
});

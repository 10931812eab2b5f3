/**
 * The senders against real receivers: a real SMTP server in its own process (test/support/smtp-server.ts: STARTTLS,
 * AUTH, a CA made for the run) and a real HTTP receiver (test/support/webhook-receiver.ts), driven through the
 * outbox and the deliverer of the module tier where retries matter.
 *
 * E-mail: text and HTML parts over STARTTLS with a login, Message-ID and X-Vault-Delivery = the delivery id, the
 * portal link; an e-mail channel's fixed addresses; implicit TLS; a wrong CA, a server without STARTTLS, a wrong
 * password, an unreachable server, 4xx, 5xx and a server that never answers each end in their code, and nothing is
 * sent where TLS or the login failed. Webhooks: the signature verifies with the shared secret and not with an altered
 * body, another secret or an old timestamp; retries after 500s and a timeout carry the same idempotency key; a 4xx
 * and a redirect are not retried; no error names the URL's query or the secret. Slack and Teams bodies have their
 * formats and go to the URL held as the channel's secret.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import dns from 'node:dns/promises';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { AddressInfo, createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SecretBoxService } from '../../src/crypto/secret-box.service';
import { UnitOfWork } from '../../src/database/unit-of-work';
import { channelSecretRef, NotificationDeliverer } from '../../src/notifications/deliverer';
import type { NotifyFn } from '../../src/notifications/outbox';
import { SlackSender, TeamsSender } from '../../src/notifications/senders/chat.senders';
import { EmailSender } from '../../src/notifications/senders/email.sender';
import { DeliveryError, OutgoingDelivery, RenderedMessage } from '../../src/notifications/senders/sender';
import { signVaultPayload, verifyVaultSignature, WebhookSender } from '../../src/notifications/senders/webhook.sender';
import { freePort } from '../support/process';
import { buildModule, ModuleHarness } from '../support/module-harness';
import { startSmtpServer, SmtpServer } from '../support/smtp-server';
import { makeCertificates } from '../support/targets/mariadb-tls';
import { startWebhookReceiver, WebhookReceiver } from '../support/webhook-receiver';

const PUBLIC_URL = 'https://vault.example.test';

describe('notification senders against a real SMTP server and a real HTTP receiver', () => {
  let smtp: SmtpServer;
  let hook: WebhookReceiver;
  let h: ModuleHarness;
  let otherCa: string;

  beforeAll(async () => {
    [smtp, hook] = await Promise.all([startSmtpServer(), startWebhookReceiver()]);
    otherCa = mkdtempSync(join(tmpdir(), 'vault-other-ca-'));
    await makeCertificates(otherCa);
    h = await buildModule({ env: { ...smtp.env, VAULT_PUBLIC_URL: PUBLIC_URL, VAULT_NOTIFY_TIMEOUT_MS: '1500', VAULT_NOTIFY_MAX_ATTEMPTS: '6' } });
  }, 90_000);
  afterAll(async () => {
    await h?.close();
    await Promise.all([smtp?.stop(), hook?.stop()]);
    if (otherCa) rmSync(otherCa, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await h.get(NotificationDeliverer).idle();
    await h.db.query('DELETE FROM notification_routes');
    await h.db.query('DELETE FROM notification_channels');
    await smtp.clearFailures();
    smtp.reset();
    hook.reset();
  });

  const deliverer = () => h.get(NotificationDeliverer);

  /** Writes an event and waits for the delivery its commit nudged. */
  const notify = async (input: Parameters<NotifyFn>[0]) => {
    const eventId = await h.get(UnitOfWork).run(({ notify }) => notify(input));
    await deliverer().idle();
    return eventId;
  };
  const deliveries = (eventId: string) =>
    h.db.query<{ id: string; status: string; attempts: number; last_error: string | null; channel_kind: string; recipient: string }>(
      'SELECT id, status, attempts, last_error, channel_kind, recipient FROM notification_deliveries WHERE event_id = $1 ORDER BY recipient',
      [eventId],
    );
  /** The backoff is the database's: make every pending delivery due now, and sweep. */
  const retryNow = async () => {
    await h.db.query("UPDATE notification_deliveries SET next_attempt_at = now() WHERE status = 'pending'");
    await deliverer().sweep();
  };

  async function person(email: string): Promise<string> {
    const id = randomUUID();
    await h.db.query('INSERT INTO users (id, username, password_hash, roles, email) VALUES ($1, $2, $3, $4, $5)', [id, `p${id.slice(0, 8)}`, 'not-a-hash', ['approver'], email]);
    return id;
  }

  /** A channel routed every event type; its secret encrypted as the vault stores it. */
  async function channel(kind: 'email' | 'webhook' | 'slack' | 'teams', config: object, secret?: string): Promise<string> {
    const id = randomUUID();
    const blob = secret === undefined ? null : h.get(SecretBoxService).encrypt(channelSecretRef(id), secret);
    await h.db.query('INSERT INTO notification_channels (id, name, kind, config, secret) VALUES ($1, $2, $3, $4::jsonb, $5)', [id, `${kind}-${id.slice(0, 6)}`, kind, JSON.stringify(config), blob]);
    await h.db.query('INSERT INTO notification_routes (id, channel_id, event_types) VALUES ($1, $2, $3)', [randomUUID(), id, []]);
    return id;
  }

  const checkoutId = randomUUID();
  const approvalRequest = (to: Parameters<NotifyFn>[0]['to']): Parameters<NotifyFn>[0] => ({
    type: 'approval.requested',
    subjectType: 'checkout',
    subjectId: checkoutId,
    to,
    facts: { summary: 'alice asks to check out root on db-prod-1', requester: 'alice', target: 'db-prod-1', account: 'root', justification: 'INC-4711 <disk full> & more', deadline: '2030-01-01T12:00:00.000Z' },
  });

  /** A message as the deliverer renders it, for the senders called directly. */
  const message = (id: string): RenderedMessage => ({
    subject: '[vault] Test notification: a test',
    text: 'a test',
    html: '<p>a test</p>',
    payload: { id, eventId: randomUUID(), type: 'notification.test', occurredAt: new Date().toISOString(), subject: { type: 'channel', id: null }, summary: 'a test', link: null, facts: {} },
  });
  const emailTo = (to: string): OutgoingDelivery => ({ id: randomUUID(), eventType: 'notification.test', to, channel: { id: null, name: 'e-mail', kind: 'email', config: {}, secret: null } });
  /** An EmailSender of its own (another CA, password, port …). */
  const emailSender = (smtpConfig: Partial<NonNullable<ModuleHarness['config']['smtp']>>) => {
    const s = new EmailSender({ ...h.config, smtp: { ...h.config.smtp!, ...smtpConfig } });
    s.onModuleInit();
    return s;
  };
  const waitFor = async (condition: () => boolean, ms = 5000) => {
    for (const end = Date.now() + ms; !condition(); await new Promise((r) => setTimeout(r, 20))) {
      if (Date.now() > end) throw new Error('condition not met in time');
    }
  };
  const failure = (p: Promise<unknown>) =>
    p.then(
      () => {
        throw new Error('expected a DeliveryError');
      },
      (e: unknown) => {
        if (!(e instanceof DeliveryError)) throw e;
        return e;
      },
    );

  describe('e-mail', () => {
    it('the approver receives the request over STARTTLS with a login: text and HTML parts, Message-ID = delivery id, the portal link', async () => {
      const approver = await person('approver.one@example.test');
      const eventId = await notify(approvalRequest({ users: [approver] }));
      const [d] = await deliveries(eventId);
      const [mail] = await smtp.waitFor((m) => m.deliveryId === d.id);
      expect(mail.secure).toBe(true); // the server saw the message inside TLS (STARTTLS)
      expect(mail.tlsProtocol).toMatch(/^TLSv1\.[23]$/);
      expect(mail.user).toBe(smtp.username);
      expect(smtp.counters.authOk).toBeGreaterThanOrEqual(1);
      expect(mail.messageId).toBe(`${d.id}@vault`);
      expect(mail.envelope).toEqual({ from: smtp.from, to: ['approver.one@example.test'] });
      expect(mail.parsed?.to && 'text' in mail.parsed.to ? mail.parsed.to.text : '').toBe('approver.one@example.test');
      expect(mail.subject).toContain('Approval requested');
      const link = `${PUBLIC_URL}/portal/checkouts/${checkoutId}`;
      expect(mail.text).toContain('alice asks to check out root on db-prod-1');
      expect(mail.text).toContain('Justification: INC-4711 <disk full> & more');
      expect(mail.text).toContain(link);
      expect(mail.html).toContain(`<a href="${link}">`);
      expect(mail.html).toContain('INC-4711 &lt;disk full&gt; &amp; more');
      expect(mail.raw.toString()).toMatch(/multipart\/alternative/i);
      expect(mail.parsed?.headers.get('auto-submitted')).toBe('auto-generated');
      expect(await deliveries(eventId)).toEqual([expect.objectContaining({ status: 'sent', attempts: 1, last_error: null })]);
    });

    it("an e-mail channel's fixed addresses get one message", async () => {
      await channel('email', { to: ['secops@example.test', 'oncall@example.test'] });
      const eventId = await notify({ type: 'alert.break_glass', subjectType: 'checkout', subjectId: randomUUID(), to: { none: true }, facts: { summary: 'break-glass checkout of root on db-prod-1', requester: 'bob' } });
      const [d] = await deliveries(eventId);
      const [mail] = await smtp.waitFor((m) => m.deliveryId === d.id);
      expect(mail.envelope.to.sort()).toEqual(['oncall@example.test', 'secops@example.test']);
      expect(mail.secure).toBe(true);
      expect(d).toMatchObject({ status: 'sent', channel_kind: 'email' });
    });

    it('implicit TLS (VAULT_SMTP_TLS=tls)', async () => {
      const tlsServer = await startSmtpServer({ tls: 'tls' });
      try {
        const sender = new EmailSender({ ...h.config, smtp: { host: tlsServer.host, port: tlsServer.port, tls: 'tls', username: tlsServer.username, password: tlsServer.password, from: tlsServer.from, caFile: tlsServer.caFile } });
        sender.onModuleInit();
        const d = emailTo('someone@example.test');
        await sender.send(d, message(d.id), AbortSignal.timeout(5000));
        const [mail] = await tlsServer.waitFor(1);
        expect(mail).toMatchObject({ secure: true, user: tlsServer.username, messageId: `${d.id}@vault`, deliveryId: d.id });
      } finally {
        await tlsServer.stop();
      }
    });

    it('a server certificate from another CA: SMTP_TLS_FAILED, and nothing was sent (no login, no MAIL)', async () => {
      const d = emailTo('someone@example.test');
      const e = await failure(emailSender({ caFile: join(otherCa, 'ca.pem') }).send(d, message(d.id), AbortSignal.timeout(5000)));
      expect(e).toMatchObject({ code: 'SMTP_TLS_FAILED', retryable: true });
      await smtp.settled();
      expect(smtp.counters).toMatchObject({ authOk: 0, authFailed: 0, mailFrom: 0 });
      expect(smtp.attempts).toHaveLength(0);
    });

    it('a server that offers no STARTTLS gets nothing in clear: SMTP_TLS_FAILED', async () => {
      const plain = await startSmtpServer({ offerStartTls: false, requireTls: false });
      try {
        const sender = emailSender({ port: plain.port, username: plain.username, password: plain.password });
        const d = emailTo('someone@example.test');
        const e = await failure(sender.send(d, message(d.id), AbortSignal.timeout(5000)));
        expect(e.code).toBe('SMTP_TLS_FAILED');
        await plain.settled();
        expect(plain.counters).toMatchObject({ connections: 1, secured: 0, authOk: 0, authFailed: 0, mailFrom: 0 });
      } finally {
        await plain.stop();
      }
    });

    it('a wrong password: SMTP_AUTH_FAILED, nothing sent, the password nowhere in the error', async () => {
      const d = emailTo('someone@example.test');
      const wrong = `wrong-${randomBytes(8).toString('hex')}`;
      const e = await failure(emailSender({ password: wrong }).send(d, message(d.id), AbortSignal.timeout(5000)));
      expect(e).toMatchObject({ code: 'SMTP_AUTH_FAILED', retryable: true });
      await smtp.settled();
      expect(smtp.counters).toMatchObject({ authFailed: 1, mailFrom: 0 });
      expect(e.message).not.toContain(wrong);
      expect(e.message).not.toContain(smtp.username);
    });

    it('no server listening: SMTP_UNREACHABLE (retryable)', async () => {
      const d = emailTo('someone@example.test');
      const e = await failure(emailSender({ port: await freePort() }).send(d, message(d.id), AbortSignal.timeout(5000)));
      expect(e).toMatchObject({ code: 'SMTP_UNREACHABLE', retryable: true });
    });

    it('4xx is SMTP_TEMPORARY (retried), 5xx is SMTP_REJECTED (not), and neither message repeats the server or the address', async () => {
      const sender = h.get(EmailSender);
      await smtp.failNext(1, { code: 451 });
      const d1 = emailTo('deferred.person@example.test');
      const temporary = await failure(sender.send(d1, message(d1.id), AbortSignal.timeout(5000)));
      expect(temporary).toMatchObject({ code: 'SMTP_TEMPORARY', retryable: true });
      await smtp.failNext(1, { code: 550, stage: 'rcpt' });
      const d2 = emailTo('rejected.person@example.test');
      const rejected = await failure(sender.send(d2, message(d2.id), AbortSignal.timeout(5000)));
      expect(rejected).toMatchObject({ code: 'SMTP_REJECTED', retryable: false });
      for (const e of [temporary, rejected]) {
        expect(e.message).not.toMatch(/Test server|person@example|try again|permanent/i);
      }
      await waitFor(() => smtp.attempts.length >= 1); // the server process reports a refusal a moment after the client saw it
      expect(smtp.attempts.map((m) => m.outcome)).toEqual(['rejected 451']);
      expect(smtp.messages).toHaveLength(0);
    });

    it('a server that never answers: TIMEOUT at the deadline, the connection closed', async () => {
      await smtp.hangNext(1);
      const d = emailTo('someone@example.test');
      const started = Date.now();
      const e = await failure(h.get(EmailSender).send(d, message(d.id), AbortSignal.timeout(700)));
      expect(e).toMatchObject({ code: 'TIMEOUT', retryable: true });
      expect(Date.now() - started).toBeLessThan(5000);
      await waitFor(() => smtp.attempts.length >= 1);
      expect(smtp.attempts.map((m) => m.outcome)).toEqual(['hung']);
      await waitFor(() => smtp.counters.closed === smtp.counters.connections); // the sender hung up
    });

    it('a deferred delivery is retried by the deliverer with the same Message-ID', async () => {
      const approver = await person('approver.two@example.test');
      await smtp.failNext(2, { code: 421 });
      const eventId = await notify(approvalRequest({ users: [approver] }));
      await retryNow();
      await retryNow();
      const [d] = await deliveries(eventId);
      expect(d).toMatchObject({ status: 'sent', attempts: 3, last_error: null });
      await smtp.waitFor((m) => m.messageId === `${d.id}@vault`); // the server process reports what it accepted a moment later
      expect(smtp.attempts.map((m) => [m.messageId, m.outcome])).toEqual([
        [`${d.id}@vault`, 'rejected 421'],
        [`${d.id}@vault`, 'rejected 421'],
        [`${d.id}@vault`, 'accepted'],
      ]);
    });
  });

  describe('webhooks', () => {
    const secret = () => `whsec-${randomBytes(24).toString('base64url')}`;

    it('the signature verifies with the shared secret; an altered body, another secret or an old timestamp does not', async () => {
      const key = secret();
      await channel('webhook', { url: hook.url('/vault-events') }, key);
      const eventId = await notify(approvalRequest({ none: true }));
      const [d] = await deliveries(eventId);
      const [req] = await hook.waitFor(1);
      expect(req.method).toBe('POST');
      expect(req.path).toBe('/vault-events');
      expect(req.headers['content-type']).toBe('application/json');
      expect(req.headers['idempotency-key']).toBe(d.id);
      expect(req.headers['x-vault-delivery']).toBe(d.id);
      expect(req.json).toMatchObject({ id: d.id, eventId, type: 'approval.requested', subject: { type: 'checkout', id: checkoutId }, link: `${PUBLIC_URL}/portal/checkouts/${checkoutId}` });
      expect(req.body).not.toContain(key);

      const header = req.headers['x-vault-signature'] as string;
      expect(header).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
      const t = Number(/t=(\d+)/.exec(header)![1]);
      expect(Math.abs(t - Date.now() / 1000)).toBeLessThan(60);
      expect(verifyVaultSignature(key, header, req.rawBody)).toBe(true);
      expect(verifyVaultSignature(key, header, req.body)).toBe(true);

      const altered = req.body.replace('alice', 'mallory');
      expect(altered).not.toBe(req.body);
      expect(verifyVaultSignature(key, header, altered)).toBe(false);
      expect(verifyVaultSignature(secret(), header, req.rawBody)).toBe(false);
      expect(verifyVaultSignature(key, header.replace(/t=\d+/, `t=${t + 1}`), req.rawBody)).toBe(false); // the timestamp is signed
      // a replay later than the window, and a body signed long ago
      expect(verifyVaultSignature(key, header, req.rawBody, 300, t + 301)).toBe(false);
      expect(verifyVaultSignature(key, signVaultPayload(key, req.rawBody, t - 3600), req.rawBody)).toBe(false);
      expect(verifyVaultSignature(key, signVaultPayload(key, req.rawBody, t - 3600), req.rawBody, 7200)).toBe(true);
      expect(verifyVaultSignature(key, undefined, req.rawBody)).toBe(false);
      expect(verifyVaultSignature(key, 'v1=deadbeef', req.rawBody)).toBe(false);
    });

    it('retries after 500s and a timeout carry the same Idempotency-Key; no error names the query', async () => {
      const key = secret();
      await channel('webhook', { url: hook.url('/hook?token=query-secret-123456') }, key);
      hook.reply({ status: 500 }, { status: 503 }, { delayMs: 4000 }, { status: 429 });
      const eventId = await notify(approvalRequest({ none: true }));
      const errors: string[] = [];
      for (let i = 0; i < 4; i++) {
        const [d] = await deliveries(eventId);
        expect(d.status).toBe('pending');
        errors.push(d.last_error ?? '');
        await retryNow();
      }
      const [d] = await deliveries(eventId);
      expect(d).toMatchObject({ status: 'sent', attempts: 5, last_error: null });
      expect(errors.map((e) => e.split(':')[0])).toEqual(['WEBHOOK_HTTP_500', 'WEBHOOK_HTTP_503', 'TIMEOUT', 'WEBHOOK_HTTP_429']);
      for (const e of errors) expect(e).not.toMatch(/query-secret|token|127\.0\.0\.1|whsec/);
      const requests = await hook.waitFor(5);
      expect(requests.map((r) => r.headers['idempotency-key'])).toEqual(Array(5).fill(d.id));
      expect(requests.map((r) => r.status)).toEqual([500, 503, null, 429, 200]);
      expect(requests[2].aborted).toBe(true); // the sender gave up at its deadline
      // every attempt is signed afresh over the same body
      expect(new Set(requests.map((r) => r.body)).size).toBe(1);
      for (const r of requests) expect(verifyVaultSignature(key, r.headers['x-vault-signature'] as string, r.rawBody)).toBe(true);
    });

    it('a 4xx other than 408/429 and a redirect are not retried (failed after one attempt); the redirect is not followed', async () => {
      await channel('webhook', { url: hook.url('/gone') }, secret());
      hook.reply({ status: 410 });
      const gone = await notify(approvalRequest({ none: true }));
      expect(await deliveries(gone)).toEqual([expect.objectContaining({ status: 'failed', attempts: 1, last_error: expect.stringMatching(/^WEBHOOK_HTTP_410: /) })]);

      await h.db.query('DELETE FROM notification_channels');
      await channel('webhook', { url: hook.url('/moved') }, secret());
      hook.reply({ status: 307, headers: { Location: hook.url('/elsewhere') } });
      const moved = await notify(approvalRequest({ none: true }));
      expect(await deliveries(moved)).toEqual([expect.objectContaining({ status: 'failed', attempts: 1, last_error: expect.stringMatching(/^WEBHOOK_HTTP_307: .*redirect/) })]);
      expect(hook.requests.map((r) => r.path)).toEqual(['/gone', '/moved']);
    });

    it('refuses to send without a secret; an unreachable receiver is WEBHOOK_UNREACHABLE', async () => {
      const sender = h.get(WebhookSender);
      const d: OutgoingDelivery = { id: randomUUID(), eventType: 'notification.test', channel: { id: randomUUID(), name: 'hook', kind: 'webhook', config: { url: hook.url('/hook') }, secret: null } };
      expect(await failure(sender.send(d, message(d.id), AbortSignal.timeout(2000)))).toMatchObject({ code: 'WEBHOOK_NO_SECRET', retryable: false });
      expect(hook.requests).toHaveLength(0);
      const closed = `http://127.0.0.1:${await freePort()}/hook?token=query-secret-654321`;
      const e = await failure(sender.send({ ...d, channel: { ...d.channel, config: { url: closed }, secret: secret() } }, message(d.id), AbortSignal.timeout(2000)));
      expect(e).toMatchObject({ code: 'WEBHOOK_UNREACHABLE', retryable: true });
      expect(e.message).not.toContain('query-secret');
      expect(e.message).not.toContain(closed);
    });
  });

  describe('egress: public addresses only (review 3, F6)', () => {
    const secret = () => `whsec-${randomBytes(24).toString('base64url')}`;
    /** The senders of a vault without VAULT_NOTIFY_ALLOWED_HOSTS. */
    const strictConfig = () => ({ ...h.config, notify: { ...h.config.notify, allowedHosts: { hosts: [], nets: [] } } });
    const hookTo = (url: string, key = secret()): OutgoingDelivery => ({ id: randomUUID(), eventType: 'notification.test', channel: { id: randomUUID(), name: 'hook', kind: 'webhook', config: { url }, secret: key } });

    it('loopback, private, link-local and metadata hosts are WEBHOOK_ADDRESS_REFUSED (not retried), nothing sent; Slack and Teams alike; the delivery log says so', async () => {
      const sender = new WebhookSender(strictConfig());
      for (const url of [hook.url('/x'), `http://localhost:${hook.port}/x`, 'https://169.254.169.254/latest/meta-data/', 'https://10.0.0.1:8443/admin', 'https://[fd00::1]/', 'https://[::ffff:127.0.0.1]/']) {
        const e = await failure(sender.send(hookTo(url), message(randomUUID()), AbortSignal.timeout(2000)));
        expect([url, e.code, e.retryable]).toEqual([url, 'WEBHOOK_ADDRESS_REFUSED', false]);
        expect(e.message).not.toMatch(/169\.254|10\.0\.0\.1|fd00|127\.0\.0\.1|localhost/);
      }
      for (const chat of [new SlackSender(strictConfig()), new TeamsSender(strictConfig())]) {
        const d: OutgoingDelivery = { id: randomUUID(), eventType: 'notification.test', channel: { id: randomUUID(), name: 'chat', kind: chat.kind, config: {}, secret: hook.secretUrl() } };
        expect(await failure(chat.send(d, message(d.id), AbortSignal.timeout(2000)))).toMatchObject({ code: 'WEBHOOK_ADDRESS_REFUSED', retryable: false });
      }
      expect(hook.requests).toHaveLength(0);
      // through the deliverer of a vault without the allow-list: failed after one attempt
      const strictHarness = await buildModule({ db: h.db, env: { ...smtp.env, VAULT_NOTIFY_ALLOWED_HOSTS: '' } });
      try {
        await strictHarness.get(NotificationDeliverer).idle();
        await channel('webhook', { url: hook.url('/internal') }, secret());
        const eventId = await strictHarness.get(UnitOfWork).run(({ notify }) => notify(approvalRequest({ none: true })));
        await strictHarness.get(NotificationDeliverer).idle();
        await deliverer().idle();
        expect(await deliveries(eventId)).toEqual([expect.objectContaining({ status: 'failed', attempts: 1, last_error: expect.stringMatching(/^WEBHOOK_ADDRESS_REFUSED: /) })]);
      } finally {
        await strictHarness.close();
      }
      expect(hook.requests).toHaveLength(0);
    });

    it('an allowed internal host: a closed port, a port that is not HTTP and a reset connection give one and the same error (no port oracle)', async () => {
      const sender = h.get(WebhookSender);
      const sockets: Socket[] = [];
      const reset = createServer((socket) => socket.destroy());
      const garbage = createServer((socket) => {
        sockets.push(socket);
        socket.end('SSH-2.0-OpenSSH_9.6\r\n');
      });
      await Promise.all([reset, garbage].map((srv) => new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))));
      try {
        const errors: string[] = [];
        for (const port of [await freePort(), (reset.address() as AddressInfo).port, (garbage.address() as AddressInfo).port, Number(new URL(h.db.url).port || 5432)]) {
          const e = await failure(sender.send(hookTo(`http://127.0.0.1:${port}/probe`), message(randomUUID()), AbortSignal.timeout(2000)));
          errors.push(`${e.code}: ${e.message} (${e.retryable})`);
        }
        expect(new Set(errors)).toEqual(new Set(['WEBHOOK_UNREACHABLE: the webhook could not be reached (true)']));
      } finally {
        sockets.forEach((socket) => socket.destroy());
        await Promise.all([reset, garbage].map((srv) => new Promise((r) => srv.close(r))));
      }
    });

    it('the connection goes to the address that was checked: a second resolution (DNS rebinding) is never asked', async () => {
      const sender = new WebhookSender({ ...h.config, notify: { ...h.config.notify, allowedHosts: { hosts: [], nets: ['127.0.0.1'] } } });
      const answers = ['127.0.0.1', '10.0.0.1'];
      const spy = jest.spyOn(dns, 'lookup').mockImplementation((async () => [{ address: answers.shift() ?? '10.0.0.1', family: 4 }]) as never);
      try {
        // the first (and only) answer is checked and used; the name itself resolves nowhere
        await sender.send(hookTo(`http://rebind.invalid:${hook.port}/pinned`), message(randomUUID()), AbortSignal.timeout(2000));
        expect(hook.requests.map((r) => [r.path, r.headers.host])).toEqual([['/pinned', `rebind.invalid:${hook.port}`]]);
        expect(spy).toHaveBeenCalledTimes(1);
        // the next time the name answers an internal address: refused
        expect(await failure(sender.send(hookTo(`http://rebind.invalid:${hook.port}/again`), message(randomUUID()), AbortSignal.timeout(2000)))).toMatchObject({ code: 'WEBHOOK_ADDRESS_REFUSED' });
        expect(hook.requests).toHaveLength(1);
      } finally {
        spy.mockRestore();
      }
    });
  });

  describe('Slack and Teams', () => {
    it('Slack: { text, blocks } with the summary, the facts and the link, to the URL held as the secret', async () => {
      const url = hook.secretUrl();
      await channel('slack', {}, url);
      const eventId = await notify(approvalRequest({ none: true }));
      const [d] = await deliveries(eventId);
      const [req] = await hook.waitFor(1);
      expect(req.path).toBe(new URL(url).pathname);
      expect(req.headers['idempotency-key']).toBe(d.id);
      expect(req.headers['content-type']).toBe('application/json');
      const body = req.json as { text: string; blocks: Array<Record<string, unknown>> };
      expect(body.text).toBe('Approval requested: alice asks to check out root on db-prod-1');
      expect(body.blocks.map((b) => b.type)).toEqual(['header', 'section', 'section', 'actions', 'context']);
      expect(body.blocks[1]).toEqual({ type: 'section', text: { type: 'mrkdwn', text: 'alice asks to check out root on db-prod-1', verbatim: true } });
      expect(body.blocks[2].fields).toEqual(
        expect.arrayContaining([
          { type: 'mrkdwn', text: '*Requested by*\nalice', verbatim: true },
          { type: 'mrkdwn', text: '*Target*\ndb-prod-1', verbatim: true },
          { type: 'mrkdwn', text: '*Justification*\nINC-4711 &lt;disk full&gt; &amp; more', verbatim: true },
        ]),
      );
      expect(body.blocks[3]).toMatchObject({ elements: [{ type: 'button', url: `${PUBLIC_URL}/portal/checkouts/${checkoutId}` }] });
      expect(req.body).not.toContain(url);
      expect(d.status).toBe('sent');
    });

    it('Teams: a message with one Adaptive Card 1.4 (summary, FactSet, the link)', async () => {
      const url = hook.secretUrl('/webhookb2');
      await channel('teams', {}, url);
      const eventId = await notify(approvalRequest({ none: true }));
      const [d] = await deliveries(eventId);
      const [req] = await hook.waitFor(1);
      expect(req.path).toBe(new URL(url).pathname);
      expect(req.headers['idempotency-key']).toBe(d.id);
      const body = req.json as { type: string; attachments: Array<{ contentType: string; content: Record<string, unknown> & { body: Array<Record<string, unknown>> } }> };
      expect(body.type).toBe('message');
      expect(body.attachments).toHaveLength(1);
      const [card] = body.attachments;
      expect(card.contentType).toBe('application/vnd.microsoft.card.adaptive');
      expect(card.content).toMatchObject({ type: 'AdaptiveCard', version: '1.4', actions: [{ type: 'Action.OpenUrl', url: `${PUBLIC_URL}/portal/checkouts/${checkoutId}` }] });
      expect(card.content.body[0]).toMatchObject({ type: 'TextBlock', text: 'Approval requested' });
      expect(card.content.body[1]).toMatchObject({ type: 'TextBlock', text: 'alice asks to check out root on db\\-prod\\-1' });
      expect(card.content.body[2]).toMatchObject({ type: 'FactSet', facts: expect.arrayContaining([{ title: 'Account', value: 'root' }, { title: 'Justification', value: 'INC\\-4711 \\<disk full\\> & more' }]) });
      expect(d.status).toBe('sent');
    });

    it('a Slack or Teams webhook answering 500 is retried with the same key; its error never names the URL', async () => {
      const url = hook.secretUrl();
      await channel('slack', {}, url);
      hook.reply({ status: 500 });
      const eventId = await notify(approvalRequest({ none: true }));
      const [failed] = await deliveries(eventId);
      expect(failed).toMatchObject({ status: 'pending', last_error: expect.stringMatching(/^WEBHOOK_HTTP_500: /) });
      expect(failed.last_error).not.toContain(new URL(url).pathname.split('/').pop());
      await retryNow();
      const requests = await hook.waitFor(2);
      expect(requests.map((r) => r.headers['idempotency-key'])).toEqual([failed.id, failed.id]);
      expect((await deliveries(eventId))[0].status).toBe('sent');
    });
  });

  it('the CA file is read at boot: one that cannot be read stops the module, naming the variable', () => {
    const sender = new EmailSender({ ...h.config, smtp: { ...h.config.smtp!, caFile: join(otherCa, 'missing.pem') } });
    expect(() => sender.onModuleInit()).toThrow(/^VAULT_SMTP_CA_FILE cannot be read \(ENOENT\)$/);
    expect(readFileSync(smtp.caFile, 'utf8')).toContain('BEGIN CERTIFICATE');
  });
});

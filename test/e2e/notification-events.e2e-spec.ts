/**
 * Who the vault tells, and what (issue 14), in the module tier (a real database, fake targets, no HTTP): every change
 * the README's event table lists writes its event in its own transaction, with the recipients decided then and
 * recorded as deliveries — approvers who may decide a request at that moment (never its requester or vendor; one added
 * later is not told, a disabled one never), the requester and vendor of a decision, the holder of what expires soon
 * (once, even with two sweeps at once), administrators and auditors for alerts — muted optional kinds recorded as
 * `muted`, people without an address as `no_address`, and no message fact ever holding a password.
 */
import { randomUUID } from 'node:crypto';
import { accountSecretRef } from '../../src/accounts/account.entity';
import { AuditQueryService } from '../../src/audit/audit-query.service';
import { AuditSealer } from '../../src/audit/audit-sealer.service';
import { CheckoutLifecycleService } from '../../src/checkouts/checkout-lifecycle.service';
import { CheckoutNotices } from '../../src/checkouts/checkout-notices';
import { CheckoutsModule } from '../../src/checkouts/checkouts.module';
import { CheckoutsService } from '../../src/checkouts/checkouts.service';
import { ApprovalsService } from '../../src/checkouts/approvals.service';
import type { Actor, Role } from '../../src/common/actor';
import { SecretBoxService } from '../../src/crypto/secret-box.service';
import { ClaimedWork } from '../../src/database/claimed-work';
import { EphemeralModule } from '../../src/ephemeral/ephemeral.module';
import { EphemeralNotices } from '../../src/ephemeral/ephemeral-notices';
import { EphemeralProvisioner } from '../../src/ephemeral/ephemeral-provisioner.service';
import { EphemeralService } from '../../src/ephemeral/ephemeral.service';
import { MFA_ALERT_AFTER, mfaSecretRef, MfaService } from '../../src/identity/mfa.service';
import { TotpService } from '../../src/identity/totp.service';
import { NotificationDeliverer } from '../../src/notifications/deliverer';
import type { OutgoingDelivery, RenderedMessage, Sender } from '../../src/notifications/senders/sender';
import { RotationService } from '../../src/rotation/rotation.service';
import { createFakeTarget } from '../support/fake-target';
import { buildModule, ModuleHarness, TEST_ADMIN } from '../support/module-harness';
import { totpAt } from '../support/totp';

/** Keeps what would be sent (nothing leaves the test). */
class RecordingSender implements Sender {
  readonly sent: Array<{ d: OutgoingDelivery; m: RenderedMessage }> = [];
  constructor(readonly kind: Sender['kind']) {}
  async send(d: OutgoingDelivery, m: RenderedMessage): Promise<void> {
    this.sent.push({ d, m });
  }
}

const LEAD_SECONDS = 900;
const ENV = {
  VAULT_SMTP_HOST: '127.0.0.1',
  VAULT_SMTP_FROM: 'vault@example.test',
  VAULT_SMTP_TLS: 'none',
  VAULT_PUBLIC_URL: 'https://vault.example.test',
  VAULT_NOTIFY_EXPIRY_LEAD_SECONDS: String(LEAD_SECONDS),
  VAULT_CHECKOUT_CLEANUP_MAX_ATTEMPTS: '1',
  VAULT_EPHEMERAL_MAX_ATTEMPTS: '1',
  VAULT_ROTATION_MAX_FAILURES: '1',
};

interface Told {
  type: string;
  targetId: string | null;
  payload: Record<string, unknown>;
  /** recipient user id → delivery status */
  to: Record<string, string>;
}

describe('notification events: who is told what (module tier)', () => {
  let h: ModuleHarness;
  let targetId: string;
  let targetName: string;
  const email = new RecordingSender('email');
  /** Every password the tests saw: none may appear in any event's facts or rendered message. */
  const secrets: string[] = [];

  async function user(roles: Role[], o: { email?: string | null; disabled?: boolean; muted?: string[] } = {}): Promise<Actor> {
    const id = randomUUID();
    const name = `u${id.slice(0, 8)}`;
    await h.db.query('INSERT INTO users (id, username, password_hash, roles, email, disabled, muted_notifications) VALUES ($1, $2, $3, $4, $5, $6, $7)', [
      id,
      name,
      'not-a-hash',
      roles,
      o.email === undefined ? `${name}@example.test` : o.email,
      o.disabled ?? false,
      o.muted ?? [],
    ]);
    return { id, kind: 'user', name, roles, mfaEnrolled: true };
  }

  /** An account on the fake PostgreSQL target, its password known to the vault and the target. */
  async function account(policy: object = {}): Promise<{ id: string; username: string }> {
    const id = randomUUID();
    const username = `acct_${id.slice(0, 8)}`;
    const password = `Pw-${randomUUID()}`;
    secrets.push(password);
    await h.db.query(
      `INSERT INTO accounts (id, target_id, username, status, password_secret, policy, next_rotation_at) VALUES ($1, $2, $3, 'available', $4, $5, now() + interval '30 days')`,
      [id, targetId, username, h.get(SecretBoxService).encrypt(accountSecretRef(id), password), policy],
    );
    h.fake('postgres').users.set(username, password);
    return { id, username };
  }

  /** The events about a subject, oldest first, each with who was told and how. */
  async function told(subjectId: string, type?: string): Promise<Told[]> {
    const rows = await h.db.query<{ id: string; type: string; target_id: string | null; payload: Record<string, unknown>; to: Record<string, string> | null }>(
      `SELECT e.id, e.type, e.target_id, e.payload,
              (SELECT jsonb_object_agg(d.recipient_user_id, d.status) FROM notification_deliveries d WHERE d.event_id = e.id AND d.recipient_user_id IS NOT NULL) AS "to"
         FROM notification_events e WHERE e.subject_id = $1 ${type ? 'AND e.type = $2' : ''} ORDER BY e.seq`,
      type ? [subjectId, type] : [subjectId],
    );
    return rows.map((r) => ({ type: r.type, targetId: r.target_id, payload: r.payload, to: r.to ?? {} }));
  }

  const one = async (subjectId: string, type: string): Promise<Told> => {
    const events = await told(subjectId, type);
    expect(events).toHaveLength(1);
    return events[0];
  };

  /** Any status a delivery to a person with an address may have by now (the deliverer runs after each commit). */
  const DELIVERABLE = expect.stringMatching(/^(pending|sent)$/);

  let admin: Actor;
  let auditor: Actor;
  let disabledAdmin: Actor;

  beforeAll(async () => {
    h = await buildModule({ imports: [CheckoutsModule, EphemeralModule], env: ENV });
    h.get(NotificationDeliverer).register(email);
    targetName = `db-prod-${randomUUID().slice(0, 6)}`;
    targetId = await createFakeTarget(h, 'postgres', targetName);
    admin = await user(['admin']);
    auditor = await user(['auditor'], { email: null });
    disabledAdmin = await user(['admin'], { disabled: true });
  }, 60_000);
  afterAll(() => h?.close());

  describe('checkouts', () => {
    it('a request waiting for approval tells every approver who may decide it now, and no one else', async () => {
      const requester = await user(['operator', 'approver']); // an approver too: never told of their own request
      const approver = await user(['approver']);
      const mutedApprover = await user(['approver'], { muted: ['approval.requested'] }); // required: a mute does not apply
      const noAddress = await user(['approver'], { email: null });
      const disabled = await user(['approver'], { disabled: true });
      const adminApprover = await user(['admin', 'approver']);
      const acct = await account({ approvalsRequired: 1 });

      const checkout = await h.get(CheckoutsService).request(requester, { accountId: acct.id, justification: 'fix the replication lag', ttlSeconds: 3600 });
      expect(checkout.status).toBe('pending_approval');
      const late = await user(['approver']); // became an approver after the request: not told

      const event = await one(checkout.id, 'approval.requested');
      expect(event.targetId).toBe(targetId);
      expect(event.payload).toEqual({
        summary: `${requester.name} asks for ${acct.username} on ${targetName} for 1h`,
        requester: requester.name,
        target: targetName,
        account: acct.username,
        justification: 'fix the replication lag',
        deadline: expect.any(String),
        ttlSeconds: 3600,
      });
      expect(new Date(event.payload.deadline as string).getTime()).toBeGreaterThan(Date.now());
      const approvers = (await h.db.query<{ id: string }>("SELECT id FROM users WHERE 'approver' = ANY (roles) AND NOT disabled AND id <> $1", [requester.id])).map((r) => r.id);
      expect(Object.keys(event.to).sort()).toEqual(approvers.filter((id) => id !== late.id).sort());
      expect(event.to).toMatchObject({ [approver.id]: DELIVERABLE, [mutedApprover.id]: DELIVERABLE, [adminApprover.id]: DELIVERABLE, [noAddress.id]: 'no_address' });
      for (const id of [requester.id, disabled.id, late.id, admin.id, auditor.id]) expect(event.to[id]).toBeUndefined();
    });

    it('approved: the requester is told (a muted optional kind is recorded as muted); the facts never hold the password', async () => {
      const requester = await user(['operator']);
      const mutedRequester = await user(['operator'], { muted: ['request.approved'] });
      const approver = await user(['approver']);
      for (const who of [requester, mutedRequester]) {
        const acct = await account({ approvalsRequired: 1 });
        const checkout = await h.get(CheckoutsService).request(who, { accountId: acct.id, justification: 'deploy' });
        const approved = await h.get(ApprovalsService).approve(approver, checkout.id, {});
        expect(approved.status).toBe('active');
        const { credential } = await h.get(CheckoutsService).reveal(who, checkout.id);
        secrets.push(credential.password);

        const event = await one(checkout.id, 'request.approved');
        expect(event.to).toEqual({ [who.id]: who === mutedRequester ? 'muted' : DELIVERABLE });
        expect(event.payload).toMatchObject({ requester: who.name, target: targetName, account: acct.username, deadline: expect.any(String) });
        for (const e of await told(checkout.id)) expect(JSON.stringify(e.payload)).not.toContain(credential.password);
      }
    });

    it('denied, lapsed and revoked: the requester is told, with the reason', async () => {
      const requester = await user(['operator']);
      const approver = await user(['approver']);
      const [a1, a2, a3] = [await account({ approvalsRequired: 1 }), await account({ approvalsRequired: 1 }), await account()];
      const denied = await h.get(CheckoutsService).request(requester, { accountId: a1.id, justification: 'denied one' });
      await h.get(ApprovalsService).deny(approver, denied.id, { comment: 'not during the freeze' });
      expect(await one(denied.id, 'request.denied')).toMatchObject({
        to: { [requester.id]: DELIVERABLE },
        payload: { summary: `${requester.name}'s request for ${a1.username} on ${targetName} was denied by ${approver.name}`, reason: 'not during the freeze' },
      });

      const lapsed = await h.get(CheckoutsService).request(requester, { accountId: a2.id, justification: 'lapsed one' });
      await h.db.query("UPDATE checkouts SET approval_deadline = now() - interval '1 minute' WHERE id = $1", [lapsed.id]);
      await h.get(CheckoutLifecycleService).expireDue();
      expect(await one(lapsed.id, 'request.lapsed')).toMatchObject({ to: { [requester.id]: DELIVERABLE }, payload: { reason: 'approval_timeout' } });

      const active = await h.get(CheckoutsService).request(requester, { accountId: a3.id, justification: 'revoked one' });
      secrets.push(active.credential!.password);
      await h.get(CheckoutLifecycleService).revoke(TEST_ADMIN, active.id, { reason: 'incident 42' });
      expect(await one(active.id, 'request.revoked')).toMatchObject({
        to: { [requester.id]: DELIVERABLE },
        payload: { reason: 'revoked by an administrator: incident 42', code: 'revoked', account: a3.username },
      });
      // a check-in tells no one
      expect((await told(active.id)).map((e) => e.type)).toEqual(['request.revoked']);
    });

    it('break-glass alerts administrators and auditors (enabled ones; no address recorded as such), without the password', async () => {
      const requester = await user(['operator']);
      const acct = await account({ approvalsRequired: 2, breakGlassAllowed: true });
      const checkout = await h.get(CheckoutsService).request(requester, { accountId: acct.id, justification: 'prod is down', breakGlass: true });
      expect(checkout.status).toBe('active');
      secrets.push(checkout.credential!.password);
      const event = await one(checkout.id, 'alert.break_glass');
      expect(event.payload).toMatchObject({ summary: `${requester.name} used break-glass on ${acct.username} on ${targetName} for 30 min`, justification: 'prod is down' });
      expect(event.to).toMatchObject({ [admin.id]: DELIVERABLE, [auditor.id]: 'no_address' });
      expect(event.to[disabledAdmin.id]).toBeUndefined();
      expect(event.to[requester.id]).toBeUndefined();
      expect(JSON.stringify(event.payload)).not.toContain(checkout.credential!.password);
      // no approvals were asked for
      expect(await told(checkout.id, 'approval.requested')).toEqual([]);
    });

    it('a session cleanup given up alerts administrators and auditors', async () => {
      const requester = await user(['operator']);
      const acct = await account({ rotateAfterCheckin: false });
      const checkout = await h.get(CheckoutsService).request(requester, { accountId: acct.id, justification: 'cleanup' });
      h.fake('postgres').fail('terminateSessions', 'TARGET_TIMEOUT', { username: acct.username, times: 1 });
      await h.get(CheckoutLifecycleService).checkin(requester, checkout.id);
      expect(await one(checkout.id, 'alert.cleanup_failed')).toMatchObject({
        targetId,
        to: { [admin.id]: DELIVERABLE, [auditor.id]: 'no_address' },
        payload: { code: 'TARGET_TIMEOUT', count: 1, account: acct.username },
      });
    });

    it('the holder of a lease ending within the lead is reminded once, even by two sweeps at once', async () => {
      const holder = await user(['operator']);
      const [soon, later] = [await account(), await account()];
      const ending = await h.get(CheckoutsService).request(holder, { accountId: soon.id, justification: 'short', ttlSeconds: LEAD_SECONDS - 300 });
      const lasting = await h.get(CheckoutsService).request(holder, { accountId: later.id, justification: 'long', ttlSeconds: LEAD_SECONDS + 600 });
      const notices = h.get(CheckoutNotices);
      await Promise.all([notices.remindExpiring(), notices.remindExpiring(), notices.remindExpiring()]);
      await notices.remindExpiring();
      const reminder = await one(ending.id, 'checkout.expiring');
      expect(reminder).toMatchObject({ to: { [holder.id]: DELIVERABLE }, payload: { summary: `${holder.name}'s checkout of ${soon.username} on ${targetName} ends in 10 min` } });
      expect(await told(lasting.id)).toEqual([]);
      // once the lead reaches it, the other one too (once)
      h.clock.advance(700_000);
      try {
        await Promise.all([notices.remindExpiring(), notices.remindExpiring()]);
        await one(lasting.id, 'checkout.expiring');
        await one(ending.id, 'checkout.expiring');
      } finally {
        h.clock.advance(-700_000);
      }
    });
  });

  describe('one-time accounts', () => {
    let requester: Actor;
    let vendor: Actor;
    let approver: Actor;
    let approvedTarget: string;
    let freeTarget: string;

    beforeAll(async () => {
      requester = await user(['operator', 'approver']);
      vendor = await user(['vendor', 'approver']); // the vendor never approves their own account: not told to
      approver = await user(['approver']);
      approvedTarget = await createFakeTarget(h, 'postgres');
      freeTarget = await createFakeTarget(h, 'postgres');
      await h.get(EphemeralService).setPolicy(TEST_ADMIN, approvedTarget, { approvalsRequired: 1, maxTtlSeconds: 3600 });
      await h.get(EphemeralService).setPolicy(TEST_ADMIN, freeTarget, { approvalsRequired: 0, maxTtlSeconds: 3600 });
    });
    const ask = (target: string, ttlSeconds = 1800) => h.get(EphemeralService).request(requester, { targetId: target, vendorUserId: vendor.id, ttlSeconds, justification: 'vendor maintenance' });

    it('waiting for approval: the approvers, never its requester or its vendor; approved: the requester, and the vendor that it is ready to claim', async () => {
      const request = await ask(approvedTarget);
      const asked = await one(request.id, 'approval.requested');
      expect(asked.targetId).toBe(approvedTarget);
      expect(asked.to[approver.id]).toEqual(DELIVERABLE);
      expect(asked.to[requester.id]).toBeUndefined();
      expect(asked.to[vendor.id]).toBeUndefined();
      expect(asked.payload).toMatchObject({ summary: expect.stringContaining(`${requester.name} asks for a one-time account on`), requester: requester.name, justification: 'vendor maintenance' });

      await h.get(EphemeralService).approve(approver, request.id, {});
      expect(await one(request.id, 'request.approved')).toMatchObject({ to: { [requester.id]: DELIVERABLE } });
      const ready = await one(request.id, 'ephemeral.ready');
      expect(ready.to).toEqual({ [vendor.id]: DELIVERABLE });
      expect(ready.payload.summary).toContain('ready to claim');
    });

    it('needing no approval: the vendor is told at once it is ready to claim; no approver is asked', async () => {
      const request = await ask(freeTarget);
      expect((await told(request.id)).map((e) => e.type)).toEqual(['ephemeral.ready']);
      expect((await one(request.id, 'ephemeral.ready')).to).toEqual({ [vendor.id]: DELIVERABLE });
    });

    it('denied, lapsed, revoked: requester and vendor (not the one who revoked)', async () => {
      const denied = await ask(approvedTarget);
      await h.get(EphemeralService).deny(approver, denied.id, { comment: 'use the jump host' });
      expect(await one(denied.id, 'request.denied')).toMatchObject({ to: { [requester.id]: DELIVERABLE, [vendor.id]: DELIVERABLE }, payload: { reason: 'use the jump host' } });

      const lapsed = await ask(approvedTarget);
      await h.db.query("UPDATE ephemeral_accounts SET request_deadline = now() - interval '1 minute' WHERE id = $1", [lapsed.id]);
      await h.get(EphemeralProvisioner).reap();
      expect(await one(lapsed.id, 'request.lapsed')).toMatchObject({ to: { [requester.id]: DELIVERABLE, [vendor.id]: DELIVERABLE } });

      const withdrawn = await ask(freeTarget);
      await h.get(EphemeralProvisioner).revoke(requester, withdrawn.id);
      expect((await one(withdrawn.id, 'request.revoked')).to).toEqual({ [vendor.id]: DELIVERABLE });

      const claimedOne = await ask(freeTarget);
      const claim = await h.get(EphemeralProvisioner).claim(vendor, claimedOne.id);
      secrets.push(claim.password as string);
      await h.get(EphemeralProvisioner).revoke(vendor, claimedOne.id);
      await h.get(ClaimedWork).settle();
      const revoked = await one(claimedOne.id, 'request.revoked');
      expect(revoked.to).toEqual({ [requester.id]: DELIVERABLE });
      expect(revoked.payload).toMatchObject({ account: claim.username });
    });

    it('a removal given up (needs_attention) alerts administrators and auditors', async () => {
      const request = await ask(freeTarget);
      const claim = await h.get(EphemeralProvisioner).claim(vendor, request.id);
      secrets.push(claim.password as string);
      h.fake('postgres').fail('deleteUser', 'TARGET_UNREACHABLE', { username: claim.username, times: 1 });
      await h.get(EphemeralProvisioner).revoke(TEST_ADMIN, request.id);
      await h.get(ClaimedWork).settle();
      expect(await one(request.id, 'alert.ephemeral_remove_failed')).toMatchObject({
        targetId: freeTarget,
        to: { [admin.id]: DELIVERABLE, [auditor.id]: 'no_address' },
        payload: { code: 'TARGET_UNREACHABLE', count: 1, account: claim.username },
      });
    });

    it('the vendor of an account expiring within the lead is reminded once, even by two sweeps at once', async () => {
      const request = await ask(freeTarget, LEAD_SECONDS - 300);
      const claim = await h.get(EphemeralProvisioner).claim(vendor, request.id);
      secrets.push(claim.password as string);
      const notices = h.get(EphemeralNotices);
      await Promise.all([notices.remindExpiring(), notices.remindExpiring(), notices.remindExpiring()]);
      await notices.remindExpiring();
      expect(await one(request.id, 'ephemeral.expiring')).toMatchObject({ to: { [vendor.id]: DELIVERABLE }, payload: { account: claim.username, deadline: claim.expiresAt } });
    });
  });

  describe('alerts', () => {
    it('an account at needs_attention (rotation gave up)', async () => {
      const acct = await account();
      h.fake('postgres').fail('updatePassword', 'TARGET_TIMEOUT', { username: acct.username, times: 1 });
      await h.get(RotationService).request(TEST_ADMIN, acct.id, { wait: true });
      expect((await h.db.query<{ status: string }>('SELECT status FROM accounts WHERE id = $1', [acct.id]))[0].status).toBe('needs_attention');
      expect(await one(acct.id, 'alert.account_needs_attention')).toMatchObject({
        targetId,
        to: { [admin.id]: DELIVERABLE, [auditor.id]: 'no_address' },
        payload: { account: acct.username, target: targetName, code: 'TARGET_TIMEOUT', count: 1 },
      });
    });

    it(`repeated wrong MFA codes for one user: at the ${MFA_ALERT_AFTER}th within the window, once per window`, async () => {
      const victim = await user(['operator']);
      const secret = h.get(TotpService).newSecret();
      await h.db.query('UPDATE users SET mfa_secret = $2 WHERE id = $1', [victim.id, h.get(SecretBoxService).encrypt(mfaSecretRef(victim.id, 'mfa_secret'), secret)]);
      const valid = [-1, 0, 1].map((o) => totpAt(secret, Date.now(), o));
      const wrong = ['000000', '111111', '222222', '333333'].find((c) => !valid.includes(c)) as string;
      const alerts = async () => told(victim.id, 'alert.mfa_failures');
      for (let i = 1; i <= MFA_ALERT_AFTER + 2; i++) {
        await expect(h.get(MfaService).verify(victim, wrong, '203.0.113.7', 'checkout')).rejects.toMatchObject({ code: 'MFA_INVALID' });
        expect(await alerts()).toHaveLength(i < MFA_ALERT_AFTER ? 0 : 1);
      }
      const [alert] = await alerts();
      expect(alert.to).toMatchObject({ [admin.id]: DELIVERABLE, [auditor.id]: 'no_address' });
      expect(alert.payload).toMatchObject({ count: MFA_ALERT_AFTER, code: 'MFA_INVALID', summary: expect.stringContaining(victim.name) });
      expect(JSON.stringify(alert.payload)).not.toContain(wrong);
      // the user's window ends (and the pair's): the next window alerts again at its own 5th failure
      await h.db.query("UPDATE auth_throttle SET window_start = window_start - interval '2 hours' WHERE key LIKE $1", [`%${victim.id}%`]);
      for (let i = 1; i <= MFA_ALERT_AFTER; i++) await expect(h.get(MfaService).verify(victim, wrong, '203.0.113.7', 'checkout')).rejects.toMatchObject({ code: 'MFA_INVALID' });
      expect(await alerts()).toHaveLength(2);
    });

    it('an audit verify that fails', async () => {
      await h.get(AuditSealer).sealPending();
      const [victim] = await h.db.query<{ id: string }>('SELECT id::text AS id FROM audit_events WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1');
      await h.db.query(`UPDATE audit_events SET details = details || '{"edited": true}' WHERE id = $1`, [victim.id]);
      const result = await h.get(AuditQueryService).verify();
      expect(result).toMatchObject({ ok: false, firstInvalidId: victim.id });
      const event = await one(victim.id, 'alert.audit_verify_failed');
      expect(event.to).toMatchObject({ [admin.id]: DELIVERABLE, [auditor.id]: 'no_address' });
      expect(event.payload).toMatchObject({ code: 'AUDIT_CHAIN_INVALID', summary: expect.stringContaining(`at event ${victim.id}`) });
    });
  });

  it('no event and no rendered message of all the above carries a password (runs last)', async () => {
    await h.get(NotificationDeliverer).idle();
    const payloads = (await h.db.query<{ payload: unknown }>('SELECT payload FROM notification_events')).map((r) => JSON.stringify(r.payload));
    const messages = email.sent.map((s) => JSON.stringify(s.m));
    expect(secrets.length).toBeGreaterThan(5);
    for (const secret of secrets) {
      for (const text of [...payloads, ...messages]) expect(text).not.toContain(secret);
    }
  });
});

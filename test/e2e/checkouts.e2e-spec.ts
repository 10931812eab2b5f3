import { randomBytes, randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { AccountEntity, accountSecretRef } from '../../src/accounts/account.entity';
import { CheckoutLifecycleService } from '../../src/checkouts/checkout-lifecycle.service';
import { ConnectorError } from '../../src/connectors/connector.errors';
import { Connector } from '../../src/connectors/connector.interface';
import { ConnectorRegistry } from '../../src/connectors/connector.registry';
import { PostgresConnector } from '../../src/connectors/postgres/postgres.connector';
import { RotationService } from '../../src/rotation/rotation.service';
import { SecretBoxService } from '../../src/crypto/secret-box.service';
import { REAL_TARGETS, RealTarget } from '../support/targets/real';
import { actingAs } from '../support/http';
import { startTestVault, TestUser, TestVault } from '../support/vault';

/**
 * Checkouts through the HTTP API on the real PostgreSQL, with a real scram-sha-256 PostgreSQL target (so
 * check-in rotations really change a password). Policy, approvals, exclusivity, break-glass, expiry, listing and
 * bad input; the login proofs on all three target types are in checkout-targets.e2e-spec.ts.
 */
describe('checkouts (e2e)', () => {
  let vault: TestVault;
  let admin: TestUser;
  let operator: TestUser;
  let approvers: TestUser[];
  let real: RealTarget;
  let targetId: string;
  let second: TestVault | undefined;

  const as = (user: TestUser) => actingAs(vault, user);
  const checkout = (user: TestUser, accountId: string, extra: object = {}) => as(user).post('/v1/checkouts', { accountId, justification: 'fix the disk', ...extra }, true);

  /** A role on the target with a known password, registered in the vault with this policy. */
  const newAccount = async (policy: object = {}) => {
    const username = `co_${randomBytes(4).toString('hex')}`;
    const password = `Orig-${randomBytes(10).toString('hex')}`;
    await real.createAccount(username, password);
    const res = await as(admin).post('/v1/accounts', { targetId, username, password, policy }, true).expect(201);
    return { id: res.body.id as string, username, password };
  };
  const stored = async (id: string) => {
    const a = await vault.get(DataSource).getRepository(AccountEntity).findOneByOrFail({ id });
    return a.passwordSecret ? vault.get(SecretBoxService).decrypt(accountSecretRef(id), a.passwordSecret) : null;
  };
  const accountStatus = async (id: string) => (await as(admin).get(`/v1/accounts/${id}`).expect(200)).body.status as string;
  const events = async (subjectId: string) =>
    (await vault.db.query<{ type: string; actor_id: string | null; details: Record<string, unknown> }>('SELECT type, actor_id, details FROM audit_events WHERE subject_id = $1 ORDER BY id', [subjectId]));
  const checkoutRows = (accountId: string) => vault.db.query<{ id: string; status: string }>('SELECT id, status FROM checkouts WHERE account_id = $1', [accountId]);
  const lifecycle = () => vault.get(CheckoutLifecycleService);

  beforeAll(async () => {
    vault = await startTestVault({ env: { VAULT_ROTATION_SWEEP_MS: '3600000', VAULT_CHECKOUT_SWEEP_MS: '3600000', VAULT_CHECKOUT_APPROVAL_TIMEOUT_SECONDS: '900', VAULT_CHECKOUT_CLEANUP_MAX_ATTEMPTS: '3' } });
    admin = await vault.admin();
    operator = await vault.createUser(['operator']);
    approvers = [await vault.createUser(['approver']), await vault.createUser(['approver']), await vault.createUser(['approver'])];
    real = await REAL_TARGETS.postgres();
    targetId = (await as(admin).post('/v1/targets', { name: 'co-pg', ...real.body }, true).expect(201)).body.id;
    await as(admin).post(`/v1/targets/${targetId}/verify`, {}, true).expect(200);
  }, 60_000);
  afterAll(async () => {
    await vault?.close();
    await second?.close();
    await real?.stop();
  });

  describe('without approvals', () => {
    it('answers 201 with the credential and an expiry; reads never show it; the account is checked out; all audited without the secret', async () => {
      const account = await newAccount({ checkoutTtlSeconds: 600 });
      const before = vault.clock.now().getTime();
      const res = await checkout(operator, account.id).expect(201);
      expect(res.body).toMatchObject({
        status: 'active',
        accountId: account.id,
        requesterId: operator.id,
        breakGlass: false,
        ttlSeconds: 600,
        credential: { username: account.username, password: account.password, host: real.body.host, port: real.body.port },
      });
      const expiresAt = new Date(res.body.expiresAt).getTime();
      expect(expiresAt).toBeGreaterThanOrEqual(before + 600_000);
      expect(expiresAt).toBeLessThan(before + 660_000);
      expect(await accountStatus(account.id)).toBe('checked_out');

      const read = await as(operator).get(`/v1/checkouts/${res.body.id}`).expect(200);
      const list = await as(admin).get('/v1/checkouts').expect(200);
      expect(read.body.credential).toBeUndefined();
      const trail = await events(res.body.id);
      expect(trail.map((e) => e.type)).toEqual(['checkout.requested', 'checkout.activated', 'checkout.revealed']);
      expect(trail.every((e) => e.actor_id === operator.id)).toBe(true);
      for (const text of [JSON.stringify(read.body), JSON.stringify(list.body), JSON.stringify(trail)]) expect(text).not.toContain(account.password);
    });

    it('needs a fresh TOTP code: without one, or with one already used, nothing is checked out', async () => {
      const account = await newAccount();
      const noCode = await as(operator).post('/v1/checkouts', { accountId: account.id, justification: 'no code' }).expect(401);
      expect(noCode.body.code).toBe('MFA_REQUIRED');
      const code = await operator.code();
      await vault.http().post('/v1/checkouts').set('Authorization', operator.auth).set('X-MFA-Code', code).send({ accountId: account.id, justification: 'first' }).expect(201);
      const other = await newAccount();
      const replay = await vault.http().post('/v1/checkouts').set('Authorization', operator.auth).set('X-MFA-Code', code).send({ accountId: other.id, justification: 'again' }).expect(401);
      expect(replay.body.code).toBe('MFA_REPLAYED');
      expect(await checkoutRows(other.id)).toEqual([]);
      expect(await accountStatus(other.id)).toBe('available');
    });

    it('is exclusive: of many parallel requests for one account exactly one wins, the rest get 409 ACCOUNT_CHECKED_OUT', async () => {
      const account = await newAccount();
      const operators = await Promise.all(Array.from({ length: 12 }, () => vault.createUser(['operator'])));
      const codes = await Promise.all(operators.map((o) => o.code()));
      const answers = await Promise.all(
        operators.map((o, i) => vault.http().post('/v1/checkouts').set('Authorization', o.auth).set('X-MFA-Code', codes[i]).send({ accountId: account.id, justification: 'race' })),
      );
      const statuses = answers.map((a) => a.status).sort();
      expect(statuses).toEqual([201, ...Array(11).fill(409)]);
      for (const a of answers.filter((x) => x.status === 409)) {
        expect(a.body.code).toBe('ACCOUNT_CHECKED_OUT');
        expect(JSON.stringify(a.body)).not.toContain(account.password);
      }
      expect(await checkoutRows(account.id)).toHaveLength(1);
      const requested = (await vault.db.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_events WHERE type = 'checkout.requested' AND details->>'accountId' = $1", [account.id]))[0];
      expect(requested.n).toBe(1);
    });

    it('refuses a lease longer than the policy allows, and changes nothing', async () => {
      const account = await newAccount({ checkoutTtlSeconds: 600, maxCheckoutTtlSeconds: 1200 });
      const res = await checkout(operator, account.id, { ttlSeconds: 1260 }).expect(400);
      expect(res.body).toMatchObject({ code: 'TTL_EXCEEDS_POLICY', maxTtlSeconds: 1200 });
      expect(await checkoutRows(account.id)).toEqual([]);
      expect(await accountStatus(account.id)).toBe('available');
    });

    it('extends with MFA up to the policy maximum counted from activation, no further', async () => {
      const account = await newAccount({ checkoutTtlSeconds: 600, maxCheckoutTtlSeconds: 1500 });
      const co = (await checkout(operator, account.id).expect(201)).body;
      const noCode = await as(operator).post(`/v1/checkouts/${co.id}/extend`, { ttlSeconds: 600 }).expect(401);
      expect(noCode.body.code).toBe('MFA_REQUIRED');
      const extended = (await as(operator).post(`/v1/checkouts/${co.id}/extend`, { ttlSeconds: 600 }, true).expect(200)).body;
      expect(new Date(extended.expiresAt).getTime() - new Date(co.expiresAt).getTime()).toBe(600_000);
      const refused = await as(operator).post(`/v1/checkouts/${co.id}/extend`, { ttlSeconds: 600 }, true).expect(400);
      expect(refused.body.code).toBe('TTL_EXCEEDS_POLICY');
      expect(new Date(refused.body.maxExpiresAt).getTime()).toBe(new Date(co.activatedAt).getTime() + 1_500_000);
      expect((await as(operator).get(`/v1/checkouts/${co.id}`).expect(200)).body.expiresAt).toBe(extended.expiresAt);
      // someone else cannot extend it, even an operator who can name it
      const stranger = await vault.createUser(['operator']);
      expect((await as(stranger).post(`/v1/checkouts/${co.id}/extend`, { ttlSeconds: 60 }, true).expect(404)).body.code).toBe('NOT_FOUND');
      expect((await events(co.id)).map((e) => e.type)).toContain('checkout.extended');
    });

    it('reveals again with MFA only to the requester, while active', async () => {
      const account = await newAccount();
      const co = (await checkout(operator, account.id).expect(201)).body;
      const again = await as(operator).post(`/v1/checkouts/${co.id}/reveal`, {}, true).expect(200);
      expect(again.body.credential).toEqual(co.credential);
      const adminTry = await as(admin).post(`/v1/checkouts/${co.id}/reveal`, {}, true);
      expect(adminTry.status).toBe(403);
      await as(operator).post(`/v1/checkouts/${co.id}/checkin`).expect(200);
      expect((await as(operator).post(`/v1/checkouts/${co.id}/reveal`, {}, true).expect(409)).body.code).toBe('CHECKOUT_NOT_ACTIVE');
      expect((await events(co.id)).filter((e) => e.type === 'checkout.revealed').map((e) => e.details.via)).toEqual(['checkout', 'reveal']);
    });
  });

  describe('check-in, revoke and expiry', () => {
    it('check-in rotates the password (the old one stops working), then the account is available again with a new one', async () => {
      const account = await newAccount();
      const co = (await checkout(operator, account.id).expect(201)).body;
      expect(await real.canLogin(account.username, co.credential.password)).toBe(true);
      const returned = (await as(operator).post(`/v1/checkouts/${co.id}/checkin`).expect(200)).body;
      expect(returned).toMatchObject({ status: 'returned', endReason: 'checked_in', endedBy: operator.id, rotationId: expect.any(String) });
      const now = await stored(account.id);
      expect(now).not.toBe(account.password);
      expect(await real.canLogin(account.username, account.password)).toBe(false);
      expect(await real.canLogin(account.username, now!)).toBe(true);
      expect(await accountStatus(account.id)).toBe('available');
      expect((await as(operator).post(`/v1/checkouts/${co.id}/checkin`).expect(409)).body.code).toBe('CHECKOUT_ENDED');
      const next = (await checkout(operator, account.id).expect(201)).body;
      expect(next.credential.password).toBe(now);
    });

    it('an operator cannot check in (or see) someone else’s checkout; an admin can check it in', async () => {
      const account = await newAccount();
      const co = (await checkout(operator, account.id).expect(201)).body;
      const stranger = await vault.createUser(['operator']);
      expect((await as(stranger).post(`/v1/checkouts/${co.id}/checkin`).expect(404)).body.code).toBe('NOT_FOUND');
      expect((await as(stranger).get(`/v1/checkouts/${co.id}`).expect(404)).body.code).toBe('NOT_FOUND');
      const res = await as(admin).post(`/v1/checkouts/${co.id}/checkin`).expect(200);
      expect(res.body).toMatchObject({ status: 'returned', endedBy: admin.id });
    });

    it('revoke (admin only) ends the checkout and rotates; the audit trail has revoked with the reason', async () => {
      const account = await newAccount();
      const co = (await checkout(operator, account.id).expect(201)).body;
      expect((await as(operator).post(`/v1/checkouts/${co.id}/revoke`, {}).expect(403)).body.code).toBe('FORBIDDEN');
      const res = await as(admin).post(`/v1/checkouts/${co.id}/revoke`, { reason: 'operator left the company' }).expect(200);
      expect(res.body).toMatchObject({ status: 'revoked', endReason: 'revoked' });
      expect(await real.canLogin(account.username, account.password)).toBe(false);
      const revoked = (await events(co.id)).find((e) => e.type === 'checkout.revoked');
      expect(revoked).toMatchObject({ actor_id: admin.id, details: { reason: 'operator left the company', wasActive: true } });
    });

    it('the sweep checks in expired checkouts (rotating them) and nothing else', async () => {
      const account = await newAccount({ checkoutTtlSeconds: 600 });
      const keep = await newAccount({ checkoutTtlSeconds: 3600 });
      const co = (await checkout(operator, account.id).expect(201)).body;
      const kept = (await checkout(operator, keep.id).expect(201)).body;
      vault.clock.advance(601_000);
      expect((await as(operator).post(`/v1/checkouts/${co.id}/reveal`, {}, true).expect(410)).body.code).toBe('EXPIRED');
      expect(await lifecycle().expireDue()).toBeGreaterThanOrEqual(1);
      expect((await as(operator).get(`/v1/checkouts/${co.id}`).expect(200)).body).toMatchObject({ status: 'expired', endReason: 'expired', endedBy: 'system' });
      expect((await as(operator).get(`/v1/checkouts/${kept.id}`).expect(200)).body.status).toBe('active');
      expect(await real.canLogin(account.username, account.password)).toBe(false);
      expect(await accountStatus(account.id)).toBe('available');
      expect((await events(co.id)).map((e) => e.type)).toEqual(
        expect.arrayContaining(['checkout.requested', 'checkout.activated', 'checkout.revealed', 'checkout.expired', 'checkout.sessions_terminated']),
      );
      await as(operator).post(`/v1/checkouts/${kept.id}/checkin`).expect(200);
    });

    it('disabling a user revokes their open checkouts at the next sweep, with the rotation', async () => {
      const leaving = await vault.createUser(['operator']);
      const account = await newAccount();
      const pendingAccount = await newAccount({ approvalsRequired: 1 });
      const co = (await checkout(leaving, account.id).expect(201)).body;
      const pending = (await checkout(leaving, pendingAccount.id).expect(201)).body;
      await as(admin).patch(`/v1/users/${leaving.id}`, { disabled: true }, true).expect(200);
      await lifecycle().expireDue();
      for (const id of [co.id, pending.id]) {
        expect((await as(admin).get(`/v1/checkouts/${id}`).expect(200)).body).toMatchObject({ status: 'revoked', endReason: 'requester_disabled', endedBy: 'system' });
      }
      expect(await real.canLogin(account.username, account.password)).toBe(false);
      expect(await accountStatus(account.id)).toBe('available');
      expect(await accountStatus(pendingAccount.id)).toBe('available');
      expect((await events(co.id)).find((e) => e.type === 'checkout.revoked')?.details).toMatchObject({ reason: 'requester_disabled', wasActive: true });
    });

    it('without rotateAfterCheckin the password stays and the account is available at once', async () => {
      const account = await newAccount({ rotateAfterCheckin: false });
      const co = (await checkout(operator, account.id).expect(201)).body;
      const res = await as(operator).post(`/v1/checkouts/${co.id}/checkin`).expect(200);
      expect(res.body.rotationId).toBeNull();
      expect(await stored(account.id)).toBe(account.password);
      expect(await accountStatus(account.id)).toBe('available');
    });

    it('an account whose post-check-in rotation failed is not handed out again (409 ACCOUNT_ROTATION_PENDING)', async () => {
      const account = await newAccount();
      const co = (await checkout(operator, account.id).expect(201)).body;
      // the role vanishes from the target behind the vault: the check-in rotation cannot succeed
      await vault.db.query('UPDATE accounts SET username = $2 WHERE id = $1', [account.id, `${account.username}_gone`]);
      await as(operator).post(`/v1/checkouts/${co.id}/checkin`).expect(200);
      const again = await checkout(operator, account.id).expect(409);
      expect(again.body.code).toBe('ACCOUNT_ROTATION_PENDING');
      const history = (await as(admin).get(`/v1/accounts/${account.id}/rotations`).expect(200)).body.items;
      expect(history[0]).toMatchObject({ reason: 'checkin', status: 'failed' });
    });

    it('refuses accounts it cannot hand out with a stable code each', async () => {
      const noPassword = await newAccount();
      await vault.db.query('UPDATE accounts SET password_secret = NULL WHERE id = $1', [noPassword.id]);
      expect((await checkout(operator, noPassword.id).expect(409)).body.code).toBe('ACCOUNT_NO_PASSWORD');
      const attention = await newAccount();
      await vault.db.query("UPDATE accounts SET status = 'needs_attention' WHERE id = $1", [attention.id]);
      expect((await checkout(operator, attention.id).expect(409)).body.code).toBe('ACCOUNT_NEEDS_ATTENTION');
      expect((await checkout(operator, randomUUID()).expect(404)).body.code).toBe('NOT_FOUND');
    });
  });

  describe('with approvals', () => {
    it('waits as pending_approval; distinct approvers, never the requester, activate it; then the requester reveals with MFA', async () => {
      const account = await newAccount({ approvalsRequired: 2 });
      const requester = await vault.createUser(['operator', 'approver']);
      const co = (await checkout(requester, account.id, { justification: 'rotate TLS keys' }).expect(201)).body;
      expect(co).toMatchObject({ status: 'pending_approval', approvalsRequired: 2, approvals: [] });
      expect(co.credential).toBeUndefined();
      expect(new Date(co.expiresAt).getTime()).toBe(new Date(co.approvalDeadline).getTime());
      expect(await accountStatus(account.id)).toBe('checked_out');
      // a pending request holds the account too
      expect((await checkout(operator, account.id).expect(409)).body.code).toBe('ACCOUNT_CHECKED_OUT');
      // not before it is approved
      expect((await as(requester).post(`/v1/checkouts/${co.id}/reveal`, {}, true).expect(409)).body.code).toBe('CHECKOUT_NOT_ACTIVE');

      expect((await as(requester).post(`/v1/checkouts/${co.id}/approve`, {}, true).expect(403)).body.code).toBe('SELF_APPROVAL');
      expect((await as(approvers[0]).post(`/v1/checkouts/${co.id}/approve`, {}).expect(401)).body.code).toBe('MFA_REQUIRED');
      const one = (await as(approvers[0]).post(`/v1/checkouts/${co.id}/approve`, { comment: 'ok' }, true).expect(200)).body;
      expect(one).toMatchObject({ status: 'pending_approval', approvals: [{ approverId: approvers[0].id, decision: 'approve', comment: 'ok', matchesRequest: true }] });
      expect((await as(approvers[0]).post(`/v1/checkouts/${co.id}/approve`, {}, true).expect(409)).body.code).toBe('ALREADY_DECIDED');
      const two = (await as(approvers[1]).post(`/v1/checkouts/${co.id}/approve`, { requestDigest: co.requestDigest }, true).expect(200)).body;
      expect(two.status).toBe('active');
      expect(two.credential).toBeUndefined();
      expect(new Date(two.expiresAt).getTime()).toBe(new Date(two.activatedAt).getTime() + 3600_000);

      expect((await as(approvers[2]).post(`/v1/checkouts/${co.id}/approve`, {}, true).expect(409)).body.code).toBe('CHECKOUT_NOT_PENDING');
      const revealed = (await as(requester).post(`/v1/checkouts/${co.id}/reveal`, {}, true).expect(200)).body;
      expect(revealed.credential).toEqual({ username: account.username, password: account.password, host: real.body.host, port: real.body.port });
      expect((await events(co.id)).map((e) => e.type)).toEqual(['checkout.requested', 'checkout.approved', 'checkout.approved', 'checkout.activated', 'checkout.revealed']);
    });

    it('counts an approval only for the exact request it saw', async () => {
      const account = await newAccount({ approvalsRequired: 2 });
      const co = (await checkout(operator, account.id, { justification: 'read the logs' }).expect(201)).body;
      await as(approvers[0]).post(`/v1/checkouts/${co.id}/approve`, { requestDigest: co.requestDigest }, true).expect(200);
      // someone with write access to the database widens the request after the first approval
      await vault.db.query("UPDATE checkouts SET justification = 'drop every table', ttl_seconds = 28800 WHERE id = $1", [co.id]);
      const stale = await as(approvers[1]).post(`/v1/checkouts/${co.id}/approve`, { requestDigest: co.requestDigest }, true).expect(409);
      expect(stale.body.code).toBe('REQUEST_CHANGED');
      const after = (await as(approvers[1]).post(`/v1/checkouts/${co.id}/approve`, {}, true).expect(200)).body;
      expect(after.status).toBe('pending_approval');
      expect(after.approvals.map((a: { matchesRequest: boolean }) => a.matchesRequest)).toEqual([false, true]);
    });

    it('one denial ends the request and frees the account', async () => {
      const account = await newAccount({ approvalsRequired: 1 });
      const co = (await checkout(operator, account.id).expect(201)).body;
      expect((await as(approvers[0]).post(`/v1/checkouts/${co.id}/deny`, { comment: 'no' }).expect(401)).body.code).toBe('MFA_REQUIRED');
      const denied = (await as(approvers[0]).post(`/v1/checkouts/${co.id}/deny`, { comment: 'not during the freeze' }, true).expect(200)).body;
      expect(denied).toMatchObject({ status: 'denied', endReason: 'denied', endedBy: approvers[0].id });
      expect(await accountStatus(account.id)).toBe('available');
      expect((await as(approvers[1]).post(`/v1/checkouts/${co.id}/approve`, {}, true).expect(409)).body.code).toBe('CHECKOUT_NOT_PENDING');
      expect(await stored(account.id)).toBe(account.password); // never revealed: no rotation
      expect((await events(co.id)).map((e) => e.type)).toEqual(['checkout.requested', 'checkout.denied']);
    });

    it('pending requests lapse after the configured time; late approvals get 410 EXPIRED', async () => {
      const account = await newAccount({ approvalsRequired: 1 });
      const co = (await checkout(operator, account.id).expect(201)).body;
      vault.clock.advance(901_000);
      expect((await as(approvers[0]).post(`/v1/checkouts/${co.id}/approve`, {}, true).expect(410)).body.code).toBe('EXPIRED');
      await lifecycle().expireDue();
      expect((await as(operator).get(`/v1/checkouts/${co.id}`).expect(200)).body).toMatchObject({ status: 'expired', endReason: 'approval_timeout', rotationId: null });
      expect(await accountStatus(account.id)).toBe('available');
      expect(await stored(account.id)).toBe(account.password);
    });

    it('the requester can withdraw a pending request by checking it in', async () => {
      const account = await newAccount({ approvalsRequired: 1 });
      const co = (await checkout(operator, account.id).expect(201)).body;
      const res = await as(operator).post(`/v1/checkouts/${co.id}/checkin`).expect(200);
      expect(res.body).toMatchObject({ status: 'returned', rotationId: null });
      expect(await accountStatus(account.id)).toBe('available');
    });
  });

  describe('break-glass', () => {
    it('is refused where the policy does not allow it, changing nothing', async () => {
      const account = await newAccount({ approvalsRequired: 1 });
      const res = await checkout(operator, account.id, { breakGlass: true }).expect(403);
      expect(res.body.code).toBe('BREAK_GLASS_NOT_ALLOWED');
      expect(await checkoutRows(account.id)).toEqual([]);
      expect(await accountStatus(account.id)).toBe('available');
    });

    it('skips approvals with MFA and a justification, shorter, flagged, audited, and listed for review by approvers', async () => {
      const account = await newAccount({ approvalsRequired: 2, breakGlassAllowed: true, breakGlassTtlSeconds: 900 });
      expect((await checkout(operator, account.id, { breakGlass: true, ttlSeconds: 960 }).expect(400)).body.code).toBe('TTL_EXCEEDS_POLICY');
      const co = (await checkout(operator, account.id, { breakGlass: true, justification: 'prod is down, INC-4711' }).expect(201)).body;
      expect(co).toMatchObject({ status: 'active', breakGlass: true, ttlSeconds: 900, credential: { password: account.password } });
      const trail = await events(co.id);
      expect(trail.map((e) => e.type)).toEqual(['checkout.requested', 'checkout.break_glass', 'checkout.activated', 'checkout.revealed']);
      expect(trail[1].details).toMatchObject({ justification: 'prod is down, INC-4711', approvalsSkipped: 2 });
      // extension stays within the break-glass limit
      expect((await as(operator).post(`/v1/checkouts/${co.id}/extend`, { ttlSeconds: 60 }, true).expect(400)).body.code).toBe('TTL_EXCEEDS_POLICY');

      const toReview = (await as(approvers[0]).get('/v1/checkouts?breakGlass=true&reviewed=false&limit=200').expect(200)).body.items.map((c: { id: string }) => c.id);
      expect(toReview).toContain(co.id);
      expect((await as(operator).post(`/v1/checkouts/${co.id}/review`, { comment: 'mine' }).expect(403)).body.code).toBe('FORBIDDEN');
      // reviewed once it has ended, with the approver's own step-up code
      expect((await as(approvers[0]).post(`/v1/checkouts/${co.id}/review`, { comment: 'too early' }, true).expect(409)).body.code).toBe('CHECKOUT_NOT_ENDED');
      await as(operator).post(`/v1/checkouts/${co.id}/checkin`).expect(200);
      // deleting the account would clear the review queue unseen
      expect((await as(admin).delete(`/v1/accounts/${account.id}`, true).expect(409)).body.code).toBe('ACCOUNT_BUSY');
      const reviewed = (await as(approvers[0]).post(`/v1/checkouts/${co.id}/review`, { comment: 'justified: INC-4711' }, true).expect(200)).body;
      expect(reviewed.review).toMatchObject({ reviewedBy: approvers[0].id, comment: 'justified: INC-4711' });
      expect((await as(approvers[1]).post(`/v1/checkouts/${co.id}/review`, { comment: 'again' }, true).expect(409)).body.code).toBe('ALREADY_REVIEWED');
      const still = (await as(approvers[0]).get('/v1/checkouts?breakGlass=true&reviewed=false&limit=200').expect(200)).body.items.map((c: { id: string }) => c.id);
      expect(still).not.toContain(co.id);
      expect((await events(co.id)).map((e) => e.type)).toContain('checkout.reviewed');
      await as(admin).delete(`/v1/accounts/${account.id}`, true).expect(204);
    });

    it('an auditor may give the review too (their own step-up code, audited as theirs), never on a checkout they took', async () => {
      const auditor = await vault.createUser(['auditor']);
      const account = await newAccount({ approvalsRequired: 1, breakGlassAllowed: true, breakGlassTtlSeconds: 900 });
      const co = (await checkout(operator, account.id, { breakGlass: true, justification: 'prod is down, INC-4712' }).expect(201)).body;
      await as(operator).post(`/v1/checkouts/${co.id}/checkin`).expect(200);
      expect((await as(auditor).post(`/v1/checkouts/${co.id}/review`, { comment: 'no code' }).expect(401)).body.code).toBe('MFA_REQUIRED');
      const reviewed = (await as(auditor).post(`/v1/checkouts/${co.id}/review`, { comment: 'matches INC-4712' }, true).expect(200)).body;
      expect(reviewed.review).toMatchObject({ reviewedBy: auditor.id, comment: 'matches INC-4712' });
      const [event] = await vault.db.query<{ actor_id: string }>("SELECT actor_id FROM audit_events WHERE type = 'checkout.reviewed' AND subject_id = $1", [co.id]);
      expect(event.actor_id).toBe(auditor.id);
      // an operator who is also an auditor does not review their own break-glass access
      const both = await vault.createUser(['operator', 'auditor']);
      const other = await newAccount({ approvalsRequired: 1, breakGlassAllowed: true, breakGlassTtlSeconds: 900 });
      const own = (await checkout(both, other.id, { breakGlass: true, justification: 'prod is down, INC-4713' }).expect(201)).body;
      await as(both).post(`/v1/checkouts/${own.id}/checkin`).expect(200);
      expect((await as(both).post(`/v1/checkouts/${own.id}/review`, { comment: 'fine by me' }, true).expect(403)).body.code).toBe('SELF_APPROVAL');
      expect((await as(auditor).post(`/v1/checkouts/${own.id}/review`, { comment: 'checked' }, true).expect(200)).body.review).toMatchObject({ reviewedBy: auditor.id });
    });

    it('monitoring sees open checkouts and unreviewed break-glass ones (no names, no secrets)', async () => {
      const account = await newAccount({ breakGlassAllowed: true });
      await checkout(operator, account.id, { breakGlass: true }).expect(201);
      const metrics = (await vault.http().get('/metrics').expect(200)).text;
      expect(metrics).toMatch(/^vault_checkouts\{state="active"\} [1-9]/m);
      expect(metrics).toMatch(/^vault_checkouts\{state="break_glass_unreviewed"\} [1-9]/m);
      expect(metrics).toMatch(/^vault_checkouts\{state="cleanup_failed"\} 0$/m);
      expect(metrics).not.toContain(account.password);
      expect(metrics).not.toContain(account.username);
    });
  });

  describe('recovery', () => {
    it('an instance that dies between ending a checkout and its cleanup: recovery rotates, the sweep ends the live session', async () => {
      const account = await newAccount();
      const co = (await checkout(operator, account.id).expect(201)).body;
      const session = await real.openSession(account.username, co.credential.password);
      // the instance commits the check-in and dies before its post-commit work (rotation, ending sessions)
      const lc = lifecycle() as unknown as { finish: (e: unknown) => Promise<void> };
      const finish = lc.finish;
      lc.finish = async () => undefined;
      try {
        await as(operator).post(`/v1/checkouts/${co.id}/checkin`).expect(200);
      } finally {
        lc.finish = finish;
      }
      expect(await session.alive()).toBe(true);
      expect(await lifecycle().finishStale()).toBe(0); // its claims are still live
      await vault.db.query("UPDATE checkouts SET cleanup_claimed_until = now() - interval '1 second' WHERE id = $1", [co.id]);
      expect(await lifecycle().finishStale()).toBe(0); // the rotation is still pending: sessions are ended only after it
      await vault.db.query("UPDATE rotations SET claimed_until = now() - interval '1 second' WHERE account_id = $1 AND status = 'pending'", [account.id]);
      await vault.get(RotationService).recoverStale();
      // the abandoned rotation never reached the target, so the old password still works: sessions are not ended
      // "for good" yet, and the account stays barred until a rotation succeeds
      expect(await real.canLogin(account.username, account.password)).toBe(true);
      expect(await lifecycle().finishStale()).toBe(0);
      expect((await checkout(operator, account.id).expect(409)).body.code).toBe('ACCOUNT_ROTATION_PENDING');
      await vault.db.query('UPDATE accounts SET next_rotation_at = now() - interval \'1 second\' WHERE id = $1', [account.id]);
      await vault.get(RotationService).rotateDue();
      await vault.get(RotationService).settle();
      expect(await real.canLogin(account.username, account.password)).toBe(false);
      expect(await session.alive()).toBe(true); // a rotated password does not end a session by itself…
      expect(await lifecycle().finishStale()).toBe(1); // …the owed cleanup does, once the rotation succeeded
      expect(await session.alive()).toBe(false);
      await session.close();
      expect((await vault.db.query<{ cleanup: string }>('SELECT cleanup FROM checkouts WHERE id = $1', [co.id]))[0].cleanup).toBe('done');
      expect(await real.canLogin(account.username, (await stored(account.id))!)).toBe(true);
      expect((await checkout(operator, account.id).expect(201)).body.credential.password).toBe(await stored(account.id));
    });

    /** The real PostgreSQL connector, failing the named call once (a target that fails on purpose). */
    const failingOnce = (call: 'updatePassword' | 'terminateSessions'): Connector => {
      const realConnector = new PostgresConnector();
      let failed = false;
      return new Proxy(realConnector, {
        get: (t, prop, receiver) => {
          if (prop === call && !failed) {
            return async () => {
              failed = true;
              throw new ConnectorError('TARGET_UNREACHABLE', 'injected failure');
            };
          }
          const v = Reflect.get(t, prop, receiver) as unknown;
          return typeof v === 'function' ? v.bind(t) : v;
        },
      });
    };
    const withConnector = async (connector: Connector, work: () => Promise<void>) => {
      vault.get(ConnectorRegistry).register(connector);
      try {
        await work();
      } finally {
        vault.get(ConnectorRegistry).register(new PostgresConnector());
      }
    };

    it('a check-in rotation that fails: sessions are ended now and again after the retried rotation; no hand-out in between', async () => {
      const account = await newAccount();
      const co = (await checkout(operator, account.id).expect(201)).body;
      const first = await real.openSession(account.username, co.credential.password);
      await withConnector(failingOnce('updatePassword'), async () => {
        await as(operator).post(`/v1/checkouts/${co.id}/checkin`).expect(200);
      });
      expect(await first.alive()).toBe(false);
      await first.close();
      // the old password still works until the retry: whoever logs in again is cut off after the rotation
      expect(await real.canLogin(account.username, account.password)).toBe(true);
      const again = await real.openSession(account.username, account.password);
      expect((await vault.db.query<{ cleanup: string }>('SELECT cleanup FROM checkouts WHERE id = $1', [co.id]))[0].cleanup).toBe('pending');
      expect((await checkout(operator, account.id).expect(409)).body.code).toBe('ACCOUNT_ROTATION_PENDING');
      await vault.db.query("UPDATE checkouts SET cleanup_claimed_until = now() - interval '1 second' WHERE id = $1", [co.id]);
      expect(await lifecycle().finishStale()).toBe(0);
      await vault.db.query("UPDATE accounts SET next_rotation_at = now() - interval '1 second' WHERE id = $1", [account.id]);
      await vault.get(RotationService).rotateDue();
      await vault.get(RotationService).settle();
      expect(await lifecycle().finishStale()).toBe(1);
      expect(await again.alive()).toBe(false);
      await again.close();
      expect(await real.canLogin(account.username, account.password)).toBe(false);
      const trail = (await events(co.id)).filter((e) => e.type === 'checkout.sessions_terminated').map((e) => e.details.rotationSettled);
      expect(trail).toEqual([false, true]);
    });

    it('a session cleanup that fails: the account is not handed out until it is done (the old cleanup never hits the next holder)', async () => {
      const account = await newAccount();
      const co = (await checkout(operator, account.id).expect(201)).body;
      await withConnector(failingOnce('terminateSessions'), async () => {
        await as(operator).post(`/v1/checkouts/${co.id}/checkin`).expect(200);
      });
      expect(await accountStatus(account.id)).toBe('available');
      expect((await checkout(operator, account.id).expect(409)).body.code).toBe('ACCOUNT_CLEANUP_PENDING');
      expect((await as(admin).delete(`/v1/accounts/${account.id}`, true).expect(409)).body.code).toBe('ACCOUNT_BUSY');
      await vault.db.query("UPDATE checkouts SET cleanup_claimed_until = now() - interval '1 second' WHERE id = $1", [co.id]);
      expect(await lifecycle().finishStale()).toBe(1);
      expect((await checkout(operator, account.id).expect(201)).body.status).toBe('active');
    });

    it('an admin turning rotateAfterCheckin off during a checkout does not skip the rotation it was promised', async () => {
      const account = await newAccount();
      const co = (await checkout(operator, account.id).expect(201)).body;
      await as(admin).patch(`/v1/accounts/${account.id}`, { policy: { rotateAfterCheckin: false } }, true).expect(200);
      expect((await as(operator).post(`/v1/checkouts/${co.id}/checkin`).expect(200)).body.rotationId).toEqual(expect.any(String));
      expect(await real.canLogin(account.username, account.password)).toBe(false);
    });

    it('a target that is down at check-in: the checkout still ends; the rotation waits; cleanup is retried with backoff, then given up loudly', async () => {
      const down = await REAL_TARGETS.postgres();
      const downId = (await as(admin).post('/v1/targets', { name: `co-down-${randomBytes(3).toString('hex')}`, ...down.body }, true).expect(201)).body.id;
      const onDown = async (policy: object) => {
        const username = `co_${randomBytes(4).toString('hex')}`;
        await down.createAccount(username, 'Initial-Password-1');
        return (await as(admin).post('/v1/accounts', { targetId: downId, username, password: 'Initial-Password-1', policy }, true).expect(201)).body.id as string;
      };
      const plain = await onDown({ rotateAfterCheckin: false });
      const rotating = await onDown({});
      const coPlain = (await checkout(operator, plain).expect(201)).body;
      const coRotating = (await checkout(operator, rotating).expect(201)).body;
      await down.stop();
      for (const co of [coPlain, coRotating]) expect((await as(operator).post(`/v1/checkouts/${co.id}/checkin`).expect(200)).body.status).toBe('returned');
      const row = async (id: string) => (await vault.db.query<{ cleanup: string; cleanup_attempts: number }>('SELECT cleanup, cleanup_attempts FROM checkouts WHERE id = $1', [id]))[0];
      expect(await row(coPlain.id)).toEqual({ cleanup: 'pending', cleanup_attempts: 1 });
      // the vault cannot tell which password works on a target that does not answer: the rotation stays pending
      expect((await checkout(operator, rotating).expect(409)).body.code).toBe('ACCOUNT_ROTATING');
      for (let attempt = 2; attempt <= 3; attempt++) {
        await vault.db.query("UPDATE checkouts SET cleanup_claimed_until = now() - interval '1 second' WHERE id = ANY($1)", [[coPlain.id, coRotating.id]]);
        expect(await lifecycle().finishStale()).toBe(1); // only the one whose rotation is not pending
      }
      expect(await row(coPlain.id)).toEqual({ cleanup: 'failed', cleanup_attempts: 3 });
      expect((await row(coRotating.id)).cleanup).toBe('pending');
      const failures = (await events(coPlain.id)).filter((e) => e.type === 'checkout.cleanup_failed');
      expect(failures.map((e) => e.details)).toEqual([1, 2, 3].map((attempts) => expect.objectContaining({ attempts, gaveUp: attempts === 3, errorCode: 'TARGET_UNREACHABLE' })));
      const metrics = (await vault.http().get('/metrics').expect(200)).text;
      expect(metrics).toMatch(/^vault_checkouts\{state="cleanup_failed"\} [1-9]/m);
    });
  });

  describe('audit in the same transaction', () => {
    /** Refuses audit events of one type, as a full or broken audit store would. */
    const refuseAudit = async (type: string) => {
      await vault.db.query(`CREATE OR REPLACE FUNCTION test_refuse_checkout_audit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.type = '${type}' THEN RAISE EXCEPTION 'audit store refuses writes'; END IF; RETURN NEW; END $$`);
      await vault.db.query('CREATE TRIGGER test_refuse_checkout_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION test_refuse_checkout_audit()');
    };
    afterEach(() => vault.db.query('DROP TRIGGER IF EXISTS test_refuse_checkout_audit ON audit_events'));

    it('a checkout whose audit events cannot be written fails with a bare 500 and changes nothing; no credential leaves', async () => {
      const account = await newAccount();
      await refuseAudit('checkout.revealed');
      const res = await checkout(operator, account.id).expect(500);
      expect(res.body).toEqual({ statusCode: 500, code: 'INTERNAL', message: 'internal error' });
      expect(res.text).not.toContain(account.password);
      expect(await checkoutRows(account.id)).toEqual([]);
      expect(await accountStatus(account.id)).toBe('available');
    });

    it('a check-in whose audit event cannot be written fails and leaves the checkout active (nothing rotated)', async () => {
      const account = await newAccount();
      const co = (await checkout(operator, account.id).expect(201)).body;
      await refuseAudit('checkout.checked_in');
      await as(operator).post(`/v1/checkouts/${co.id}/checkin`).expect(500);
      expect((await as(operator).get(`/v1/checkouts/${co.id}`).expect(200)).body.status).toBe('active');
      expect(await accountStatus(account.id)).toBe('checked_out');
      expect(await vault.db.query("SELECT id FROM rotations WHERE account_id = $1 AND reason = 'checkin'", [account.id])).toEqual([]);
      expect(await stored(account.id)).toBe(account.password);
    });

    it('an approval whose audit event cannot be written does not count', async () => {
      const account = await newAccount({ approvalsRequired: 1 });
      const co = (await checkout(operator, account.id).expect(201)).body;
      await refuseAudit('checkout.approved');
      await as(approvers[0]).post(`/v1/checkouts/${co.id}/approve`, {}, true).expect(500);
      const after = (await as(operator).get(`/v1/checkouts/${co.id}`).expect(200)).body;
      expect(after).toMatchObject({ status: 'pending_approval', approvals: [] });
    });
  });

  describe('listing and bad input', () => {
    it('operators list only their own checkouts; approvers and auditors list all; keyset pages', async () => {
      const mine = await vault.createUser(['operator']);
      const a = await newAccount();
      const b = await newAccount();
      const first = (await checkout(mine, a.id).expect(201)).body;
      const second = (await checkout(mine, b.id).expect(201)).body;
      const page1 = (await as(mine).get('/v1/checkouts?limit=1').expect(200)).body;
      expect(page1.items.map((c: { id: string }) => c.id)).toEqual([first.id]);
      const page2 = (await as(mine).get(`/v1/checkouts?limit=1&cursor=${page1.nextCursor}`).expect(200)).body;
      expect(page2.items.map((c: { id: string }) => c.id)).toEqual([second.id]);
      const others = (await as(operator).get('/v1/checkouts?limit=200').expect(200)).body.items.map((c: { id: string }) => c.id);
      expect(others).not.toContain(first.id);
      const auditor = await vault.createUser(['auditor']);
      const all = (await as(auditor).get(`/v1/checkouts?requesterId=${mine.id}&status=active`).expect(200)).body.items;
      expect(all.map((c: { id: string }) => c.id)).toEqual([first.id, second.id]);
      expect(JSON.stringify(all)).not.toContain(a.password);
    });

    it.each([
      ['an unknown field', { justification: 'x'.repeat(5), extra: 1 }],
      ['no justification', {}],
      ['a justification with a control character', { justification: 'abc\u0007def' }],
      ['a TTL as a string', { justification: 'valid text', ttlSeconds: '600' }],
      ['a TTL under a minute', { justification: 'valid text', ttlSeconds: 5 }],
      ['breakGlass as a string', { justification: 'valid text', breakGlass: 'yes' }],
      ['an accountId that is not a UUID', { justification: 'valid text', accountId: "1'; DROP TABLE checkouts; --" }],
    ])('refuses %s with 400 VALIDATION_FAILED and changes nothing', async (_label, body) => {
      const account = await newAccount();
      const res = await as(operator).post('/v1/checkouts', { accountId: account.id, ...body }, true);
      expect(res.status).toBe(400);
      expect(res.body.code).toBe('VALIDATION_FAILED');
      expect(await checkoutRows(account.id)).toEqual([]);
      expect(await accountStatus(account.id)).toBe('available');
    });

    it('refuses malformed ids and decision bodies with 400', async () => {
      expect((await as(operator).get('/v1/checkouts/not-a-uuid').expect(400)).body.code).toBe('VALIDATION_FAILED');
      expect((await as(approvers[0]).post(`/v1/checkouts/${randomUUID()}/approve`, { requestDigest: 'abc' }, true).expect(400)).body.code).toBe('VALIDATION_FAILED');
      expect((await as(operator).get('/v1/checkouts?status=lost').expect(400)).body.code).toBe('VALIDATION_FAILED');
      expect((await as(operator).get('/v1/checkouts?cursor=%22%22').expect(400)).body.code).toBe('VALIDATION_FAILED');
    });
  });
  describe('several instances', () => {
    it('two instances sweeping together end each expired checkout exactly once, with one rotation each', async () => {
      // closed in afterAll, after the first: passport keeps strategies process-wide by name, so the newest
      // app's bearer strategy serves both apps in this process, and closing it early would break the first
      second = await startTestVault({ db: vault.db, masterKey: vault.masterKey, env: { VAULT_ROTATION_SWEEP_MS: '3600000', VAULT_CHECKOUT_SWEEP_MS: '3600000' } });
      {
        const ids: string[] = [];
        const accounts: string[] = [];
        for (let i = 0; i < 6; i++) {
          const account = await newAccount();
          accounts.push(account.id);
          ids.push((await checkout(operator, account.id).expect(201)).body.id);
        }
        await vault.db.query("UPDATE checkouts SET expires_at = now() - interval '1 second' WHERE id = ANY($1)", [ids]);
        await Promise.all([lifecycle().expireDue(), second.get(CheckoutLifecycleService).expireDue(), lifecycle().expireDue()]);
        const expired = await vault.db.query<{ subject_id: string; n: number }>(
          "SELECT subject_id, count(*)::int AS n FROM audit_events WHERE type = 'checkout.expired' AND subject_id = ANY($1) GROUP BY subject_id",
          [ids],
        );
        expect(expired.map((e) => e.n)).toEqual(Array(6).fill(1));
        const rotations = await vault.db.query<{ n: number }>("SELECT count(*)::int AS n FROM rotations WHERE reason = 'checkin' AND account_id = ANY($1) GROUP BY account_id", [accounts]);
        expect(rotations.map((r) => r.n)).toEqual(Array(6).fill(1));
        for (const id of accounts) expect(await accountStatus(id)).toBe('available');
      }
    });
  });
});

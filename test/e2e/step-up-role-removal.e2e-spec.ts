import { randomBytes } from 'node:crypto';
import { CheckoutLifecycleService } from '../../src/checkouts/checkout-lifecycle.service';
import { EphemeralProvisioner } from '../../src/ephemeral/ephemeral-provisioner.service';
import { actingAs } from '../support/http';
import { REAL_TARGETS, RealTarget } from '../support/targets/real';
import { startTestVault, TestUser, TestVault } from '../support/vault';

/**
 * Issue 12, item 6: removing a role ends what the role granted, as disabling the user does. An ex-operator's open
 * checkouts are revoked by the checkout sweep (the password rotated, sessions ended, audited); an ex-vendor's live
 * one-time account is removed by the reaper; an approval given by someone who is no approver any more does not count.
 * On the real PostgreSQL, with a real scram-sha-256 PostgreSQL target (so a revoked password really stops working).
 */
describe('role removal ends what the role granted (e2e)', () => {
  let vault: TestVault;
  let admin: TestUser;
  let real: RealTarget;
  let targetId: string;

  const as = (user: TestUser) => actingAs(vault, user);
  const setRoles = (user: TestUser, roles: string[]) => as(admin).patch(`/v1/users/${user.id}`, { roles }, true).expect(200);
  const newAccount = async (policy: object = {}) => {
    const username = `rr_${randomBytes(4).toString('hex')}`;
    const password = `Orig-${randomBytes(10).toString('hex')}`;
    await real.createAccount(username, password);
    const res = await as(admin).post('/v1/accounts', { targetId, username, password, policy }, true).expect(201);
    return { id: res.body.id as string, username, password };
  };
  const checkout = (user: TestUser, accountId: string) => as(user).post('/v1/checkouts', { accountId, justification: 'role removal test' }, true);
  const events = (subjectId: string) =>
    vault.db.query<{ type: string; details: Record<string, unknown> }>('SELECT type, details FROM audit_events WHERE subject_id = $1 ORDER BY id', [subjectId]);
  const accountStatus = async (id: string) => (await as(admin).get(`/v1/accounts/${id}`).expect(200)).body.status as string;

  beforeAll(async () => {
    vault = await startTestVault({ env: { VAULT_ROTATION_SWEEP_MS: '3600000', VAULT_CHECKOUT_SWEEP_MS: '3600000', VAULT_EPHEMERAL_SWEEP_MS: '3600000' } });
    admin = await vault.admin();
    real = await REAL_TARGETS.postgres();
    targetId = (await as(admin).post('/v1/targets', { name: 'rr-pg', ...real.body }, true).expect(201)).body.id;
    await as(admin).post(`/v1/targets/${targetId}/verify`, {}, true).expect(200);
  }, 60_000);
  afterAll(async () => {
    await vault?.close();
    await real?.stop();
  });

  it("revokes an ex-operator's open checkouts at the next sweep: password rotated, audited as requester_role_removed", async () => {
    const leaving = await vault.createUser(['operator']);
    const stays = await vault.createUser(['operator']);
    const account = await newAccount({ approvalsRequired: 0 });
    const pendingAccount = await newAccount({ approvalsRequired: 1 });
    const keptAccount = await newAccount({ approvalsRequired: 0 });
    const active = (await checkout(leaving, account.id).expect(201)).body;
    expect(active.status).toBe('active');
    const pending = (await checkout(leaving, pendingAccount.id).expect(201)).body;
    expect(pending.status).toBe('pending_approval');
    const kept = (await checkout(stays, keptAccount.id).expect(201)).body;
    expect(await real.canLogin(account.username, account.password)).toBe(true);

    await setRoles(leaving, ['auditor']);
    // the role is gone at once: they cannot check in or reveal any more, so the vault must end it
    expect((await as(leaving).post(`/v1/checkouts/${active.id}/checkin`).expect(403)).body.code).toBe('FORBIDDEN');
    await vault.get(CheckoutLifecycleService).expireDue();

    for (const id of [active.id, pending.id]) {
      expect((await as(admin).get(`/v1/checkouts/${id}`).expect(200)).body).toMatchObject({ status: 'revoked', endReason: 'requester_role_removed', endedBy: 'system' });
    }
    expect(await real.canLogin(account.username, account.password)).toBe(false);
    expect(await accountStatus(account.id)).toBe('available');
    expect(await accountStatus(pendingAccount.id)).toBe('available');
    expect((await events(active.id)).find((e) => e.type === 'checkout.revoked')?.details).toMatchObject({ reason: 'requester_role_removed', wasActive: true });
    expect((await events(pending.id)).find((e) => e.type === 'checkout.revoked')?.details).toMatchObject({ reason: 'requester_role_removed', wasActive: false });
    // someone who is still an operator keeps theirs
    expect((await as(admin).get(`/v1/checkouts/${kept.id}`).expect(200)).body.status).toBe('active');
    await as(stays).post(`/v1/checkouts/${kept.id}/checkin`).expect(200);
  });

  it('an approval by someone who lost the approver role no longer counts', async () => {
    const operator = await vault.createUser(['operator']);
    const [a1, a2, a3] = [await vault.createUser(['approver']), await vault.createUser(['approver']), await vault.createUser(['approver'])];
    const account = await newAccount({ approvalsRequired: 2 });
    const co = (await checkout(operator, account.id).expect(201)).body;
    expect((await as(a1).post(`/v1/checkouts/${co.id}/approve`, {}, true).expect(200)).body.status).toBe('pending_approval');
    await setRoles(a1, ['auditor']);
    // a2's is the second approval given, but only one counts now
    expect((await as(a2).post(`/v1/checkouts/${co.id}/approve`, {}, true).expect(200)).body.status).toBe('pending_approval');
    expect((await as(a3).post(`/v1/checkouts/${co.id}/approve`, {}, true).expect(200)).body.status).toBe('active');
    await as(operator).post(`/v1/checkouts/${co.id}/checkin`).expect(200);
  });

  describe('one-time accounts', () => {
    let operator: TestUser;
    let approvers: TestUser[];
    const request = (vendor: TestUser) =>
      as(operator).post('/v1/ephemeral-accounts', { targetId, vendorUserId: vendor.id, ttlSeconds: 1800, justification: 'vendor fixes the index' }).expect(201);
    const row = async (id: string) => (await vault.db.query<{ status: string; end_reason: string | null; username: string | null }>('SELECT status, end_reason, username FROM ephemeral_accounts WHERE id = $1', [id]))[0];

    beforeAll(async () => {
      operator = await vault.createUser(['operator']);
      approvers = [await vault.createUser(['approver']), await vault.createUser(['approver']), await vault.createUser(['approver'])];
    });

    it("the reaper removes an ex-vendor's live one-time account from the target", async () => {
      await as(admin).put(`/v1/targets/${targetId}/ephemeral-policy`, { approvalsRequired: 1, maxTtlSeconds: 3600 }, true).expect(200);
      const vendor = await vault.createUser(['vendor']);
      const e = (await request(vendor)).body;
      await as(approvers[0]).post(`/v1/ephemeral-accounts/${e.id}/approve`, {}, true).expect(200);
      const { username, password } = (await as(vendor).post(`/v1/ephemeral-accounts/${e.id}/claim`, {}, true).expect(200)).body as { username: string; password: string };
      expect(await real.accountExists(username)).toBe(true);
      await setRoles(vendor, ['auditor']);
      await vault.get(EphemeralProvisioner).reap();
      expect(await row(e.id)).toMatchObject({ status: 'revoked', end_reason: 'revoked' });
      expect(await real.accountExists(username)).toBe(false);
      expect(await real.canLogin(username, password)).toBe(false);
      expect((await events(e.id)).find((x) => x.type === 'ephemeral.revoked')?.details).toMatchObject({ because: 'vendor_disabled_or_not_vendor' });
    });

    it('an approval of a one-time account by an ex-approver no longer counts', async () => {
      await as(admin).put(`/v1/targets/${targetId}/ephemeral-policy`, { approvalsRequired: 2, maxTtlSeconds: 3600 }, true).expect(200);
      const vendor = await vault.createUser(['vendor']);
      const e = (await request(vendor)).body;
      const approve = (who: TestUser) => as(who).post(`/v1/ephemeral-accounts/${e.id}/approve`, {}, true).expect(200);
      expect((await approve(approvers[0])).body.status).toBe('pending_approval');
      await setRoles(approvers[0], ['auditor']);
      expect((await approve(approvers[1])).body.status).toBe('pending_approval');
      expect((await approve(approvers[2])).body.status).toBe('approved');
      await as(vendor).post(`/v1/ephemeral-accounts/${e.id}/revoke`).expect(200);
    });
  });
});

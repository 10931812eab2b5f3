/**
 * Findings of the adversarial review of issue 13's refactor, kept as tests (each failed on the code it reviewed):
 * - a one-time account request or claim read the vendor on a second pool connection while its transaction held a
 *   lock: about 20 at once exhausted the pool and the rest failed after 5 s;
 * - a check-in whose rotation outlived the cleanup claim (and then failed) left the previous holder's sessions open.
 */
import { randomUUID } from 'node:crypto';
import { accountSecretRef } from '../../src/accounts/account.entity';
import { CheckoutLifecycleService } from '../../src/checkouts/checkout-lifecycle.service';
import { CheckoutsModule } from '../../src/checkouts/checkouts.module';
import { CheckoutsService } from '../../src/checkouts/checkouts.service';
import type { Actor, Role } from '../../src/common/actor';
import { SecretBoxService } from '../../src/crypto/secret-box.service';
import { EphemeralProvisioner } from '../../src/ephemeral/ephemeral-provisioner.service';
import { EphemeralModule } from '../../src/ephemeral/ephemeral.module';
import { EphemeralService } from '../../src/ephemeral/ephemeral.service';
import { createFakeTarget } from '../support/fake-target';
import { buildModule, ModuleHarness, TEST_ADMIN } from '../support/module-harness';

async function user(h: ModuleHarness, roles: Role[]): Promise<Actor> {
  const id = randomUUID();
  const name = `u${id.slice(0, 8)}`;
  await h.db.query('INSERT INTO users (id, username, password_hash, roles) VALUES ($1, $2, $3, $4)', [id, name, 'not-a-hash', roles]);
  return { id, kind: 'user', name, roles, mfaEnrolled: true };
}

describe('one-time accounts under load: the vendor is read inside the transaction', () => {
  let h: ModuleHarness;
  let requester: Actor;
  let vendor: Actor;
  let targetId: string;
  beforeAll(async () => {
    h = await buildModule({ imports: [EphemeralModule] });
    requester = await user(h, ['operator']);
    vendor = await user(h, ['vendor']);
    targetId = await createFakeTarget(h, 'postgres');
    await h.get(EphemeralService).setPolicy(TEST_ADMIN, targetId, { approvalsRequired: 0, maxTtlSeconds: 3600 } as never);
  }, 60_000);
  afterAll(() => h?.close());

  it('30 concurrent requests on one target (a pool of 20) all succeed', async () => {
    const svc = h.get(EphemeralService);
    const results = await Promise.allSettled(
      Array.from({ length: 30 }, (_, i) => svc.request(requester, { targetId, vendorUserId: vendor.id, ttlSeconds: 600, justification: `pool ${i}` } as never)),
    );
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
  }, 120_000);

  it('25 concurrent claims of different approved requests all succeed', async () => {
    const svc = h.get(EphemeralService);
    const ids: string[] = [];
    for (let i = 0; i < 25; i++) ids.push((await svc.request(requester, { targetId, vendorUserId: vendor.id, ttlSeconds: 600, justification: `claim ${i}` } as never)).id);
    const results = await Promise.allSettled(ids.map((id) => h.get(EphemeralProvisioner).claim(vendor, id)));
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
  }, 120_000);
});

describe('check-in with a rotation slower than the cleanup claim', () => {
  let h: ModuleHarness;
  let operator: Actor;
  let targetId: string;
  beforeAll(async () => {
    h = await buildModule({ imports: [CheckoutsModule], env: { VAULT_ROTATION_CLAIM_SECONDS: '1' } });
    operator = await user(h, ['operator']);
    targetId = await createFakeTarget(h, 'postgres');
  }, 60_000);
  afterAll(() => h?.close());

  it("still ends the previous holder's sessions when the rotation then fails", async () => {
    const pg = h.fake('postgres');
    const accountId = randomUUID();
    const username = `acct_${accountId.slice(0, 8)}`;
    await h.db.query(
      `INSERT INTO accounts (id, target_id, username, status, password_secret, policy, next_rotation_at)
       VALUES ($1, $2, $3, 'available', $4, '{}', now() + interval '30 days')`,
      [accountId, targetId, username, h.get(SecretBoxService).encrypt(accountSecretRef(accountId), 'Old-Password-1')],
    );
    pg.users.set(username, 'Old-Password-1');
    const checkout = await h.get(CheckoutsService).request(operator, { accountId, justification: 'slow rotation' } as never);
    pg.hang('updatePassword');
    const checkin = h.get(CheckoutLifecycleService).checkin(operator, checkout.id);
    await new Promise((r) => setTimeout(r, 1500)); // the cleanup claim (1 s) lapses while the target hangs
    pg.unhang(); // the rotation fails
    await checkin;
    expect((await h.db.query('SELECT status, must_rotate FROM accounts WHERE id = $1', [accountId]))[0]).toEqual({ status: 'available', must_rotate: true });
    expect(pg.calls('terminateSessions', username).length).toBe(1);
  });
});

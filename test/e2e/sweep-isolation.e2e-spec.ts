import { randomBytes } from 'node:crypto';
import { SchedulerService } from '../../src/scheduler/scheduler.service';
import { actingAs } from '../support/http';
import { freePort } from '../support/process';
import { startTestVault, TestUser, TestVault } from '../support/vault';

/**
 * One poison row never stops a sweep (issue 13): a pending rotation whose context cannot be loaded (its target's
 * admin credential no longer decrypts: the row was changed outside the API) used to abort recovery, and since
 * recovery, due rotations and the heartbeat ran in one step, the instance stopped rotating anything at all.
 */
describe('sweeps isolate failing items (e2e)', () => {
  let vault: TestVault;
  let admin: TestUser;
  const as = (u: TestUser) => actingAs(vault, u);

  beforeAll(async () => {
    vault = await startTestVault({ env: { VAULT_ROTATION_SWEEP_MS: '3600000', VAULT_CHECKOUT_SWEEP_MS: '3600000', VAULT_EPHEMERAL_SWEEP_MS: '3600000' } });
    admin = await vault.admin();
  }, 60_000);
  afterAll(() => vault?.close());

  /** A PostgreSQL target at a port where nothing listens, and an account on it with a stored password. */
  const accountOnDeadTarget = async () => {
    const port = await freePort();
    const target = (await as(admin).post('/v1/targets', { name: `dead-${randomBytes(3).toString('hex')}`, type: 'postgres', host: '127.0.0.1', port, admin: { username: 'vault_admin', password: `pw-${randomBytes(6).toString('hex')}` } }, true).expect(201)).body;
    const account = (await as(admin).post('/v1/accounts', { targetId: target.id, username: `acct_${randomBytes(3).toString('hex')}`, password: `Orig-${randomBytes(8).toString('hex')}` }, true).expect(201)).body;
    return { target, account };
  };

  it('a pending rotation that cannot be loaded is skipped (and logged); due rotations and the heartbeat still run', async () => {
    const poison = await accountOnDeadTarget();
    const healthy = await accountOnDeadTarget();
    const checked = await accountOnDeadTarget();
    // the poison: a pending rotation whose claim has lapsed, on a target whose credential no longer decrypts
    await as(admin).post(`/v1/accounts/${poison.account.id}/rotate`).expect(202);
    const deadline = Date.now() + 20_000;
    while ((await vault.db.query("SELECT 1 FROM rotations WHERE account_id = $1 AND status = 'pending' AND claimed_by IS NOT NULL", [poison.account.id])).length === 0) {
      if (Date.now() > deadline) throw new Error('no pending rotation');
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 500)); // the attempt settles (unreachable: it stays pending)
    await vault.db.query("UPDATE rotations SET claimed_until = now() - interval '1 minute' WHERE account_id = $1", [poison.account.id]);
    await vault.db.query("UPDATE targets SET host = 'elsewhere.example.net' WHERE id = $1", [poison.target.id]);
    // one healthy account is due for rotation, another for its heartbeat
    await vault.db.query("UPDATE accounts SET next_rotation_at = now() - interval '1 minute' WHERE id = $1", [healthy.account.id]);
    await vault.db.query('UPDATE accounts SET last_verified_at = NULL WHERE id = $1', [checked.account.id]);

    await vault.get(SchedulerService).sweep();

    const healthyRotations = await vault.db.query<{ reason: string }>('SELECT reason FROM rotations WHERE account_id = $1', [healthy.account.id]);
    expect(healthyRotations.map((r) => r.reason)).toContain('scheduled');
    const [{ verified }] = await vault.db.query<{ verified: boolean }>('SELECT last_verified_at IS NOT NULL AS verified FROM accounts WHERE id = $1', [checked.account.id]);
    expect(verified).toBe(true);
    // the poison is still pending, untouched, for an admin to fix (its credential must be entered again)
    const [poisoned] = await vault.db.query<{ status: string }>("SELECT status FROM rotations WHERE account_id = $1 AND reason = 'manual'", [poison.account.id]);
    expect(poisoned.status).toBe('pending');
  }, 60_000);

  it('with the poison still pending, checkout expiry runs on the same instance', async () => {
    await vault.db.query("UPDATE rotations SET claimed_until = now() - interval '1 minute' WHERE status = 'pending'");
    const operator = await vault.createUser(['operator']);
    const { account } = await accountOnDeadTarget();
    const checkout = (await as(operator).post('/v1/checkouts', { accountId: account.id, justification: 'sweep isolation' }, true).expect(201)).body;
    vault.clock.advance(2 * 3600_000); // past the lease (the default policy's hour)

    await vault.get(SchedulerService).sweep();
    await vault.get(SchedulerService).checkoutSweep();

    const [ended] = await vault.db.query<{ status: string }>('SELECT status FROM checkouts WHERE id = $1', [checkout.id]);
    expect(ended.status).toBe('expired');
    const [poisoned] = await vault.db.query<{ n: number }>("SELECT count(*)::int AS n FROM rotations WHERE status = 'pending' AND reason = 'manual'");
    expect(poisoned.n).toBe(1);
  }, 60_000);
});

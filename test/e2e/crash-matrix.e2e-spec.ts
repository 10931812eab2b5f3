import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { AccountEntity, accountSecretRef } from '../../src/accounts/account.entity';
import { SecretBoxService } from '../../src/crypto/secret-box.service';
import { CrashPoint } from '../../src/database/claimed-work';
import { TargetEntity } from '../../src/targets/target.entity';
import { TargetsService } from '../../src/targets/targets.service';
import { createTestDatabase, TestDatabase } from '../support/db';
import { freePort, requireBuild, spawnVault, VaultProcess } from '../support/process';
import { REAL_TARGETS, RealTarget } from '../support/targets/real';
import { startTestVault, TEST_ENV, TestVault } from '../support/vault';

/**
 * INVARIANT 7, the hard way: the built vault runs as a child process, a crash point makes it SIGKILL itself
 * at each step of a rotation, a fresh process recovers, and every account must log in on the real target with
 * the password the vault holds.
 */
const CRASH_POINTS: CrashPoint[] = ['rotation-after-pending-write', 'rotation-after-target-change', 'rotation-after-login-check', 'rotation-before-commit'];

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const start = Date.now();
  while (Date.now() - start < timeoutMs) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe.each(['postgres', 'mysql', 'ssh'] as const)('crash matrix on a real %s target (built vault, SIGKILL)', (type) => {
  let db: TestDatabase;
  let real: RealTarget;
  let setup: TestVault;
  let targetId: string;
  const masterKey = randomBytes(32);
  const procs: VaultProcess[] = [];
  const childEnv = async (extra: Record<string, string>) => ({
    DATABASE_URL: db.url,
    VAULT_MASTER_KEY: masterKey.toString('base64'),
    PORT: String(await freePort()),
    VAULT_ARGON2_MEMORY_KIB: TEST_ENV.VAULT_ARGON2_MEMORY_KIB,
    VAULT_ARGON2_TIME_COST: TEST_ENV.VAULT_ARGON2_TIME_COST,
    VAULT_ROTATION_CLAIM_SECONDS: '1',
    VAULT_ROTATION_SWEEP_MS: '300',
    LOG_LEVEL: 'warn',
    ...extra,
  });

  beforeAll(async () => {
    requireBuild();
    db = await createTestDatabase();
    real = await REAL_TARGETS[type]();
    // this in-process vault only sets things up: its own sweep must not race the child processes
    setup = await startTestVault({ db, masterKey, env: { VAULT_ROTATION_SWEEP_MS: '3600000' } });
    const auth = await setup.adminAuth();
    targetId = (await setup.http().post('/v1/targets').set('Authorization', auth).set('X-MFA-Code', await (await setup.admin()).code()).send({ name: `crash-${type}`, host: 'x', port: 1, ...real.body }).expect(201)).body.id;
  }, 60_000);
  afterAll(async () => {
    for (const p of procs) p.child.kill('SIGKILL');
    await setup?.close();
    await real?.stop();
    await db?.drop();
  });

  it.each(CRASH_POINTS)('killed at %s: after restart every account logs in with the password the vault holds', async (point) => {
    const username = `vc_${randomBytes(4).toString('hex')}`;
    const original = `Orig-${randomBytes(8).toString('hex')}`;
    await real.createAccount(username, original);
    const auth = await setup.adminAuth();
    const account = (await setup.http().post('/v1/accounts').set('Authorization', auth).set('X-MFA-Code', await (await setup.admin()).code()).send({ targetId, username, password: original }).expect(201)).body;
    await db.query("UPDATE accounts SET next_rotation_at = now() - interval '1 minute' WHERE id = $1", [account.id]);

    // the first process picks the due account up in its start-up sweep and dies at the crash point
    const doomed = spawnVault(await childEnv({ VAULT_CRASH_POINT: point }));
    procs.push(doomed);
    await Promise.race([doomed.exited, new Promise((r) => setTimeout(r, 30_000))]);
    if (doomed.child.exitCode === null && doomed.child.signalCode === null) throw new Error(`the vault never reached ${point}:\n${doomed.output().slice(-2000)}`);
    expect(doomed.child.signalCode).toBe('SIGKILL');
    const [pending] = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM rotations WHERE account_id = $1 AND status = 'pending'", [account.id]);
    expect(pending.n).toBe(1);

    // a fresh process recovers the abandoned rotation once its claim has expired
    const healthy = spawnVault(await childEnv({}));
    procs.push(healthy);
    await waitFor('the rotation to be settled', async () => {
      const [row] = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM rotations WHERE account_id = $1 AND status = 'pending'", [account.id]);
      return row.n === 0;
    });
    healthy.child.kill('SIGTERM');
    await healthy.exited;

    const entity = await setup.get(DataSource).getRepository(AccountEntity).findOneByOrFail({ id: account.id });
    const password = setup.get(SecretBoxService).decrypt(accountSecretRef(entity.id), entity.passwordSecret!);
    const target = await setup.get(TargetsService).connect(await setup.get(DataSource).getRepository(TargetEntity).findOneByOrFail({ id: targetId }));
    await target.login({ username, password }); // throws if it does not work
    expect(entity.status).not.toBe('rotating');
  }, 90_000);
});

import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { AccountEntity, accountSecretRef } from '../../src/accounts/account.entity';
import { SecretBoxService } from '../../src/crypto/secret-box.service';
import { RotationService } from '../../src/rotation/rotation.service';
import { AccountStore } from '../../src/accounts/account-store';
import { UnitOfWork } from '../../src/database/unit-of-work';
import { REAL_TARGETS, RealTarget } from '../support/targets/real';
import { startTestVault, TestUser, TestVault } from '../support/vault';
import { needsStepUp, withMfa } from '../support/http';

describe.each(['postgres', 'mysql', 'ssh'] as const)('rotation on a real %s target (e2e)', (type) => {
  let vault: TestVault;
  let admin: TestUser;
  let real: RealTarget;
  let targetId: string;
  const name = () => `vr_${randomBytes(4).toString('hex')}`;
  const api = () => ({
    /** With a fresh step-up code where the route needs one. */
    post: (path: string, body: object = {}) => {
      const req = vault.http().post(path).set('Authorization', admin.auth).send(body);
      return needsStepUp('post', path) ? withMfa(req, () => admin.code()) : req;
    },
    get: (path: string) => vault.http().get(path).set('Authorization', admin.auth),
  });
  /** The password the vault holds for an account, decrypted as the vault would. */
  const stored = async (id: string) => {
    const account = await vault.get(DataSource).getRepository(AccountEntity).findOneByOrFail({ id });
    return account.passwordSecret ? vault.get(SecretBoxService).decrypt(accountSecretRef(id), account.passwordSecret) : null;
  };
  const loginWorks = async (username: string, password: string) => {
    const t = await vault.get(DataSource).query('SELECT 1'); // keep the vault's pool warm; the check itself goes to the target
    void t;
    const target = (await api().get(`/v1/targets/${targetId}`).expect(200)).body;
    const { TargetsService } = await import('../../src/targets/targets.service');
    const { TargetEntity } = await import('../../src/targets/target.entity');
    const entity = await vault.get(DataSource).getRepository(TargetEntity).findOneByOrFail({ id: target.id });
    const conn = await vault.get(TargetsService).connect(entity);
    return conn.login({ username, password }).then(() => true, () => false);
  };

  /** An account created on the target with a known password, and put in the vault with it. */
  const knownAccount = async () => {
    const username = name();
    const original = `Orig-${randomBytes(8).toString('hex')}`;
    await real.createAccount(username, original);
    const account = (await api().post('/v1/accounts', { targetId, username, password: original }).expect(201)).body;
    return { username, original, account };
  };

  /** Step 1 of a rotation only, as an instance that dies right after it would leave it. */
  const writeAhead = (accountId: string) =>
    vault.get(UnitOfWork).run(async (tx) => {
      const account = await vault.get(AccountStore).find(tx.em, accountId);
      return vault.get(RotationService).writeAhead(tx, account, 'manual', null);
    });

  beforeAll(async () => {
    vault = await startTestVault({ env: { VAULT_ROTATION_MAX_FAILURES: '2', VAULT_ROTATION_CLAIM_SECONDS: '1', VAULT_ROTATION_SWEEP_MS: '3600000' } });
    admin = await vault.admin();
    real = await REAL_TARGETS[type]();
    targetId = (await api().post('/v1/targets', { name: `t-${type}`, port: 1, host: 'x', ...real.body }).expect(201)).body.id;
    await api().post(`/v1/targets/${targetId}/verify`).expect(200);
  }, 60_000);
  afterAll(async () => {
    await vault?.close();
    await real?.stop();
  });

  it('onboards an account without a password: the vault sets its own, which logs in, and the old one stops working', async () => {
    const username = name();
    const original = `Orig-${randomBytes(8).toString('hex')}`;
    await real.createAccount(username, original);
    const res = await api().post('/v1/accounts', { targetId, username }).expect(201);
    expect(res.body).toMatchObject({ status: 'available', lastRotatedAt: expect.any(String) });
    const password = await stored(res.body.id);
    expect(password).toHaveLength(32);
    expect(await loginWorks(username, password!)).toBe(true);
    expect(await loginWorks(username, original)).toBe(false);
    expect(JSON.stringify(res.body)).not.toContain(password);
  });

  it('rotates on demand (202): the new password logs in, the old one fails, history and audit hold no secret', async () => {
    const { username, original, account } = await knownAccount();
    const res = await api().post(`/v1/accounts/${account.id}/rotate`).expect(202);
    expect(res.body).toEqual({ rotationId: expect.any(String) });
    await vault.get(RotationService).settle();
    const now = await stored(account.id);
    expect(now).not.toBe(original);
    expect(await loginWorks(username, now!)).toBe(true);
    expect(await loginWorks(username, original)).toBe(false);
    const history = (await api().get(`/v1/accounts/${account.id}/rotations`).expect(200)).body;
    expect(history.items[0]).toMatchObject({ id: res.body.rotationId, reason: 'manual', status: 'succeeded', errorCode: null });
    const events = await vault.db.query<{ type: string; details: unknown }>("SELECT type, details FROM audit_events WHERE subject_id = $1 ORDER BY id", [account.id]);
    expect(events.map((e) => e.type)).toEqual(['account.created', 'rotation.started', 'rotation.succeeded']);
    for (const s of [now!, original]) expect(JSON.stringify([history, events])).not.toContain(s);
    const [row] = await vault.db.query<{ pending_secret: Buffer | null }>('SELECT pending_secret FROM rotations WHERE id = $1', [res.body.rotationId]);
    expect(row.pending_secret).toBeNull();
  });

  it('recovers a rotation abandoned after the target change: the pending password becomes current', async () => {
    const { username, account } = await knownAccount();
    const rotation = vault.get(RotationService);
    // a "dead" instance: wrote ahead and changed the target, then vanished before committing
    const rotationId = await writeAhead(account.id);
    const [pending] = await vault.db.query<{ pending_secret: Buffer }>('SELECT pending_secret FROM rotations WHERE id = $1', [rotationId]);
    const pendingPassword = vault.get(SecretBoxService).decrypt({ table: 'rotations', rowId: rotationId, column: 'pending_secret' }, pending.pending_secret);
    const { TargetEntity } = await import('../../src/targets/target.entity');
    const { TargetsService } = await import('../../src/targets/targets.service');
    const conn = await vault.get(TargetsService).connect(await vault.get(DataSource).getRepository(TargetEntity).findOneByOrFail({ id: targetId }));
    await conn.updatePassword({ username, password: pendingPassword });
    await vault.db.query("UPDATE rotations SET claimed_by = 'dead-instance', claimed_until = now() - interval '1 second' WHERE id = $1", [rotationId]);

    expect(await rotation.recoverStale()).toBeGreaterThanOrEqual(1);
    expect(await stored(account.id)).toBe(pendingPassword);
    expect(await loginWorks(username, pendingPassword)).toBe(true);
    expect((await api().get(`/v1/accounts/${account.id}`).expect(200)).body.status).toBe('available');
  });

  it('recovers a rotation abandoned before the target change: the current password stays, the pending one is dropped', async () => {
    const { username, original, account } = await knownAccount();
    const rotation = vault.get(RotationService);
    const rotationId = await writeAhead(account.id);
    await vault.db.query("UPDATE rotations SET claimed_by = 'dead-instance', claimed_until = now() - interval '1 second' WHERE id = $1", [rotationId]);
    await rotation.recoverStale();
    expect(await stored(account.id)).toBe(original);
    expect(await loginWorks(username, original)).toBe(true);
    const [row] = await vault.db.query<{ status: string; pending_secret: Buffer | null }>('SELECT status, pending_secret FROM rotations WHERE id = $1', [rotationId]);
    expect(row).toEqual({ status: 'failed', pending_secret: null });
  });

  it('never touches the target with a rotation whose claim lapsed before its turn (recovery may own it by now)', async () => {
    const { username, original, account } = await knownAccount();
    const rotation = vault.get(RotationService);
    const rotationId = await writeAhead(account.id);
    await vault.db.query("UPDATE rotations SET claimed_until = now() - interval '1 second' WHERE id = $1", [rotationId]);
    expect(await rotation.execute(rotationId)).toBe('pending');
    expect(await loginWorks(username, original)).toBe(true);
    await rotation.recoverStale();
    expect(await stored(account.id)).toBe(original);
    expect(await loginWorks(username, original)).toBe(true);
  });

  it('retries a failing rotation with backoff, then marks the account needs_attention; the stored password keeps working', async () => {
    const username = name();
    const original = `Orig-${randomBytes(8).toString('hex')}`;
    await real.createAccount(username, original);
    // an account the target does not have under that name cannot be rotated
    const account = (await api().post('/v1/accounts', { targetId, username: `${username}x`, password: original }).expect(201)).body;
    const rotation = vault.get(RotationService);
    await api().post(`/v1/accounts/${account.id}/rotate`).expect(202);
    await rotation.settle();
    let view = (await api().get(`/v1/accounts/${account.id}`).expect(200)).body;
    expect(view.status).toBe('available');
    expect(new Date(view.nextRotationAt).getTime()).toBeGreaterThan(Date.now());
    await api().post(`/v1/accounts/${account.id}/rotate`).expect(202);
    await rotation.settle();
    view = (await api().get(`/v1/accounts/${account.id}`).expect(200)).body;
    expect(view.status).toBe('needs_attention');
    expect(await stored(account.id)).toBe(original);
    const history = (await api().get(`/v1/accounts/${account.id}/rotations`).expect(200)).body.items;
    expect(history.map((h: { status: string }) => h.status)).toEqual(['failed', 'failed']);
    // visible to monitoring too
    const metrics = (await vault.http().get('/metrics').expect(200)).text;
    expect(metrics).toMatch(/^vault_accounts\{status="needs_attention"\} [1-9]/m);
    expect(metrics).toMatch(/^vault_rotations_total\{outcome="failed",reason="manual"\} [1-9]/m);
    expect(metrics).not.toContain(original);
  });

  it('notices drift (password changed behind the vault) and resets it through the admin credential', async () => {
    const { username, original, account } = await knownAccount();
    const { TargetEntity } = await import('../../src/targets/target.entity');
    const { TargetsService } = await import('../../src/targets/targets.service');
    const conn = await vault.get(TargetsService).connect(await vault.get(DataSource).getRepository(TargetEntity).findOneByOrFail({ id: targetId }));
    await conn.updatePassword({ username, password: `Changed-${randomBytes(8).toString('hex')}` });
    await vault.db.query('UPDATE accounts SET last_verified_at = NULL WHERE id = $1', [account.id]);
    await vault.db.query("UPDATE accounts SET last_verified_at = now() WHERE id <> $1", [account.id]);

    const { HeartbeatService } = await import('../../src/rotation/heartbeat.service');
    expect(await vault.get(HeartbeatService).run(10)).toEqual({ checked: 1, drifted: 1 });
    const now = await stored(account.id);
    expect(now).not.toBe(original);
    expect(await loginWorks(username, now!)).toBe(true);
    const types = (await vault.db.query<{ type: string }>('SELECT type FROM audit_events WHERE subject_id = $1 ORDER BY id', [account.id])).map((e) => e.type);
    expect(types).toEqual(['account.created', 'account.drift_detected', 'rotation.started', 'rotation.succeeded']);
    // the next heartbeat finds nothing to do
    expect(await vault.get(HeartbeatService).run(10)).toEqual({ checked: 0, drifted: 0 });
  });

  it('rotates due accounts once, even with two sweeps racing', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const username = name();
      await real.createAccount(username, `Orig-${randomBytes(8).toString('hex')}`);
      ids.push((await api().post('/v1/accounts', { targetId, username }).expect(201)).body.id);
    }
    await vault.db.query("UPDATE accounts SET next_rotation_at = now() - interval '1 minute' WHERE id = ANY($1)", [ids]);
    const rotation = vault.get(RotationService);
    await Promise.all([rotation.rotateDue(10), rotation.rotateDue(10)]);
    await rotation.settle();
    const counts = await vault.db.query<{ account_id: string; n: number }>(
      "SELECT account_id, count(*)::int AS n FROM rotations WHERE account_id = ANY($1) AND reason = 'scheduled' GROUP BY account_id",
      [ids],
    );
    expect(counts.map((c) => c.n)).toEqual([1, 1, 1]);
    for (const id of ids) expect((await api().get(`/v1/accounts/${id}`).expect(200)).body.status).toBe('available');
  });
});

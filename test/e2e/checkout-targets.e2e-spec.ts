import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { AccountEntity, accountSecretRef } from '../../src/accounts/account.entity';
import { CheckoutLifecycleService } from '../../src/checkouts/checkout-lifecycle.service';
import { SecretBoxService } from '../../src/crypto/secret-box.service';
import { freePort } from '../support/process';
import { REAL_TARGETS, RealTarget } from '../support/targets/real';
import { canLoginMysql, canLoginPg, canLoginSsh, LiveSession } from '../support/targets/sessions';
import { startTestVault, TestUser, TestVault } from '../support/vault';
import { needsStepUp, withMfa } from '../support/http';

/**
 * Checkouts against real targets, end to end through the HTTP API: the credential an operator checks out logs in
 * on the real server (through ssh2 / pg / mysql2, never the vault's connector); however the checkout ends
 * (check-in, lease expiry, revocation) the password it revealed stops working, the operator's live session is
 * cut, and the vault holds a new password that works — and no audit event or checkout view ever holds either.
 */
describe.each(['postgres', 'mysql', 'ssh'] as const)('checkouts on a real %s target (e2e)', (type) => {
  let vault: TestVault;
  let admin: TestUser;
  let operator: TestUser;
  let secondOperator: TestUser;
  let real: RealTarget;
  let targetId: string;
  /** Sessions opened by a test, closed after it whatever happened. */
  let sessions: LiveSession[] = [];

  const name = () => `vc_${randomBytes(4).toString('hex')}`;
  const as = (user: TestUser) => ({
    /** With a fresh step-up code where the route needs one. */
    post: (path: string, body: object = {}) => {
      const req = vault.http().post(path).set('Authorization', user.auth).send(body);
      return needsStepUp('post', path) ? withMfa(req, () => user.code()) : req;
    },
    get: (path: string) => vault.http().get(path).set('Authorization', user.auth),
  });
  /** `POST /v1/checkouts` with a fresh step-up code. */
  const checkout = async (user: TestUser, accountId: string) =>
    vault
      .http()
      .post('/v1/checkouts')
      .set('Authorization', user.auth)
      .set('X-MFA-Code', await user.code())
      .send({ accountId, justification: `e2e: ${type} maintenance` });
  /** The password the vault holds for an account, decrypted as the vault would. */
  const stored = async (id: string) => {
    const account = await vault.get(DataSource).getRepository(AccountEntity).findOneByOrFail({ id });
    return account.passwordSecret ? vault.get(SecretBoxService).decrypt(accountSecretRef(id), account.passwordSecret) : null;
  };
  const openSession = async (username: string, password: string) => {
    const s = await real.openSession(username, password);
    sessions.push(s);
    return s;
  };
  const auditOf = (subjectId: string) =>
    vault.db.query<{ type: string; actor_id: string | null; outcome: string; details: Record<string, unknown> }>(
      'SELECT type, actor_id, outcome, details FROM audit_events WHERE subject_id = $1 ORDER BY id',
      [subjectId],
    );

  /** A fresh account on the target with a known password, registered in the vault (default policy: rotate after check-in). */
  const newAccount = async () => {
    const username = name();
    const password = `Orig-${randomBytes(10).toString('hex')}`;
    await real.createAccount(username, password);
    expect(await real.canLogin(username, password)).toBe(true);
    const account = (await as(admin).post('/v1/accounts', { targetId, username, password }).expect(201)).body;
    expect(account).toMatchObject({ status: 'available', username });
    return { id: account.id as string, username, password };
  };

  /** The operator checks the account out; the credential handed out is the account's and works, and a live session is opened with it. */
  const checkOut = async (account: { id: string; username: string; password: string }, user = operator) => {
    const res = await checkout(user, account.id);
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      accountId: account.id,
      requesterId: user.id,
      status: 'active',
      credential: { username: account.username, password: account.password, host: real.body.host, port: real.body.port },
    });
    const { credential } = res.body as { credential: { username: string; password: string } };
    expect(await real.canLogin(credential.username, credential.password)).toBe(true);
    expect((await as(admin).get(`/v1/accounts/${account.id}`).expect(200)).body.status).toBe('checked_out');
    const session = await openSession(credential.username, credential.password);
    expect(await session.alive()).toBe(true);
    return { id: res.body.id as string, credential, session };
  };

  /**
   * What every end of a checkout must leave behind: the session it was used for is dead, its password no longer
   * logs in, the vault holds a new one that does, the account is free again, the rotation ran for reason
   * `checkin`, and neither password appears in any audit event or checkout view.
   */
  const expectEnded = async (
    account: { id: string; username: string },
    c: { id: string; credential: { password: string }; session: LiveSession },
    status: 'returned' | 'expired' | 'revoked',
    endEvent: string,
  ) => {
    const view = (await as(admin).get(`/v1/checkouts/${c.id}`).expect(200)).body;
    expect(view).toMatchObject({ id: c.id, status, endedAt: expect.any(String), rotationId: expect.any(String) });
    expect(await c.session.alive()).toBe(false);
    expect(await real.canLogin(account.username, c.credential.password)).toBe(false);
    const now = await stored(account.id);
    expect(now).not.toBeNull();
    expect(now).not.toBe(c.credential.password);
    expect(await real.canLogin(account.username, now!)).toBe(true);
    expect((await as(admin).get(`/v1/accounts/${account.id}`).expect(200)).body).toMatchObject({ status: 'available' });

    const events = await auditOf(c.id);
    expect(events.map((e) => e.type)).toEqual(['checkout.requested', 'checkout.activated', 'checkout.revealed', endEvent, 'checkout.sessions_terminated']);
    expect(events.every((e) => e.outcome === 'success')).toBe(true);
    expect(events.find((e) => e.type === endEvent)?.details).toMatchObject({ accountId: account.id, wasActive: true, rotationId: view.rotationId });
    const accountEvents = await auditOf(account.id);
    expect(accountEvents.map((e) => e.type)).toEqual(['account.created', 'rotation.started', 'rotation.succeeded']);
    expect(accountEvents[1].details).toMatchObject({ rotationId: view.rotationId, reason: 'checkin' });
    expect(accountEvents[2].details).toMatchObject({ rotationId: view.rotationId });
    const history = (await as(admin).get(`/v1/accounts/${account.id}/rotations`).expect(200)).body.items;
    expect(history).toEqual([expect.objectContaining({ id: view.rotationId, reason: 'checkin', status: 'succeeded', errorCode: null })]);

    // nothing that is stored or answered outside a checkout/reveal answer holds a password
    const everything = JSON.stringify([
      await vault.db.query('SELECT * FROM audit_events'),
      (await as(operator).get(`/v1/checkouts/${c.id}`)).body,
      (await as(admin).get(`/v1/checkouts?accountId=${account.id}`).expect(200)).body,
      (await as(admin).get('/v1/audit-events').expect(200)).body,
      view,
      history,
    ]);
    for (const secret of [c.credential.password, now!]) expect(everything).not.toContain(secret);
    return view;
  };

  beforeAll(async () => {
    // no timers: the tests end checkouts and run the sweeps themselves
    vault = await startTestVault({ env: { VAULT_CHECKOUT_SWEEP_MS: '3600000', VAULT_ROTATION_SWEEP_MS: '3600000' } });
    admin = await vault.admin();
    operator = await vault.createUser(['operator']);
    secondOperator = await vault.createUser(['operator']);
    real = await REAL_TARGETS[type]();
    targetId = (await as(admin).post('/v1/targets', { name: `t-${type}`, ...real.body }).expect(201)).body.id;
    await as(admin).post(`/v1/targets/${targetId}/verify`).expect(200);
  }, 60_000);
  afterEach(async () => {
    await Promise.all(sessions.map((s) => s.close()));
    sessions = [];
  });
  afterAll(async () => {
    await vault?.close();
    await real?.stop();
  });

  it('proves with logins that tell a refused password from a broken target', async () => {
    const account = await newAccount();
    expect(await real.canLogin(account.username, `${account.password}x`)).toBe(false);
    // nothing listens there: an error, never "the password stopped working"
    const canLoginAt = { postgres: canLoginPg, mysql: canLoginMysql, ssh: canLoginSsh }[type];
    await expect(canLoginAt('127.0.0.1', await freePort(), account.username, account.password)).rejects.toThrow(/other than a refused password.*ECONNREFUSED/);
  });

  it('check-in: the checked-out password worked, then it fails, its session is cut, and the vault holds a new one that works', async () => {
    const account = await newAccount();
    const c = await checkOut(account);
    // while it is out, nobody else gets it
    expect((await checkout(secondOperator, account.id)).body).toMatchObject({ code: 'ACCOUNT_CHECKED_OUT' });

    const res = await as(operator).post(`/v1/checkouts/${c.id}/checkin`).expect(200);
    expect(res.body).toMatchObject({ id: c.id, status: 'returned', endReason: 'checked_in', endedBy: operator.id });
    expect(JSON.stringify(res.body)).not.toContain(c.credential.password);
    await expectEnded(account, c, 'returned', 'checkout.checked_in');

    // an ended checkout is not ended twice, and its credential is not revealed again
    expect((await as(operator).post(`/v1/checkouts/${c.id}/checkin`).expect(409)).body).toMatchObject({ code: 'CHECKOUT_ENDED' });
    const reveal = await vault.http().post(`/v1/checkouts/${c.id}/reveal`).set('Authorization', operator.auth).set('X-MFA-Code', await operator.code()).send({});
    expect(reveal.status).toBe(409);
    expect(JSON.stringify(reveal.body)).not.toContain(c.credential.password);
  });

  it('expiry: a lease that is over ends by the sweep, with the same proofs; no reveal after the lease', async () => {
    const account = await newAccount();
    const c = await checkOut(account);
    await vault.db.query("UPDATE checkouts SET expires_at = now() - interval '1 second' WHERE id = $1", [c.id]);
    // past its lease but not swept yet: the credential is not handed out again
    const late = await vault.http().post(`/v1/checkouts/${c.id}/reveal`).set('Authorization', operator.auth).set('X-MFA-Code', await operator.code()).send({});
    expect(late.status).toBe(410);
    expect(JSON.stringify(late.body)).not.toContain(c.credential.password);

    expect(await vault.get(CheckoutLifecycleService).expireDue()).toBe(1);
    const view = await expectEnded(account, c, 'expired', 'checkout.expired');
    expect(view).toMatchObject({ endReason: 'expired', endedBy: 'system' });
    // swept once: a second sweep finds nothing
    expect(await vault.get(CheckoutLifecycleService).expireDue()).toBe(0);
  });

  it('revoke: an admin ends the checkout by force, with the same proofs; the operator cannot revoke', async () => {
    const account = await newAccount();
    const c = await checkOut(account);
    await as(operator).post(`/v1/checkouts/${c.id}/revoke`, { reason: 'not mine to revoke' }).expect(403);
    expect(await c.session.alive()).toBe(true);
    expect(await real.canLogin(account.username, c.credential.password)).toBe(true);

    const res = await as(admin).post(`/v1/checkouts/${c.id}/revoke`, { reason: 'incident 42' }).expect(200);
    expect(res.body).toMatchObject({ id: c.id, status: 'revoked', endReason: 'revoked', endedBy: admin.id });
    await expectEnded(account, c, 'revoked', 'checkout.revoked');
    const revoked = (await auditOf(c.id)).find((e) => e.type === 'checkout.revoked');
    expect(revoked).toMatchObject({ actor_id: admin.id, details: expect.objectContaining({ reason: 'incident 42' }) });
    // the operator's own check-in comes too late
    expect((await as(operator).post(`/v1/checkouts/${c.id}/checkin`).expect(409)).body).toMatchObject({ code: 'CHECKOUT_ENDED' });
  });

  it('the next operator gets a different password, which works, while the previous one stays dead', async () => {
    const account = await newAccount();
    const first = await checkOut(account);
    await as(operator).post(`/v1/checkouts/${first.id}/checkin`).expect(200);
    expect(await real.canLogin(account.username, first.credential.password)).toBe(false);

    const res = await checkout(secondOperator, account.id);
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ status: 'active', requesterId: secondOperator.id, credential: { username: account.username } });
    const second = res.body.credential as { username: string; password: string };
    expect(second.password).not.toBe(first.credential.password);
    expect(second.password).toBe(await stored(account.id));
    expect(await real.canLogin(account.username, second.password)).toBe(true);
    expect(await real.canLogin(account.username, first.credential.password)).toBe(false);
    const session = await openSession(account.username, second.password);
    expect(await session.alive()).toBe(true);
    // the first operator cannot see, let alone end, the second operator's checkout
    await as(operator).post(`/v1/checkouts/${res.body.id}/checkin`).expect(404);
    expect(await session.alive()).toBe(true);

    await as(secondOperator).post(`/v1/checkouts/${res.body.id}/checkin`).expect(200);
    expect(await session.alive()).toBe(false);
    expect(await real.canLogin(account.username, second.password)).toBe(false);
    const third = await stored(account.id);
    expect([first.credential.password, second.password]).not.toContain(third);
    expect(await real.canLogin(account.username, third!)).toBe(true);
  });
});

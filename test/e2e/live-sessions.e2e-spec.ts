import { randomBytes, randomUUID } from 'node:crypto';
import type { Response } from 'supertest';
import { ConnectorRegistry } from '../../src/connectors/connector.registry';
import { sshSessionId } from '../../src/connectors/ssh/ssh-remote';
import { FakeConnector } from '../support/fake-connector';
import { createFakeTarget } from '../support/fake-target';
import { REAL_TARGETS, RealTarget } from '../support/targets/real';
import { run } from '../support/targets/run';
import { LiveSession } from '../support/targets/sessions';
import { startTestVault, TestUser, TestVault } from '../support/vault';

/**
 * Live sessions through the HTTP API on real targets (issue 16): the holder of a checkout (and of a one-time account)
 * sees the session they hold open on the target; an admin sees it target-wide and ends it with MFA (audited
 * `session.terminated`), and the held session is then dead. Nobody else's session is listed for them or ended through
 * the vault: another user's checkout is 404, a session of an account the vault does not manage (or the target admin's)
 * is 404 SESSION_NOT_FOUND and keeps running, ids of the wrong form are 400 SESSION_ID_INVALID.
 */
describe.each(['postgres', 'mysql', 'ssh'] as const)('live sessions on a real %s target (e2e)', (type) => {
  let vault: TestVault;
  let admin: TestUser;
  let holder: TestUser;
  let otherOperator: TestUser;
  let auditor: TestUser;
  let approver: TestUser;
  let vendor: TestUser;
  let otherVendor: TestUser;
  let real: RealTarget;
  let targetId: string;
  let sessions: LiveSession[] = [];

  const name = () => `vl_${randomBytes(4).toString('hex')}`;
  const get = (user: TestUser, path: string) => vault.http().get(path).set('Authorization', user.auth);
  const post = async (user: TestUser, path: string, body: object = {}, mfa = false) => {
    const req = vault.http().post(path).set('Authorization', user.auth);
    if (mfa) req.set('X-MFA-Code', await user.code());
    return req.send(body);
  };
  const expectStatus = (res: Response, status: number) => {
    expect({ status: res.status, body: res.body }).toMatchObject({ status });
    return res.body;
  };
  const terminate = (sessionId: string, target = targetId) => post(admin, `/v1/targets/${target}/sessions/${encodeURIComponent(sessionId)}/terminate`, {}, true);
  const open = async (username: string, password: string) => {
    const s = await real.openSession(username, password);
    sessions.push(s);
    return s;
  };
  /** An account made on the target by its own administrator, outside the vault, with a session held open. */
  const unmanaged = async () => {
    const username = name();
    const password = `Pw-${randomBytes(10).toString('hex')}`;
    await real.createAccount(username, password);
    return { username, session: await open(username, password) };
  };
  /** The id the connector gives the unmanaged account's session: read on the target the way the connector reads it. */
  const sessionIdOf = async (username: string): Promise<string> => {
    if (type === 'postgres') {
      const [r] = await real.adminSql!(
        "SELECT pid, (extract(epoch FROM backend_start) * 1000000)::bigint::text AS us FROM pg_stat_activity WHERE usename = $1 AND backend_type = 'client backend'",
        [username],
      );
      return `pg-${r.pid}-${r.us}`;
    }
    if (type === 'mysql') {
      const [r] = await real.adminSql!('SELECT ID AS id FROM information_schema.PROCESSLIST WHERE USER = ?', [username]);
      return `my-${r.id}`;
    }
    const out = (await run('ps', ['-eo', 'pid=,ruid=,euid=,lstart=,args='])).stdout.split('\n');
    const line = out.find((l) => new RegExp(`^\\s*\\d+\\s+0\\s+0\\s+.*\\d{4} sshd: ${username} \\[priv\\]`).test(l))!;
    const m = /^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\S+ \S+ +\d+ \S+ \d{4}) /.exec(line)!;
    return sshSessionId({ pid: Number(m[1]), ruid: Number(m[2]), euid: Number(m[3]), started: m[4] });
  };

  beforeAll(async () => {
    vault = await startTestVault({ env: { VAULT_CHECKOUT_SWEEP_MS: '3600000', VAULT_ROTATION_SWEEP_MS: '3600000' } });
    admin = await vault.admin();
    [holder, otherOperator, auditor, approver, vendor, otherVendor] = await Promise.all([
      vault.createUser(['operator']),
      vault.createUser(['operator']),
      vault.createUser(['auditor']),
      vault.createUser(['approver']),
      vault.createUser(['vendor']),
      vault.createUser(['vendor']),
    ]);
    real = type === 'postgres' ? await REAL_TARGETS.postgres({ publicConnect: true }) : await REAL_TARGETS[type]();
    targetId = expectStatus(await post(admin, '/v1/targets', { name: `t-live-${type}`, ...real.body }, true), 201).id;
    expectStatus(await post(admin, `/v1/targets/${targetId}/verify`, {}, true), 200);
  }, 90_000);
  afterEach(async () => {
    await Promise.all(sessions.map((s) => s.close()));
    sessions = [];
  });
  afterAll(async () => {
    await vault?.close();
    await real?.stop();
  }, 60_000);

  it("the holder sees the checkout's session; others' checkouts are 404; an admin ends it (MFA, audited) and it is dead; an ended checkout lists none", async () => {
    const username = name();
    const password = `Orig-${randomBytes(10).toString('hex')}`;
    await real.createAccount(username, password);
    const account = expectStatus(await post(admin, '/v1/accounts', { targetId, username, password }, true), 201);
    const checkout = expectStatus(await post(holder, '/v1/checkouts', { accountId: account.id, justification: 'e2e: live sessions' }, true), 201);
    const session = await open(username, checkout.credential.password);
    const path = `/v1/checkouts/${checkout.id}/sessions`;

    const listed = expectStatus(await get(holder, path), 200);
    expect(listed).toMatchObject({ targetId, account: username, items: [expect.objectContaining({ username, kind: type })] });
    expect(listed.items).toHaveLength(1);
    const [item] = listed.items;
    if (type !== 'mysql') expect(Math.abs(Date.parse(item.since) - Date.now())).toBeLessThan(120_000);
    if (type === 'postgres') expect(item).toMatchObject({ clientAddress: expect.stringMatching(/^127\.0\.0\.1:\d+$/), database: 'postgres', state: 'idle' });
    if (type === 'mysql') expect(item).toMatchObject({ clientAddress: expect.stringMatching(/^127\.0\.0\.1:\d+$/), state: 'Sleep' });
    if (type === 'ssh') expect(item).toMatchObject({ state: 'active', processes: expect.arrayContaining([expect.objectContaining({ command: expect.stringMatching(/^sleep 600/) })]) });
    for (const who of [auditor, approver, admin]) expect(expectStatus(await get(who, path), 200).items.map((s: { id: string }) => s.id)).toEqual([item.id]);
    expectStatus(await get(otherOperator, path), 404);
    expectStatus(await get(vendor, path), 403);

    const wide = expectStatus(await get(admin, `/v1/targets/${targetId}/sessions`), 200);
    expect(wide).toMatchObject({ targetId, account: null });
    expect(wide.items.map((s: { id: string }) => s.id)).toContain(item.id);
    expect(wide.items.map((s: { username: string }) => s.username)).not.toContain((real.body.admin as { username: string }).username);
    expectStatus(await get(holder, `/v1/targets/${targetId}/sessions`), 403);
    // terminate: admin only, with a fresh code
    expectStatus(await post(holder, `/v1/targets/${targetId}/sessions/${item.id}/terminate`, {}, true), 403);
    expect(expectStatus(await post(admin, `/v1/targets/${targetId}/sessions/${item.id}/terminate`), 401).code).toBe('MFA_REQUIRED');
    expect(await session.alive()).toBe(true);

    expect(expectStatus(await terminate(item.id), 200)).toEqual({ ended: true });
    expect(await session.alive()).toBe(false);
    expect(expectStatus(await get(holder, path), 200).items).toEqual([]);
    const events = await vault.db.query<{ actor_id: string; details: Record<string, unknown> }>("SELECT actor_id, details FROM audit_events WHERE type = 'session.terminated' AND subject_id = $1", [targetId]);
    expect(events).toEqual([{ actor_id: admin.id, details: { targetId, account: username, sessionId: item.id } }]);
    expect(expectStatus(await terminate(item.id), 404).code).toBe('SESSION_NOT_FOUND');

    // a new session, then check-in: the checkout lists none (it is no longer active)
    await open(username, checkout.credential.password);
    expect(expectStatus(await get(holder, path), 200).items).toHaveLength(1);
    expectStatus(await post(holder, `/v1/checkouts/${checkout.id}/checkin`), 200);
    expect(expectStatus(await get(holder, path), 200)).toEqual({ items: [], targetId, account: username });
  }, 90_000);

  it('a session of an account the vault does not manage is never listed nor ended (404 SESSION_NOT_FOUND, it keeps running); malformed ids are 400', async () => {
    const outsider = await unmanaged();
    const id = await sessionIdOf(outsider.username);
    const wide = expectStatus(await get(admin, `/v1/targets/${targetId}/sessions`), 200);
    expect(wide.items.map((s: { id: string }) => s.id)).not.toContain(id);
    expect(expectStatus(await terminate(id), 404).code).toBe('SESSION_NOT_FOUND');
    expect(await outsider.session.alive()).toBe(true);
    const other = { postgres: 'my-1', mysql: 'pg-1-1', ssh: 'my-1' }[type];
    for (const bad of ['abc', 'pg-0-1', 'ssh-1-XYZ', 'my-1;KILL', other]) {
      const res = await terminate(bad);
      expect({ bad, status: res.status, code: res.body.code }).toEqual({ bad, status: 400, code: 'SESSION_ID_INVALID' });
    }
    expect(await outsider.session.alive()).toBe(true);
    expect(expectStatus(await vault.http().post(`/v1/targets/not-a-uuid/sessions/${id}/terminate`).set('Authorization', admin.auth).set('X-MFA-Code', await admin.code()), 400).code).toBe('VALIDATION_FAILED');
    expect(expectStatus(await get(admin, `/v1/targets/${randomUUID()}/sessions`), 404).code).toBe('NOT_FOUND');
  }, 60_000);

  if (type !== 'ssh') {
    it("a one-time account's vendor sees its session, another vendor does not; it is in the target-wide view and ended there", async () => {
      const e = expectStatus(
        await post(holder, '/v1/ephemeral-accounts', { targetId, vendorUserId: vendor.id, ttlSeconds: 1800, justification: 'e2e: live sessions of a one-time account' }),
        201,
      );
      expectStatus(await post(approver, `/v1/ephemeral-accounts/${e.id}/approve`, { requestDigest: e.requestDigest }, true), 200);
      const path = `/v1/ephemeral-accounts/${e.id}/sessions`;
      expect(expectStatus(await get(vendor, path), 200)).toEqual({ items: [], targetId, account: null });
      const c = expectStatus(await post(vendor, `/v1/ephemeral-accounts/${e.id}/claim`, {}, true), 200);
      const session = await open(c.username, c.password);
      const listed = expectStatus(await get(vendor, path), 200);
      expect(listed).toMatchObject({ targetId, account: c.username, items: [expect.objectContaining({ username: c.username, kind: type })] });
      for (const who of [holder, auditor, approver, admin]) expect(expectStatus(await get(who, path), 200).items).toHaveLength(1);
      expectStatus(await get(otherVendor, path), 404);
      expectStatus(await get(otherOperator, path), 404);
      const wide = expectStatus(await get(admin, `/v1/targets/${targetId}/sessions`), 200);
      expect(wide.items.map((s: { id: string }) => s.id)).toContain(listed.items[0].id);
      expect(expectStatus(await terminate(listed.items[0].id), 200)).toEqual({ ended: true });
      expect(await session.alive()).toBe(false);
      expectStatus(await post(vendor, `/v1/ephemeral-accounts/${e.id}/revoke`), 200);
      expect(expectStatus(await get(vendor, path), 200).items).toEqual([]);
    }, 60_000);
  }
});

describe('live sessions when the target fails (e2e, a connector that fails on purpose)', () => {
  let vault: TestVault;
  let admin: TestUser;
  const fake = new FakeConnector('postgres');

  beforeAll(async () => {
    vault = await startTestVault();
    admin = await vault.admin();
    vault.get(ConnectorRegistry).register(fake);
  }, 60_000);
  afterAll(() => vault?.close());

  it("a target that cannot be reached answers 502 with the connector's code; nothing is audited when nothing ended", async () => {
    const targetId = await createFakeTarget(vault, 'postgres');
    const username = `app_${randomBytes(3).toString('hex')}`;
    fake.users.set(username, 'Fake-Password-1');
    const account = await vault.http().post('/v1/accounts').set('Authorization', admin.auth).set('X-MFA-Code', await admin.code()).send({ targetId, username, password: 'Fake-Password-1' });
    expect(account.status).toBe(201);
    const session = { id: 'pg-4242-1764000000000000', username, kind: 'postgres' as const, clientAddress: '10.0.0.7:50000', since: new Date().toISOString(), state: 'idle', database: 'app' };
    fake.sessions.set(username, [session]);
    expect((await vault.http().get(`/v1/targets/${targetId}/sessions`).set('Authorization', admin.auth).expect(200)).body).toEqual({ items: [session], targetId, account: null });

    fake.fail('listSessions', 'TARGET_UNREACHABLE');
    const down = await vault.http().get(`/v1/targets/${targetId}/sessions`).set('Authorization', admin.auth);
    expect({ status: down.status, code: down.body.code }).toEqual({ status: 502, code: 'TARGET_UNREACHABLE' });
    fake.fail('endSession', 'TARGET_TIMEOUT');
    const slow = await vault.http().post(`/v1/targets/${targetId}/sessions/${session.id}/terminate`).set('Authorization', admin.auth).set('X-MFA-Code', await admin.code());
    expect({ status: slow.status, code: slow.body.code }).toEqual({ status: 502, code: 'TARGET_TIMEOUT' });
    expect(await vault.db.query("SELECT 1 FROM audit_events WHERE type = 'session.terminated' AND subject_id = $1", [targetId])).toEqual([]);
    // the session id reached the connector only with the account the vault manages there
    expect(fake.ops.filter((o) => o.op === 'endSession').map((o) => o.username)).toEqual([username]);
  }, 60_000);
});

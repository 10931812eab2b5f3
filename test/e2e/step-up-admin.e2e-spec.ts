import { randomBytes } from 'node:crypto';
import { createServer, Server, Socket } from 'node:net';
import { DataSource } from 'typeorm';
import { TargetEntity } from '../../src/targets/target.entity';
import { TargetsService } from '../../src/targets/targets.service';
import { accountInput, postgresTarget, secretValue, sshTarget } from '../factories';
import { freePort } from '../support/process';
import { actingAs } from '../support/http';
import { startTestVault, TestUser, TestVault } from '../support/vault';

/**
 * Issue 12, item 3: a stolen admin token alone must not be enough to take a credential. Every admin action that
 * weakens protection or moves secrets needs the admin's own fresh TOTP code (`X-MFA-Code`), and moving a target needs
 * its admin credential typed again, so the stored one is never sent to an address the caller chose.
 */

/** A TCP listener that counts connections and closes each at once (nothing a connector would take for a server). */
async function countingListener(): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
  let n = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    n++;
    sockets.add(s);
    s.destroy();
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    port,
    connections: () => n,
    close: () => new Promise<void>((resolve) => {
      sockets.forEach((s) => s.destroy());
      server.close(() => resolve());
    }),
  };
}

describe('step-up MFA on admin actions; a target moves only with its admin credential (e2e, real PostgreSQL)', () => {
  let vault: TestVault;
  let admin: TestUser;
  const as = () => actingAs(vault, admin);

  /** Everything an admin action could change, and the audit log: equal before and after a refused request. */
  const state = async () =>
    (
      await vault.db.query<Record<string, string | number>>(
        `SELECT (SELECT md5(coalesce(string_agg(u::text, '|' ORDER BY u.id), '')) FROM users u) AS users,
                (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) FROM service_tokens t) AS "serviceTokens",
                (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) FROM targets t) AS targets,
                (SELECT md5(coalesce(string_agg(a::text, '|' ORDER BY a.id), '')) FROM accounts a) AS accounts,
                (SELECT md5(coalesce(string_agg(p::text, '|' ORDER BY p.target_id), '')) FROM ephemeral_policies p) AS policies,
                (SELECT count(*)::int FROM access_tokens WHERE revoked_at IS NULL) AS "liveTokens",
                (SELECT count(*)::int FROM audit_events) AS "auditEvents"`,
      )
    )[0];

  beforeAll(async () => {
    vault = await startTestVault({ env: { VAULT_ROTATION_SWEEP_MS: '3600000', VAULT_CHECKOUT_SWEEP_MS: '3600000', VAULT_EPHEMERAL_SWEEP_MS: '3600000' } });
    admin = await vault.admin();
  }, 60_000);
  afterAll(() => vault?.close());

  describe('a stolen admin token without a code', () => {
    let victim: TestUser;
    let targetId: string;
    let emptyTargetId: string;
    let accountId: string;
    let tokenId: string;

    beforeAll(async () => {
      victim = await vault.createUser(['operator']);
      // nothing listens on these ports: no request below reaches a target
      const closed = await freePort();
      targetId = (await as().post('/v1/targets', postgresTarget({ port: closed }), true).expect(201)).body.id;
      emptyTargetId = (await as().post('/v1/targets', postgresTarget({ port: closed }), true).expect(201)).body.id;
      accountId = (await as().post('/v1/accounts', { ...accountInput(targetId), policy: { approvalsRequired: 2 } }, true).expect(201)).body.id;
      tokenId = (await as().post('/v1/service-tokens', { name: `st-${randomBytes(3).toString('hex')}`, roles: ['scheduler'] }, true).expect(201)).body.id;
    });

    /** [label, method, path, body, status with a fresh code]: well-formed requests that do something with a code. */
    const cases = (): Array<[string, 'post' | 'put' | 'patch' | 'delete', string, object | undefined, number]> => [
      ['create a user', 'post', '/v1/users', { username: `u${randomBytes(4).toString('hex')}`, password: secretValue('pw'), roles: ['operator', 'approver'] }, 201],
      ['change a user\'s roles', 'patch', `/v1/users/${victim.id}`, { roles: ['operator', 'approver', 'admin'] }, 200],
      ['disable a user', 'patch', `/v1/users/${victim.id}`, { disabled: true }, 200],
      ['enable a user', 'patch', `/v1/users/${victim.id}`, { disabled: false }, 200],
      ['reset a user\'s MFA', 'post', `/v1/users/${victim.id}/mfa/reset`, {}, 204],
      ['create a service token', 'post', '/v1/service-tokens', { name: `st-${randomBytes(3).toString('hex')}`, roles: ['scheduler'] }, 201],
      ['revoke a service token', 'delete', `/v1/service-tokens/${tokenId}`, undefined, 204],
      ['drop an account\'s approvals to 0', 'patch', `/v1/accounts/${accountId}`, { policy: { approvalsRequired: 0 } }, 200],
      ['vault an account', 'post', '/v1/accounts', accountInput(targetId), 201],
      ['register a target', 'post', '/v1/targets', postgresTarget(), 201],
      ['move a target (with its credential)', 'patch', `/v1/targets/${targetId}`, { port: 1, admin: { username: 'postgres', password: secretValue('moved') } }, 200],
      ['rename a target', 'patch', `/v1/targets/${targetId}`, { name: `renamed-${randomBytes(3).toString('hex')}` }, 200],
      ['verify a target (its admin credential is sent)', 'post', `/v1/targets/${targetId}/verify`, {}, 502],
      ['set an ephemeral policy', 'put', `/v1/targets/${targetId}/ephemeral-policy`, { approvalsRequired: 0, maxTtlSeconds: 600 }, 200],
      ['delete an account', 'delete', `/v1/accounts/${accountId}`, undefined, 204],
      ['delete a target', 'delete', `/v1/targets/${emptyTargetId}`, undefined, 204],
    ];

    it('can do none of the admin actions that weaken protection or move secrets: 401 MFA_REQUIRED, nothing changed; with the code each works', async () => {
      const problems: string[] = [];
      for (const [label, method, path, body] of cases()) {
        const before = await state();
        const res = await (method === 'delete' ? as().delete(path) : as()[method](path, body ?? {}));
        if (res.status !== 401 || res.body.code !== 'MFA_REQUIRED') problems.push(`${label}: ${method.toUpperCase()} ${path} answered ${res.status} ${res.body.code} without a code`);
        const after = await state();
        if (JSON.stringify(after) !== JSON.stringify(before)) problems.push(`${label}: changed ${JSON.stringify(before)} → ${JSON.stringify(after)}`);
      }
      expect(problems).toEqual([]);

      // the same well-formed requests do what they say with the admin's code: the refusals above were the step-up
      for (const [label, method, path, body, status] of cases()) {
        const res = await (method === 'delete' ? as().delete(path, true) : as()[method](path, body ?? {}, true));
        expect({ label, status: res.status }).toEqual({ label, status });
      }
    });

    it('a wrong or replayed code is refused too, and changes nothing', async () => {
      const before = await state();
      const path = `/v1/accounts/${(await as().post('/v1/accounts', accountInput(targetId), true).expect(201)).body.id}`;
      const mid = await state();
      expect(mid.accounts).not.toBe(before.accounts);
      const wrong = await vault.http().patch(path).set('Authorization', admin.auth).set('X-MFA-Code', '000000').send({ policy: { approvalsRequired: 0 } });
      expect(wrong.status).toBe(401);
      const code = await admin.code();
      await vault.http().patch(path).set('Authorization', admin.auth).set('X-MFA-Code', code).send({ policy: { approvalsRequired: 3 } }).expect(200);
      const replay = await vault.http().patch(path).set('Authorization', admin.auth).set('X-MFA-Code', code).send({ policy: { approvalsRequired: 0 } });
      expect({ status: replay.status, code: replay.body.code }).toEqual({ status: 401, code: 'MFA_REPLAYED' });
      expect((await as().get(path).expect(200)).body.policy.approvalsRequired).toBe(3);
    });

    it('the attack in the issue stops at its first step: no user is created, no approvals dropped', async () => {
      const username = `thief${randomBytes(3).toString('hex')}`;
      expect((await as().post('/v1/users', { username, password: secretValue('pw'), roles: ['operator'] }).expect(401)).body.code).toBe('MFA_REQUIRED');
      expect(await vault.db.query('SELECT id FROM users WHERE username = $1', [username])).toEqual([]);
      const account = (await as().post('/v1/accounts', { ...accountInput(targetId), policy: { approvalsRequired: 2 } }, true).expect(201)).body;
      expect((await as().patch(`/v1/accounts/${account.id}`, { policy: { approvalsRequired: 0 } }).expect(401)).body.code).toBe('MFA_REQUIRED');
      expect((await as().get(`/v1/accounts/${account.id}`).expect(200)).body.policy.approvalsRequired).toBe(2);
    });
  });

  describe('moving a target', () => {
    let oldAddr: Awaited<ReturnType<typeof countingListener>>;
    let newAddr: Awaited<ReturnType<typeof countingListener>>;
    beforeAll(async () => {
      oldAddr = await countingListener();
      newAddr = await countingListener();
    });
    afterAll(async () => {
      await oldAddr?.close();
      await newAddr?.close();
    });

    const row = async (id: string) => vault.get(DataSource).getRepository(TargetEntity).findOneByOrFail({ id });
    const storedAdmin = async (id: string) => vault.get(TargetsService).adminSecret(await row(id));

    it('without its admin credential is refused (400 ADMIN_CREDENTIAL_REQUIRED), nothing changes, and the stored credential never goes to the new address', async () => {
      const password = secretValue('old-admin');
      const target = (await as().post('/v1/targets', postgresTarget({ host: '127.0.0.1', port: oldAddr.port, admin: { username: 'postgres', password } }), true).expect(201)).body;
      const before = await row(target.id);
      for (const change of [{ port: newAddr.port }, { host: 'localhost' }, { port: newAddr.port, name: `moved-${randomBytes(3).toString('hex')}` }]) {
        const res = await as().patch(`/v1/targets/${target.id}`, change, true);
        expect({ status: res.status, code: res.body.code }).toEqual({ status: 400, code: 'ADMIN_CREDENTIAL_REQUIRED' });
        expect(res.text).not.toContain(password);
      }
      expect(await row(target.id)).toEqual(before);
      expect(await storedAdmin(target.id)).toMatchObject({ password });
      // verify still goes where the target is: the old address, never the new one
      await as().post(`/v1/targets/${target.id}/verify`, {}, true);
      expect(oldAddr.connections()).toBeGreaterThan(0);
      expect(newAddr.connections()).toBe(0);
    });

    it('with the credential re-entered it moves, and only the new credential is kept for the new address', async () => {
      const oldPassword = secretValue('old-admin');
      const target = (await as().post('/v1/targets', postgresTarget({ host: '127.0.0.1', port: oldAddr.port, admin: { username: 'postgres', password: oldPassword } }), true).expect(201)).body;
      const newPassword = secretValue('new-admin');
      const res = await as().patch(`/v1/targets/${target.id}`, { port: newAddr.port, admin: { username: 'vault_admin', password: newPassword } }, true).expect(200);
      expect(res.body).toMatchObject({ port: newAddr.port, admin: { username: 'vault_admin' } });
      expect(res.text).not.toContain(newPassword);
      expect(await storedAdmin(target.id)).toEqual({ password: newPassword });
      const oldSeen = oldAddr.connections();
      const newSeen = newAddr.connections();
      await as().post(`/v1/targets/${target.id}/verify`, {}, true);
      expect(newAddr.connections()).toBeGreaterThan(newSeen);
      expect(oldAddr.connections()).toBe(oldSeen);
      const [event] = await vault.db.query<{ details: Record<string, unknown>; row: string }>(
        "SELECT details, row_to_json(e)::text AS row FROM audit_events e WHERE type = 'target.updated' AND subject_id = $1",
        [target.id],
      );
      expect(event.details).toMatchObject({ port: newAddr.port, adminSecretChanged: true });
      expect(event.row).not.toContain(newPassword);
      expect(event.row).not.toContain(oldPassword);
    });

    it('changing how its identity is checked (SSH host key pin, PostgreSQL TLS) or the MySQL account host needs the credential too; a rename does not', async () => {
      const ssh = (await as().post('/v1/targets', sshTarget({ options: { sudo: false, hostKeySha256: `SHA256:${'A'.repeat(43)}` } }), true).expect(201)).body;
      const pg = (await as().post('/v1/targets', postgresTarget({ port: oldAddr.port }), true).expect(201)).body;
      const mysql = (await as().post('/v1/targets', postgresTarget({ type: 'mysql', port: 3306, admin: { username: 'vault_admin', password: secretValue('my') }, options: { accountHost: '10.0.0.%' } }), true).expect(201)).body;
      const refused: Array<[string, object]> = [
        [ssh.id, { options: { hostKeySha256: `SHA256:${'B'.repeat(43)}` } }],
        [pg.id, { options: { tls: false } }],
        [mysql.id, { options: { accountHost: '%' } }],
      ];
      for (const [id, change] of refused) {
        const before = await row(id);
        const res = await as().patch(`/v1/targets/${id}`, change, true);
        expect({ change, status: res.status, code: res.body.code }).toEqual({ change, status: 400, code: 'ADMIN_CREDENTIAL_REQUIRED' });
        expect(await row(id)).toEqual(before);
      }
      await as().patch(`/v1/targets/${mysql.id}`, { options: { accountHost: '%' }, admin: { username: 'vault_admin', password: secretValue('my2') } }, true).expect(200);
      // not a move: name and options that say nothing about where or who the server is
      await as().patch(`/v1/targets/${pg.id}`, { name: `pg-${randomBytes(3).toString('hex')}`, options: { database: 'other' } }, true).expect(200);
      await as().patch(`/v1/targets/${ssh.id}`, { options: { sudo: true } }, true).expect(200);
    });
  });
});

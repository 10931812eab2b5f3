import { randomBytes, randomUUID } from 'node:crypto';
import { ConnectorError } from '../../src/connectors/connector.errors';
import { Connector } from '../../src/connectors/connector.interface';
import { ConnectorRegistry } from '../../src/connectors/connector.registry';
import { PostgresConnector } from '../../src/connectors/postgres/postgres.connector';
import { EphemeralProvisioner } from '../../src/ephemeral/ephemeral-provisioner.service';
import { REAL_TARGETS, RealTarget } from '../support/targets/real';
import { actingAs } from '../support/http';
import { startTestVault, TestUser, TestVault } from '../support/vault';

/**
 * One-time accounts through the HTTP API on the real PostgreSQL, with a real scram-sha-256 PostgreSQL target:
 * policy, approvals, who sees and claims what, the claim's codes, revoke, the reaper, failures and bad input. The
 * login and session proofs on all three target types are in ephemeral-targets.e2e-spec.ts, the crash matrix in
 * ephemeral-crash.e2e-spec.ts.
 */
describe('one-time accounts (e2e)', () => {
  let vault: TestVault;
  let admin: TestUser;
  let operator: TestUser;
  let approvers: TestUser[];
  let vendor: TestUser;
  let real: RealTarget;
  let targetId: string;
  let second: TestVault | undefined;
  const GROUP = `eph_ro_${randomBytes(3).toString('hex')}`;

  const as = (user: TestUser) => actingAs(vault, user);
  const request = (extra: object = {}, by = operator) =>
    as(by).post('/v1/ephemeral-accounts', { targetId, vendorUserId: vendor.id, ttlSeconds: 1800, justification: 'vendor fixes the index', ...extra });
  /** A request approved by one approver, ready to claim. */
  const approved = async (extra: object = {}) => {
    const e = (await request(extra).expect(201)).body;
    await as(approvers[0]).post(`/v1/ephemeral-accounts/${e.id}/approve`, {}, true).expect(200);
    return e.id as string;
  };
  const claim = (id: string, who = vendor) => as(who).post(`/v1/ephemeral-accounts/${id}/claim`, {}, true);
  const row = async (id: string) => (await vault.db.query<Record<string, unknown>>('SELECT status, end_reason, username, attempts, claimed_by FROM ephemeral_accounts WHERE id = $1', [id]))[0];
  const events = async (id: string) => (await vault.db.query<{ type: string; details: Record<string, unknown> }>('SELECT type, details FROM audit_events WHERE subject_id = $1 ORDER BY id', [id]));
  const provisioner = () => vault.get(EphemeralProvisioner);
  /** Whether the role exists on the target (its own pg_roles, as its admin). */
  let pgRoles: (name: string) => Promise<boolean>;

  beforeAll(async () => {
    vault = await startTestVault({ env: { VAULT_EPHEMERAL_SWEEP_MS: '3600000', VAULT_ROTATION_SWEEP_MS: '3600000', VAULT_CHECKOUT_SWEEP_MS: '3600000', VAULT_EPHEMERAL_MAX_ATTEMPTS: '2' } });
    admin = await vault.admin();
    operator = await vault.createUser(['operator']);
    approvers = [await vault.createUser(['approver']), await vault.createUser(['approver'])];
    vendor = await vault.createUser(['vendor']);
    real = await REAL_TARGETS.postgres();
    targetId = (await as(admin).post('/v1/targets', { name: 'eph-pg', ...real.body }, true).expect(201)).body.id;
    await as(admin).post(`/v1/targets/${targetId}/verify`, {}, true).expect(200);
    // a plain group role: policies are allow-lists checked against the target's catalog (no predefined pg_* roles)
    await real.adminSql!(`CREATE ROLE ${GROUP} NOLOGIN`);
    await real.adminSql!(`GRANT ${GROUP} TO ${(real.body as { admin: { username: string } }).admin.username} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE`);
    await as(admin).put(`/v1/targets/${targetId}/ephemeral-policy`, { approvalsRequired: 1, maxTtlSeconds: 3600, allowedRoles: [GROUP], allowedDatabases: ['postgres'] }, true).expect(200);
    const { Client } = await import('pg');
    const body = real.body as { host: string; port: number; admin: { username: string; password: string } };
    pgRoles = async (name) => {
      const c = new Client({ host: body.host, port: body.port, user: body.admin.username, password: body.admin.password, database: 'postgres' });
      await c.connect();
      try {
        return (await c.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [name])).rowCount === 1;
      } finally {
        await c.end();
      }
    };
  }, 60_000);
  afterAll(async () => {
    await vault?.close();
    await second?.close();
    await real?.stop();
  });

  describe('requests and approvals', () => {
    it('a request waits for approval; the vendor claims once with MFA; the account works; revoke removes it; every step audited, no password kept', async () => {
      const e = (await request({ access: { grantRoles: [GROUP], database: 'postgres' } }).expect(201)).body;
      expect(e).toMatchObject({ status: 'pending_approval', vendorId: vendor.id, requesterId: operator.id, approvalsRequired: 1, username: null, access: { grantRoles: [GROUP], database: 'postgres' } });
      expect((await claim(e.id).expect(409)).body.code).toBe('NOT_APPROVED');
      await as(approvers[0]).post(`/v1/ephemeral-accounts/${e.id}/approve`, { requestDigest: e.requestDigest }, true).expect(200);
      const res = (await claim(e.id).expect(200)).body;
      expect(res).toEqual({ id: e.id, username: expect.stringMatching(/^v[a-z0-9]{1,8}_[0-9a-f]{10}$/), password: expect.any(String), host: real.body.host, port: real.body.port, expiresAt: expect.any(String), brokeredOnly: false });
      expect(new Date(res.expiresAt).getTime() - Date.now()).toBeGreaterThan(1700_000);
      expect(await real.canLogin(res.username, res.password)).toBe(true);
      expect((await claim(e.id).expect(410)).body.code).toBe('ALREADY_CLAIMED');
      const view = (await as(vendor).get(`/v1/ephemeral-accounts/${e.id}`).expect(200)).body;
      expect(view).toMatchObject({ status: 'active', username: res.username });
      const revoked = (await as(vendor).post(`/v1/ephemeral-accounts/${e.id}/revoke`).expect(200)).body;
      expect(revoked).toMatchObject({ status: 'revoked', endReason: 'revoked', endedBy: vendor.id });
      expect(await real.canLogin(res.username, res.password)).toBe(false);
      expect(await pgRoles(res.username)).toBe(false);
      await as(vendor).post(`/v1/ephemeral-accounts/${e.id}/revoke`).expect(200); // twice: fine
      expect((await events(e.id)).map((x) => x.type)).toEqual([
        'ephemeral.requested', 'ephemeral.approved', 'ephemeral.claimed', 'ephemeral.created', 'ephemeral.revoked', 'ephemeral.removed',
      ]);
      const stored = await vault.db.query('SELECT * FROM ephemeral_accounts WHERE id = $1', [e.id]);
      const everything = JSON.stringify([stored, await events(e.id), view, revoked, (await as(admin).get('/v1/ephemeral-accounts?limit=200').expect(200)).body]);
      expect(everything).not.toContain(res.password);
    });

    it('never the requester or the vendor approves; distinct approvers; an approval is bound to the request it saw; one denial ends it', async () => {
      await as(admin).put(`/v1/targets/${targetId}/ephemeral-policy`, { approvalsRequired: 2, maxTtlSeconds: 3600 }, true).expect(200);
      try {
        const both = await vault.createUser(['operator', 'approver']);
        const e = (await request({}, both).expect(201)).body;
        expect((await as(both).post(`/v1/ephemeral-accounts/${e.id}/approve`, {}, true).expect(403)).body.code).toBe('SELF_APPROVAL');
        await as(approvers[0]).post(`/v1/ephemeral-accounts/${e.id}/approve`, {}, true).expect(200);
        expect((await as(approvers[0]).post(`/v1/ephemeral-accounts/${e.id}/approve`, {}, true).expect(409)).body.code).toBe('ALREADY_DECIDED');
        await vault.db.query("UPDATE ephemeral_accounts SET access = '{\"grantRoles\": [\"pg_write_all_data\"]}' WHERE id = $1", [e.id]);
        const after = (await as(approvers[1]).post(`/v1/ephemeral-accounts/${e.id}/approve`, {}, true).expect(200)).body;
        expect(after.status).toBe('pending_approval'); // the first approval was for another request
        const d = (await request().expect(201)).body;
        const denied = (await as(approvers[1]).post(`/v1/ephemeral-accounts/${d.id}/deny`, { comment: 'no' }, true).expect(200)).body;
        expect(denied).toMatchObject({ status: 'denied', endReason: 'denied' });
        expect((await claim(d.id).expect(409)).body.code).toBe('REQUEST_ENDED');
      } finally {
        await as(admin).put(`/v1/targets/${targetId}/ephemeral-policy`, { approvalsRequired: 1, maxTtlSeconds: 3600, allowedRoles: [GROUP], allowedDatabases: ['postgres'] }, true).expect(200);
      }
    });

    it('refuses what the target policy does not allow (403 ACCESS_NOT_ALLOWED), a TTL above its max, and a non-vendor; nothing is stored', async () => {
      const before = (await vault.db.query<{ n: number }>('SELECT count(*)::int AS n FROM ephemeral_accounts'))[0].n;
      const refused = await request({ access: { grantRoles: ['pg_write_all_data'] } }).expect(403);
      expect(refused.body).toMatchObject({ code: 'ACCESS_NOT_ALLOWED', message: expect.stringContaining('pg_write_all_data') });
      expect((await request({ access: { database: 'template1' } }).expect(403)).body.code).toBe('ACCESS_NOT_ALLOWED');
      expect((await request({ access: { groups: ['sudo'] } }).expect(400)).body.code).toBe('VALIDATION_FAILED'); // not for postgres
      expect((await request({ ttlSeconds: 7200 }).expect(400)).body).toMatchObject({ code: 'TTL_EXCEEDS_POLICY', maxTtlSeconds: 3600 });
      expect((await request({ vendorUserId: operator.id }).expect(400)).body.code).toBe('VALIDATION_FAILED');
      expect((await request({ targetId: randomUUID() }).expect(400)).body.code).toBe('VALIDATION_FAILED');
      expect((await vault.db.query<{ n: number }>('SELECT count(*)::int AS n FROM ephemeral_accounts'))[0].n).toBe(before);
    });

    it('a vendor sees and claims only their own; requesters see what they asked for', async () => {
      const id = await approved();
      const other = await vault.createUser(['vendor']);
      expect((await as(other).get(`/v1/ephemeral-accounts/${id}`).expect(404)).body.code).toBe('NOT_FOUND');
      expect((await claim(id, other).expect(404)).body.code).toBe('NOT_FOUND');
      expect((await as(other).get('/v1/ephemeral-accounts?limit=200').expect(200)).body.items).toEqual([]);
      const mine = (await as(vendor).get('/v1/ephemeral-accounts?limit=200').expect(200)).body.items.map((e: { id: string }) => e.id);
      expect(mine).toContain(id);
      const stranger = await vault.createUser(['operator']);
      expect((await as(stranger).get(`/v1/ephemeral-accounts/${id}`).expect(404)).body.code).toBe('NOT_FOUND');
      expect((await as(stranger).post(`/v1/ephemeral-accounts/${id}/revoke`).expect(404)).body.code).toBe('NOT_FOUND');
      await as(operator).post(`/v1/ephemeral-accounts/${id}/revoke`).expect(200);
    });

    it('an unclaimed request lapses (410 EXPIRED); revoking before the claim touches no target', async () => {
      const id = await approved();
      await vault.db.query("UPDATE ephemeral_accounts SET request_deadline = now() - interval '1 second' WHERE id = $1", [id]);
      expect((await claim(id).expect(410)).body.code).toBe('EXPIRED');
      expect((await provisioner().reap()).lapsed).toBeGreaterThanOrEqual(1);
      expect(await row(id)).toMatchObject({ status: 'expired', end_reason: 'request_timeout', username: null });
      const early = await approved();
      expect((await as(operator).post(`/v1/ephemeral-accounts/${early}/revoke`).expect(200)).body).toMatchObject({ status: 'revoked', username: null });
      expect((await claim(early).expect(409)).body.code).toBe('REQUEST_ENDED');
    });
  });

  describe('the reaper', () => {
    it('removes expired accounts once, even with two instances reaping together', async () => {
      // closed in afterAll, after the first: passport keeps strategies process-wide by name (see checkouts.e2e-spec.ts)
      second = await startTestVault({ db: vault.db, masterKey: vault.masterKey, env: { VAULT_EPHEMERAL_SWEEP_MS: '3600000', VAULT_ROTATION_SWEEP_MS: '3600000', VAULT_CHECKOUT_SWEEP_MS: '3600000' } });
      const claimed: Array<{ id: string; username: string }> = [];
      for (let i = 0; i < 4; i++) {
        const id = await approved();
        claimed.push({ id, username: (await claim(id).expect(200)).body.username });
      }
      await vault.db.query("UPDATE ephemeral_accounts SET expires_at = now() - interval '1 second' WHERE id = ANY($1)", [claimed.map((c) => c.id)]);
      await Promise.all([provisioner().reap(), second.get(EphemeralProvisioner).reap(), provisioner().reap()]);
      for (const c of claimed) {
        expect(await row(c.id)).toMatchObject({ status: 'expired', end_reason: 'expired' });
        expect(await pgRoles(c.username)).toBe(false);
        const types = (await events(c.id)).map((e) => e.type);
        expect(types.filter((t) => t === 'ephemeral.expired')).toHaveLength(1);
        expect(types.filter((t) => t === 'ephemeral.removed')).toHaveLength(1);
      }
    });

    it('removes the live account of a vendor who was disabled', async () => {
      const leaving = await vault.createUser(['vendor']);
      const e = (await request({ vendorUserId: leaving.id }).expect(201)).body;
      await as(approvers[0]).post(`/v1/ephemeral-accounts/${e.id}/approve`, {}, true).expect(200);
      const { username } = (await claim(e.id, leaving).expect(200)).body;
      await as(admin).patch(`/v1/users/${leaving.id}`, { disabled: true }, true).expect(200);
      await provisioner().reap();
      expect(await row(e.id)).toMatchObject({ status: 'revoked', end_reason: 'revoked' });
      expect(await pgRoles(username)).toBe(false);
      expect((await events(e.id)).find((x) => x.type === 'ephemeral.revoked')?.details).toMatchObject({ because: 'vendor_disabled_or_not_vendor' });
    });

    it('removes an account whose intent never completed (a claimant that died), and reports it reaped', async () => {
      const id = await approved();
      // a dead claimant: intent committed, account created on the target, never committed as active
      const username = `vdead_${randomBytes(5).toString('hex')}`;
      await vault.db.query(
        "UPDATE ephemeral_accounts SET status = 'creating', username = $2, claimed_at = now(), expires_at = now() + interval '1 hour', claimed_by = 'dead', claimed_until = now() - interval '1 second' WHERE id = $1",
        [id, username],
      );
      await real.createAccount(username, 'Dead-Claimant-1');
      expect(await pgRoles(username)).toBe(true);
      await provisioner().reap();
      expect(await row(id)).toMatchObject({ status: 'revoked', end_reason: 'reaped' });
      expect(await pgRoles(username)).toBe(false);
      expect((await events(id)).map((e) => e.type)).toEqual(expect.arrayContaining(['ephemeral.reaped', 'ephemeral.removed']));
    });

    it('retries a removal that fails with backoff, then marks it needs_attention; an admin revoke retries it', async () => {
      const id = await approved();
      const { username } = (await claim(id).expect(200)).body;
      const failing = failingConnector('deleteUser', 2);
      vault.get(ConnectorRegistry).register(failing);
      try {
        const res = (await as(vendor).post(`/v1/ephemeral-accounts/${id}/revoke`).expect(200)).body;
        expect(res).toMatchObject({ status: 'revoking', removalAttempts: 1, lastError: 'TARGET_UNREACHABLE' });
        await vault.db.query("UPDATE ephemeral_accounts SET claimed_until = now() - interval '1 second' WHERE id = $1", [id]);
        await provisioner().reap();
        expect(await row(id)).toMatchObject({ status: 'needs_attention', attempts: 2 });
        expect(await pgRoles(username)).toBe(true);
        const metrics = (await vault.http().get('/metrics').expect(200)).text;
        expect(metrics).toMatch(/^vault_ephemeral_accounts\{status="needs_attention"\} [1-9]/m);
        expect(metrics).not.toContain(username);
      } finally {
        vault.get(ConnectorRegistry).register(new PostgresConnector());
      }
      const retried = (await as(admin).post(`/v1/ephemeral-accounts/${id}/revoke`).expect(200)).body;
      expect(retried).toMatchObject({ status: 'revoked' });
      expect(await pgRoles(username)).toBe(false);
    });

    it('a creation that fails (or times out: it may still land) goes to the reaper, which removes the account after the claim; no second claim', async () => {
      const id = await approved();
      // the target creates the account but the answer is lost, as with a timeout
      const realConnector = new PostgresConnector();
      const lateCreate = new Proxy(realConnector, {
        get: (t, prop, receiver) => {
          if (prop === 'newUser') {
            return async (...args: Parameters<PostgresConnector['newUser']>) => {
              await realConnector.newUser(...args);
              throw new ConnectorError('TARGET_TIMEOUT', 'injected: no answer in time');
            };
          }
          const v = Reflect.get(t, prop, receiver) as unknown;
          return typeof v === 'function' ? v.bind(t) : v;
        },
      });
      vault.get(ConnectorRegistry).register(lateCreate);
      try {
        expect((await claim(id).expect(502)).body.code).toBe('TARGET_TIMEOUT');
      } finally {
        vault.get(ConnectorRegistry).register(new PostgresConnector());
      }
      const { username } = (await row(id)) as { username: string };
      expect(await row(id)).toMatchObject({ status: 'revoking', end_reason: 'create_failed' });
      expect(await pgRoles(username)).toBe(true);
      expect((await claim(id).expect(410)).body.code).toBe('ALREADY_CLAIMED');
      await provisioner().reap();
      expect(await pgRoles(username)).toBe(true); // not before this claim lapsed: a late creation would land after
      await vault.db.query("UPDATE ephemeral_accounts SET claimed_until = now() - interval '1 second' WHERE id = $1", [id]);
      await provisioner().reap();
      expect(await row(id)).toMatchObject({ status: 'revoked', end_reason: 'create_failed' });
      expect(await pgRoles(username)).toBe(false);
      expect((await events(id)).map((e) => e.type)).toEqual(expect.arrayContaining(['ephemeral.create_failed', 'ephemeral.removed']));
    });

    it('a claimant that lost its claim before creating does not create; one that lost it after creating hands the account back to the reaper', async () => {
      const id = await approved();
      // the claim lapses before the target call (a long pause): the reaper may own the row by now
      const realConnector = new PostgresConnector();
      let created: string | undefined;
      const slow = new Proxy(realConnector, {
        get: (t, prop, receiver) => {
          if (prop === 'newUser') {
            return async (...args: Parameters<PostgresConnector['newUser']>) => {
              // the reaper runs while the target works, "removes" nothing and closes the row
              await vault.db.query("UPDATE ephemeral_accounts SET claimed_until = now() - interval '1 second' WHERE id = $1", [id]);
              await provisioner().reap();
              const res = await realConnector.newUser(...args);
              created = args[1].username;
              return res;
            };
          }
          const v = Reflect.get(t, prop, receiver) as unknown;
          return typeof v === 'function' ? v.bind(t) : v;
        },
      });
      vault.get(ConnectorRegistry).register(slow);
      try {
        expect((await claim(id).expect(410)).body.code).toBe('REVOKED');
      } finally {
        vault.get(ConnectorRegistry).register(new PostgresConnector());
      }
      expect(await pgRoles(created!)).toBe(true);
      expect(await row(id)).toMatchObject({ status: 'revoking' });
      await provisioner().reap();
      expect(await pgRoles(created!)).toBe(false);
      expect(await row(id)).toMatchObject({ status: 'revoked', end_reason: 'reaped' });
      expect((await events(id)).map((e) => e.type)).toContain('ephemeral.reopened');
    });
  });

  describe('bad input', () => {
    it.each([
      ['an unknown field', { extra: 1 }],
      ['a TTL under a minute', { ttlSeconds: 5 }],
      ['a TTL as a string', { ttlSeconds: '600' }],
      ['a vendorUserId that is not a UUID', { vendorUserId: "1' OR '1'='1" }],
      ['a hostile role name', { access: { grantRoles: ['"; DROP ROLE postgres; --'] } }],
      ['a hostile database name', { access: { database: "postgres'; --" } }],
      ['access as an array', { access: [] }],
      ['no justification', { justification: undefined }],
    ])('refuses %s with 400 and stores nothing', async (_label, extra) => {
      const before = (await vault.db.query<{ n: number }>('SELECT count(*)::int AS n FROM ephemeral_accounts'))[0].n;
      const res = await request(extra);
      expect(res.status).toBe(400);
      expect(res.body.code).toBe('VALIDATION_FAILED');
      expect((await vault.db.query<{ n: number }>('SELECT count(*)::int AS n FROM ephemeral_accounts'))[0].n).toBe(before);
    });

    it('refuses a policy that would let a vendor make access that outlives the account', async () => {
      for (const policy of [
        { allowedGroups: ['sudo'] },
        { allowedRoles: ['pg_execute_server_program'] },
        { allowedRoles: ['pg_read_all_data'] },
        { allowedGrants: [{ privileges: ['INSERT'], on: '*.*' }] },
        { allowedGrants: [{ privileges: ['INSERT'], on: 'mysql.user' }] },
      ]) {
        const res = await as(admin).put(`/v1/targets/${targetId}/ephemeral-policy`, { approvalsRequired: 1, maxTtlSeconds: 600, ...policy }, true).expect(400);
        expect(res.body).toMatchObject({ code: 'POLICY_NOT_ALLOWED', message: expect.stringContaining('may not allow'), refused: [expect.any(String)] });
      }
      // ALL is not on the privilege allow-list at all
      const all = await as(admin).put(`/v1/targets/${targetId}/ephemeral-policy`, { approvalsRequired: 1, maxTtlSeconds: 600, allowedGrants: [{ privileges: ['ALL'], on: 'shop.*' }] }, true).expect(400);
      expect(all.body.code).toBe('VALIDATION_FAILED');
      expect((await as(admin).get(`/v1/targets/${targetId}/ephemeral-policy`).expect(200)).body).toMatchObject({ allowedRoles: [GROUP] });
    });

    it('a target with live one-time accounts cannot be moved or deleted (their removal would go elsewhere)', async () => {
      const id = await approved();
      await claim(id).expect(200);
      expect((await as(admin).patch(`/v1/targets/${targetId}`, { port: 1, admin: real.body.admin }, true).expect(409)).body.code).toBe('TARGET_IN_USE');
      expect((await as(admin).delete(`/v1/targets/${targetId}`, true).expect(409)).body.code).toBe('TARGET_IN_USE');
      await as(admin).patch(`/v1/targets/${targetId}`, { name: 'eph-pg-renamed' }, true).expect(200); // not a move
      await as(vendor).post(`/v1/ephemeral-accounts/${id}/revoke`).expect(200);
    });

    it('refuses a bad policy and a malformed id', async () => {
      expect((await as(admin).put(`/v1/targets/${targetId}/ephemeral-policy`, { approvalsRequired: -1, maxTtlSeconds: 60 }, true).expect(400)).body.code).toBe('VALIDATION_FAILED');
      expect((await as(admin).put(`/v1/targets/${targetId}/ephemeral-policy`, { approvalsRequired: 1, maxTtlSeconds: 600, allowedGrants: [{ privileges: ['SUPER'], on: '*.*' }] }, true).expect(400)).body.code).toBe('VALIDATION_FAILED');
      expect((await as(admin).put(`/v1/targets/${randomUUID()}/ephemeral-policy`, { approvalsRequired: 1, maxTtlSeconds: 600 }, true).expect(404)).body.code).toBe('NOT_FOUND');
      expect((await as(vendor).get('/v1/ephemeral-accounts/nope').expect(400)).body.code).toBe('VALIDATION_FAILED');
    });
  });

  /** The real PostgreSQL connector, failing one call `times` times (a target that fails on purpose). */
  function failingConnector(call: 'newUser' | 'deleteUser', times: number): Connector {
    const realConnector = new PostgresConnector();
    let failures = 0;
    return new Proxy(realConnector, {
      get: (t, prop, receiver) => {
        if (prop === call && failures < times) {
          return async () => {
            failures++;
            throw new ConnectorError('TARGET_UNREACHABLE', 'injected failure');
          };
        }
        const v = Reflect.get(t, prop, receiver) as unknown;
        return typeof v === 'function' ? v.bind(t) : v;
      },
    });
  }
});

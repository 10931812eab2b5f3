import { randomBytes } from 'node:crypto';
import { REAL_TARGETS, RealTarget, RealTargetType } from '../support/targets/real';
import { run, runRaw } from '../support/targets/run';
import { actingAs } from '../support/http';
import { startTestVault, TestUser, TestVault } from '../support/vault';

/**
 * Issue 11, the vault's side of target safety, through the HTTP API against real targets with least-privilege admins:
 * SSH host keys are pinned before anything is sent (verify answers the presented key; the admin confirms it), the
 * target's own administrator is never a vaulted account, ephemeral policies are allow-lists checked against the
 * target's catalog when set and again at claim, and a claim obeys the policy in force, not the one approved under.
 * The connector-level proofs (sessions, impostors, sudo, objects left behind) are in test/connectors/*-safety.
 */
describe('target safety (e2e)', () => {
  let vault: TestVault;
  let admin: TestUser;
  let operator: TestUser;
  let approvers: TestUser[];
  let vendor: TestUser;
  const reals: Partial<Record<RealTargetType, RealTarget>> = {};
  const ids: Partial<Record<RealTargetType, string>> = {};
  const tag = () => randomBytes(3).toString('hex');

  const as = (user: TestUser) => actingAs(vault, user);
  const targetOf = async (type: RealTargetType) => {
    if (!ids[type]) {
      const real = (reals[type] = await REAL_TARGETS[type]());
      ids[type] = (await as(admin).post('/v1/targets', { name: `safety-${type}-${tag()}`, ...real.body }, true).expect(201)).body.id;
    }
    return { real: reals[type]!, id: ids[type]! };
  };
  const setPolicy = (id: string, policy: object) => as(admin).put(`/v1/targets/${id}/ephemeral-policy`, { approvalsRequired: 1, maxTtlSeconds: 3600, ...policy }, true);
  const request = (targetId: string, extra: object = {}) =>
    as(operator).post('/v1/ephemeral-accounts', { targetId, vendorUserId: vendor.id, ttlSeconds: 1800, justification: 'vendor fixes the index', ...extra });
  const approve = (id: string, by = approvers[0]) => as(by).post(`/v1/ephemeral-accounts/${id}/approve`, {}, true);
  const claim = (id: string) => as(vendor).post(`/v1/ephemeral-accounts/${id}/claim`, {}, true);

  beforeAll(async () => {
    vault = await startTestVault({ env: { VAULT_EPHEMERAL_SWEEP_MS: '3600000', VAULT_ROTATION_SWEEP_MS: '3600000', VAULT_CHECKOUT_SWEEP_MS: '3600000' } });
    admin = await vault.admin();
    operator = await vault.createUser(['operator']);
    approvers = [await vault.createUser(['approver']), await vault.createUser(['approver'])];
    vendor = await vault.createUser(['vendor']);
  }, 60_000);
  afterAll(async () => {
    await vault?.close();
    for (const r of Object.values(reals)) await r?.stop();
  });

  describe('SSH host keys are pinned before anything is sent', () => {
    let real: RealTarget;
    let id: string;
    let pin: string;
    beforeAll(async () => {
      real = (reals.ssh = reals.ssh ?? (await REAL_TARGETS.ssh()));
      const body = real.body as { options: { hostKeySha256: string } };
      pin = body.options.hostKeySha256;
      const { hostKeySha256: _dropped, ...options } = body.options;
      id = (await as(admin).post('/v1/targets', { ...real.body, name: `unpinned-${tag()}`, options }, true).expect(201)).body.id;
    }, 60_000);

    it('verify of an unpinned target answers the presented key and logs in to nothing; onboarding is refused until it is pinned', async () => {
      const res = (await as(admin).post(`/v1/targets/${id}/verify`, {}, true).expect(409)).body;
      expect(res).toMatchObject({ code: 'TARGET_HOST_KEY_UNPINNED', presentedHostKeySha256: pin });
      expect(res.message).toContain(pin);
      const account = `vt_${tag()}`;
      const initial = `initial-${tag()}-Aa1!`;
      await real.createAccount(account, initial);
      const refused = (await as(admin).post('/v1/accounts', { targetId: id, username: account }, true).expect(409)).body;
      expect(refused.code).toBe('TARGET_HOST_KEY_UNPINNED');
      expect(await real.canLogin(account, initial)).toBe(true); // nothing was changed on the target
      expect((await as(admin).get(`/v1/accounts?targetId=${id}`).expect(200)).body.items).toEqual([]);
      await real.dropAccount(account);
    });

    it('a key that is not the presented one is refused and nothing is pinned; the presented one is pinned and verify reports the capabilities', async () => {
      const wrong = (await as(admin).post(`/v1/targets/${id}/verify`, { hostKeySha256: `SHA256:${'A'.repeat(43)}` }, true).expect(502)).body;
      expect(wrong.code).toBe('TARGET_HOST_KEY_MISMATCH');
      expect((await as(admin).get(`/v1/targets/${id}`).expect(200)).body.options.hostKeySha256).toBeUndefined();
      const ok = (await as(admin).post(`/v1/targets/${id}/verify`, { hostKeySha256: `SHA256:${pin}` }, true).expect(200)).body;
      expect(ok).toMatchObject({ ok: true, hostKeySha256: pin, missing: [] });
      expect(ok.privilege).toMatch(/^(root|sudo-nopasswd|sudo-password)$/);
      expect(ok.capabilities.length).toBeGreaterThan(0);
      expect(ok.capabilities.every((c: { ok: boolean }) => c.ok)).toBe(true);
      expect((await as(admin).get(`/v1/targets/${id}`).expect(200)).body.options.hostKeySha256).toBe(pin);
      const audit = await vault.db.query<{ details: Record<string, unknown> }>("SELECT details FROM audit_events WHERE type = 'target.verified' AND subject_id = $1 AND outcome = 'success'", [id]);
      expect(audit.map((a) => a.details.pinnedHostKey)).toEqual([pin]);
      // pinned: another key given later is refused, the pin stays
      expect((await as(admin).post(`/v1/targets/${id}/verify`, { hostKeySha256: 'B'.repeat(43) }, true).expect(502)).body.code).toBe('TARGET_HOST_KEY_MISMATCH');
    });
  });

  describe('TLS settings', () => {
    it('tlsCa takes certificates only (a pasted private key is refused: tlsCa is public); a CA or pin with TLS off is refused', async () => {
      const { real } = await targetOf('mysql');
      const ca = (real.body as { options: { tlsCa: string } }).options.tlsCa;
      const { privateKey } = (await import('node:crypto')).generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
      const base = { ...real.body, name: `tls-${tag()}` };
      for (const options of [{ tlsCa: `${ca}\n${keyPem}` }, { tlsCa: keyPem }, { tlsCa: `${ca}\ntrailing words` }]) {
        const res = (await as(admin).post('/v1/targets', { ...base, options }, true).expect(400)).body;
        expect(res.code).toBe('VALIDATION_FAILED');
        expect(JSON.stringify(res)).not.toContain('PRIVATE KEY');
      }
      const pg = { ...base, type: 'postgres', port: 5432, options: { tls: false, tlsCertSha256: 'AB'.repeat(32) } };
      expect((await as(admin).post('/v1/targets', pg, true).expect(400)).body.code).toBe('VALIDATION_FAILED');
      expect((await as(admin).post('/v1/targets', { ...base, options: { tls: false } }, true).expect(400)).body.code).toBe('VALIDATION_FAILED'); // MySQL: always TLS
      const made = (await as(admin).post('/v1/targets', { ...base, options: { tlsCa: `\n${ca}\n\n`, tlsCertSha256: 'ab'.repeat(32) } }, true).expect(201)).body;
      expect(made.options.tlsCa.trim()).toBe(ca.trim());
      expect(made.options.tlsCertSha256).toBe(Array(32).fill('AB').join(':'));
      await vault.db.query('DELETE FROM targets WHERE id = $1', [made.id]);
    });
  });

  describe("the target's own administrator is never a vaulted account", () => {
    it.each(['postgres', 'mysql', 'ssh'] as const)('%s: by name (409 ACCOUNT_IS_TARGET_ADMIN), and a vaulted account cannot become the admin', async (type) => {
      const { real, id } = await targetOf(type);
      const adminName = (real.body as { admin: { username: string } }).admin.username;
      expect((await as(admin).post('/v1/accounts', { targetId: id, username: adminName, password: `pw-${tag()}` }, true).expect(409)).body.code).toBe('ACCOUNT_IS_TARGET_ADMIN');
      expect((await as(admin).post('/v1/accounts', { targetId: id, username: adminName }, true).expect(409)).body.code).toBe('ACCOUNT_IS_TARGET_ADMIN');
      const vaulted = `vt_${tag()}`;
      const pw = `pw-${tag()}-Aa1!`;
      await real.createAccount(vaulted, pw);
      await as(admin).post('/v1/accounts', { targetId: id, username: vaulted, password: pw }, true).expect(201);
      const body = real.body as { admin: Record<string, unknown> };
      const moved = await as(admin).patch(`/v1/targets/${id}`, { admin: { ...body.admin, username: vaulted } }, true).expect(409);
      expect(moved.body.code).toBe('ACCOUNT_IS_TARGET_ADMIN');
      expect(await real.canLogin(vaulted, pw)).toBe(true);
    });

    it('ssh: by identity — another name for the admin\'s uid is refused too', async () => {
      const { real, id } = await targetOf('ssh');
      const adminName = (real.body as { admin: { username: string } }).admin.username;
      const uid = (await run('id', ['-u', '--', adminName])).stdout.trim();
      const alias = `vt_alias_${tag()}`;
      await run('useradd', ['-o', '-u', uid, '-M', '-s', '/usr/sbin/nologin', alias]);
      try {
        expect((await as(admin).post('/v1/accounts', { targetId: id, username: alias, password: `pw-${tag()}` }, true).expect(409)).body.code).toBe('ACCOUNT_IS_TARGET_ADMIN');
      } finally {
        await runRaw('userdel', [alias]);
      }
    });
  });

  describe('ephemeral policies are allow-lists checked against the target', () => {
    it('postgres: privileged, predefined, missing and admin roles are refused at PUT; a plain group role is allowed', async () => {
      const { real, id } = await targetOf('postgres');
      const adminName = (real.body as { admin: { username: string } }).admin.username;
      const t = tag();
      await real.adminSql!(`CREATE ROLE vt_ops_${t} NOLOGIN CREATEDB`);
      await real.adminSql!(`CREATE ROLE vt_sneaky_${t} NOLOGIN`);
      await real.adminSql!(`GRANT vt_ops_${t} TO vt_sneaky_${t}`);
      await real.adminSql!(`CREATE ROLE vt_ro_${t} NOLOGIN`);
      for (const role of [adminName, `vt_ops_${t}`, `vt_sneaky_${t}`, 'pg_read_all_data', `vt_missing_${t}`]) {
        const res = (await setPolicy(id, { allowedRoles: [role] }).expect(400)).body;
        expect(res.code).toBe('POLICY_NOT_ALLOWED');
        expect(res.refused.join('\n')).toContain(role);
      }
      expect((await setPolicy(id, { allowedDatabases: [`nodb_${t}`] }).expect(400)).body.code).toBe('POLICY_NOT_ALLOWED');
      // PostgreSQL 16+: the admin grants only roles it holds with ADMIN OPTION (the README's set-up for a group role)
      expect((await setPolicy(id, { allowedRoles: [`vt_ro_${t}`] }).expect(400)).body.refused[0]).toContain('ADMIN OPTION');
      await real.adminSql!(`GRANT vt_ro_${t} TO ${adminName} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE`);
      await setPolicy(id, { allowedRoles: [`vt_ro_${t}`], allowedDatabases: ['postgres'] }).expect(200);
    });

    it('mysql: global and system-schema grants, privileges off the allow-list and missing databases are refused', async () => {
      const { real, id } = await targetOf('mysql');
      const t = tag();
      await real.adminSql!(`CREATE DATABASE vt_shop_${t}`);
      try {
        const refusedWith = async (grant: object, code: string) => expect((await setPolicy(id, { allowedGrants: [grant] }).expect(400)).body.code).toBe(code);
        await refusedWith({ privileges: ['SELECT', 'INSERT'], on: '*.*' }, 'POLICY_NOT_ALLOWED');
        await refusedWith({ privileges: ['SELECT'], on: 'mysql.*' }, 'POLICY_NOT_ALLOWED');
        await refusedWith({ privileges: ['SELECT'], on: 'MySQL.user' }, 'POLICY_NOT_ALLOWED');
        await refusedWith({ privileges: ['SELECT'], on: `vt_nodb_${t}.*` }, 'POLICY_NOT_ALLOWED');
        await refusedWith({ privileges: ['ALL'], on: `vt_shop_${t}.*` }, 'VALIDATION_FAILED');
        await refusedWith({ privileges: ['CREATE ROUTINE'], on: `vt_shop_${t}.*` }, 'VALIDATION_FAILED');
        await setPolicy(id, { allowedGrants: [{ privileges: ['SELECT', 'INSERT'], on: `vt_shop_${t}.*` }] }).expect(200);
      } finally {
        await real.adminSql!(`DROP DATABASE IF EXISTS vt_shop_${t}`);
      }
    });

    it('ssh: root-equivalent, system and missing groups are refused', async () => {
      const { id } = await targetOf('ssh');
      for (const group of ['sudo', 'adm', 'daemon', `vt_nogroup_${tag()}`]) {
        const res = (await setPolicy(id, { allowedGroups: [group] }).expect(400)).body;
        expect(res.code).toBe('POLICY_NOT_ALLOWED');
      }
    });
  });

  describe('a claim obeys the policy in force and the catalog as it is now', () => {
    let real: RealTarget;
    let id: string;
    let role: string;
    const prefix = () => `v${vendor.username.toLowerCase().replace(/[^a-z0-9]/g, '').slice(0, 8) || 'vendor'}_`;
    beforeAll(async () => {
      ({ real, id } = await targetOf('postgres'));
      role = `vt_grp_${tag()}`;
      await real.adminSql!(`CREATE ROLE ${role} NOLOGIN`);
      await real.adminSql!(`GRANT ${role} TO ${(real.body as { admin: { username: string } }).admin.username} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE`);
    });
    beforeEach(async () => {
      await setPolicy(id, { approvalsRequired: 1, maxTtlSeconds: 3600, allowedRoles: [role], allowedDatabases: ['postgres'] }).expect(200);
    });
    afterEach(async () => {
      for (const name of await real.accountsStartingWith(prefix())) await real.dropAccount(name);
    });

    it('a role removed from the policy after the approval: the claim is refused (403) and nothing is created', async () => {
      const e = (await request(id, { access: { grantRoles: [role], database: 'postgres' } }).expect(201)).body;
      await approve(e.id).expect(200);
      await setPolicy(id, { approvalsRequired: 1, maxTtlSeconds: 3600, allowedDatabases: ['postgres'] }).expect(200);
      expect((await claim(e.id).expect(403)).body.code).toBe('ACCESS_NOT_ALLOWED');
      expect(await real.accountsStartingWith(prefix())).toEqual([]);
      expect((await as(vendor).get(`/v1/ephemeral-accounts/${e.id}`).expect(200)).body.status).toBe('approved');
    });

    it('a TTL cut after the approval: the account gets the new maximum', async () => {
      const e = (await request(id, { ttlSeconds: 3600 }).expect(201)).body;
      await approve(e.id).expect(200);
      await setPolicy(id, { approvalsRequired: 1, maxTtlSeconds: 600 }).expect(200);
      const res = (await claim(e.id).expect(200)).body;
      // (the test vault's clock is its own: compare with the claim time it recorded)
      const [{ lifetime }] = await vault.db.query<{ lifetime: number }>('SELECT extract(epoch FROM expires_at - claimed_at)::int AS lifetime FROM ephemeral_accounts WHERE id = $1', [e.id]);
      expect(lifetime).toBe(600);
      expect(new Date(res.expiresAt).toISOString()).toBe(res.expiresAt);
      await as(vendor).post(`/v1/ephemeral-accounts/${e.id}/revoke`).expect(200);
    });

    it('more approvals asked after the approval: back to pending (409 NOT_APPROVED) until they are given', async () => {
      const e = (await request(id).expect(201)).body;
      await approve(e.id).expect(200);
      await setPolicy(id, { approvalsRequired: 2, maxTtlSeconds: 3600 }).expect(200);
      expect((await claim(e.id).expect(409)).body.code).toBe('NOT_APPROVED');
      expect(await real.accountsStartingWith(prefix())).toEqual([]);
      const pending = (await as(vendor).get(`/v1/ephemeral-accounts/${e.id}`).expect(200)).body;
      expect(pending).toMatchObject({ status: 'pending_approval', approvalsRequired: 2 });
      await approve(e.id, approvers[1]).expect(200);
      const res = (await claim(e.id).expect(200)).body;
      expect(await real.canLogin(res.username, res.password)).toBe(true);
      await as(vendor).post(`/v1/ephemeral-accounts/${e.id}/revoke`).expect(200);
    });

    it('a role made privileged on the target after the policy was set: the claim is refused (403) and nothing is created', async () => {
      const e = (await request(id, { access: { grantRoles: [role], database: 'postgres' } }).expect(201)).body;
      await approve(e.id).expect(200);
      const t = tag();
      await real.adminSql!(`CREATE ROLE vt_creator_${t} NOLOGIN CREATEROLE`);
      await real.adminSql!(`GRANT vt_creator_${t} TO ${role}`);
      try {
        const res = (await claim(e.id).expect(403)).body;
        expect(res.code).toBe('ACCESS_NOT_ALLOWED');
        expect(res.message).toContain(role);
        expect(await real.accountsStartingWith(prefix())).toEqual([]);
      } finally {
        await real.adminSql!(`REVOKE vt_creator_${t} FROM ${role}`);
      }
    });
  });
});

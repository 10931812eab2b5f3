import { randomBytes } from 'node:crypto';
import { APP_CONFIG, AppConfig, loadConfig } from '../../src/config/config';
import { actionDigest } from '../../src/identity/webauthn/action-digest';
import { actingAs } from '../support/http';
import { SoftAuthenticator } from '../support/soft-authenticator';
import { totpAt } from '../support/totp';
import { REAL_TARGETS, RealTarget } from '../support/targets/real';
import { startTestVault, TestUser, TestVault } from '../support/vault';

/**
 * Security keys and passkeys (WebAuthn) as a second factor, through the HTTP API on the real PostgreSQL with a
 * software authenticator that signs for real (test/support/soft-authenticator.ts): registration (first factor or
 * with a step-up), sign-in with a key, step-up by `X-MFA-Assertion` for checkout, reveal and approve, every way an
 * assertion must be refused (another challenge's signature, a replay, another action, expired, a cloned key), the
 * policies that refuse a TOTP step-up, admin recovery, and one assertion raced by 20 requests.
 */
describe('WebAuthn second factor (e2e, real PostgreSQL)', () => {
  let vault: TestVault;
  let admin: TestUser;
  let approver: TestUser;
  let real: RealTarget;
  let targetId: string;

  const as = (user: TestUser) => actingAs(vault, user);
  const http = () => vault.http();
  const resetThrottle = () => vault.db.query('DELETE FROM auth_throttle');
  const auditOf = (type: string, subjectId: string) =>
    vault.db.query<{ details: Record<string, unknown>; outcome: string }>('SELECT details, outcome FROM audit_events WHERE type = $1 AND subject_id = $2 ORDER BY id', [type, subjectId]);

  /** A role on the target with a known password, registered in the vault with this policy. */
  const newAccount = async (policy: object = {}) => {
    const username = `wa_${randomBytes(4).toString('hex')}`;
    const password = `Orig-${randomBytes(10).toString('hex')}`;
    await real.createAccount(username, password);
    return (await as(admin).post('/v1/accounts', { targetId, username, password, policy }, true).expect(201)).body.id as string;
  };

  /** Registers `key` for the user behind `auth` (with the user's TOTP step-up when `code` is given): the confirm answer. */
  const register = async (auth: string, key: SoftAuthenticator, name: string, code?: string) => {
    const start = http().post('/v1/me/webauthn/registrations').set('Authorization', auth);
    const started = await (code ? start.set('X-MFA-Code', code) : start).expect(200);
    return http().post('/v1/me/webauthn/registrations/confirm').set('Authorization', auth).send({ challengeId: started.body.challengeId, name, response: key.register(started.body.options) });
  };

  /** A user with TOTP (createUser) and one security key. */
  const userWithKey = async (roles: Parameters<TestVault['createUser']>[0]) => {
    const user = await vault.createUser(roles);
    const key = new SoftAuthenticator();
    const res = await register(user.auth, key, 'yubikey', await user.code());
    expect(res.status).toBe(200);
    return { user, key, keyId: res.body.credential.id as string };
  };

  /** The admin's own security key (registered once, with the admin's code: the admin has no key before). */
  let adminKeyOnce: SoftAuthenticator | undefined;
  const adminKey = async () => {
    if (!adminKeyOnce) {
      const key = new SoftAuthenticator();
      expect((await register(admin.auth, key, 'admin key', await admin.code())).status).toBe(200);
      adminKeyOnce = key;
    }
    return adminKeyOnce;
  };

  /** A challenge bound to {method, path, body}, answered by `key`: the X-MFA-Assertion value. */
  const assertionFor = async (auth: string, key: SoftAuthenticator, method: string, path: string, body?: object, over: Parameters<SoftAuthenticator['assert']>[1] = {}) => {
    const res = await http().post('/v1/me/webauthn/step-up').set('Authorization', auth).send(body === undefined ? { method, path } : { method, path, body }).expect(200);
    return SoftAuthenticator.header(key.assert(res.body.options, over));
  };

  beforeAll(async () => {
    vault = await startTestVault({ env: { VAULT_ROTATION_SWEEP_MS: '3600000', VAULT_CHECKOUT_SWEEP_MS: '3600000' } });
    admin = await vault.admin();
    approver = await vault.createUser(['approver']);
    real = await REAL_TARGETS.postgres();
    targetId = (await as(admin).post('/v1/targets', { name: 'webauthn-pg', ...real.body }, true).expect(201)).body.id;
    await as(admin).post(`/v1/targets/${targetId}/verify`, {}, true).expect(200);
  }, 60_000);
  afterAll(async () => {
    await vault?.close();
    await real?.stop();
  });
  beforeEach(() => resetThrottle());

  describe('registration', () => {
    it('registers a first factor without a step-up: every earlier token ends, the answer carries the new one', async () => {
      const u = await vault.createUser(['auditor'], { enroll: false });
      const started = await http().post('/v1/me/webauthn/registrations').set('Authorization', u.auth).expect(200);
      expect(started.body.options).toMatchObject({ rp: { id: 'localhost' }, authenticatorSelection: { userVerification: 'required' }, excludeCredentials: [] });
      const key = new SoftAuthenticator();
      const ok = await http().post('/v1/me/webauthn/registrations/confirm').set('Authorization', u.auth).send({ challengeId: started.body.challengeId, name: 'desk key', response: key.register(started.body.options) }).expect(200);
      expect(ok.body).toEqual({
        credential: { id: expect.any(String), name: 'desk key', createdAt: expect.any(String), lastUsedAt: null, flagged: false, backedUp: false },
        newSession: { accessToken: expect.stringMatching(/^pvt_/), expiresAt: expect.any(String) },
      });
      // the password-only token ended; the new one is a full session
      expect((await http().get('/v1/me').set('Authorization', u.auth).expect(401)).body.code).toBe('UNAUTHENTICATED');
      const fresh = `Bearer ${ok.body.newSession.accessToken}`;
      expect((await http().get('/v1/me').set('Authorization', fresh).expect(200)).body).toMatchObject({ mfaEnrolled: true, mfaMethods: ['webauthn'] });
      await http().get('/v1/audit-events').set('Authorization', fresh).expect(200);
      // stored: the public key and the credential id, never shown; the view says only what the owner needs
      const [row] = await vault.db.query<{ credential_id: string; sign_count: string }>('SELECT credential_id, sign_count::text FROM webauthn_credentials WHERE user_id = $1', [u.id]);
      expect(row).toEqual({ credential_id: key.id, sign_count: '0' });
      const listed = (await http().get('/v1/me/webauthn/credentials').set('Authorization', fresh).expect(200)).body;
      expect(listed).toEqual([ok.body.credential]);
      expect(JSON.stringify(listed)).not.toContain(key.id);
      expect(await auditOf('webauthn.registered', u.id)).toEqual([{ outcome: 'success', details: expect.objectContaining({ credentialId: ok.body.credential.id, name: 'desk key', firstFactor: true }) }]);
      // the challenge is spent: confirming it again is refused
      const again = await http().post('/v1/me/webauthn/registrations/confirm').set('Authorization', fresh).send({ challengeId: started.body.challengeId, name: 'other', response: new SoftAuthenticator().register(started.body.options) }).expect(400);
      expect(again.body.code).toBe('WEBAUTHN_REGISTRATION_FAILED');
    });

    it('needs a step-up to add a key once the user has a factor; refuses a duplicate key, a taken name and answers that do not verify', async () => {
      const u = await vault.createUser(['operator']);
      // a stolen session alone does not add an authenticator
      expect((await http().post('/v1/me/webauthn/registrations').set('Authorization', u.auth).expect(401)).body.code).toBe('MFA_REQUIRED');
      const key = new SoftAuthenticator();
      const first = await register(u.auth, key, 'yubikey', await u.code());
      expect(first.status).toBe(200);
      expect(first.body.newSession).toBeNull();
      await http().get('/v1/me').set('Authorization', u.auth).expect(200); // the session goes on
      expect((await http().get('/v1/me').set('Authorization', u.auth)).body.mfaMethods).toEqual(['totp', 'webauthn']);

      // with a key, another key is added only with a key (a phished code must not mint one)
      const byCode = await http().post('/v1/me/webauthn/registrations').set('Authorization', u.auth).set('X-MFA-Code', await u.code()).expect(403);
      expect(byCode.body.code).toBe('WEBAUTHN_REQUIRED');
      const started = await http().post('/v1/me/webauthn/registrations').set('Authorization', u.auth).set('X-MFA-Assertion', await assertionFor(u.auth, key, 'POST', '/v1/me/webauthn/registrations')).expect(200);
      expect(started.body.options.excludeCredentials).toEqual([expect.objectContaining({ id: key.id })]);
      const confirm = (name: string, response: Record<string, unknown>) =>
        http().post('/v1/me/webauthn/registrations/confirm').set('Authorization', u.auth).send({ challengeId: started.body.challengeId, name, response });
      expect((await confirm('again', key.register(started.body.options)).expect(409)).body.code).toBe('WEBAUTHN_CREDENTIAL_EXISTS');
      const other = new SoftAuthenticator();
      expect((await confirm('other', other.register(started.body.options, { origin: 'https://evil.example' })).expect(400)).body.code).toBe('WEBAUTHN_REGISTRATION_FAILED');
      const noUv = new SoftAuthenticator({ userVerified: false });
      expect((await confirm('no-uv', noUv.register(started.body.options)).expect(400)).body.code).toBe('WEBAUTHN_REGISTRATION_FAILED');
      expect((await confirm('x', { id: 'AAAA', response: 'nonsense' }).expect(400)).body.code).toBe('WEBAUTHN_REGISTRATION_FAILED');
      // a refused answer left the challenge unused: the duplicate name is refused, then a good name registers
      expect((await confirm('yubikey', other.register(started.body.options)).expect(409)).body.code).toBe('WEBAUTHN_NAME_TAKEN');
      await confirm('spare', other.register(started.body.options)).expect(200);
      expect((await http().get('/v1/me/webauthn/credentials').set('Authorization', u.auth).expect(200)).body.map((c: { name: string }) => c.name)).toEqual(['yubikey', 'spare']);
      const rows = await vault.db.query<{ n: number }>('SELECT count(*)::int AS n FROM webauthn_credentials WHERE user_id = $1', [u.id]);
      expect(rows).toEqual([{ n: 2 }]);
    });

    it('a challenge or TOTP seed started before the first factor adds nothing after it without a step-up', async () => {
      // a registration started while the user had no factor, confirmed after they enrolled TOTP
      const u = await vault.createUser(['auditor'], { enroll: false });
      const early = await http().post('/v1/me/webauthn/registrations').set('Authorization', u.auth).expect(200);
      const { secret } = (await http().post('/v1/me/mfa/totp').set('Authorization', u.auth).expect(200)).body;
      const enrolled = await http().post('/v1/me/mfa/totp/confirm').set('Authorization', u.auth).send({ code: totpAt(secret, vault.clock.now().getTime()) }).expect(200);
      const auth = `Bearer ${enrolled.body.accessToken}`;
      const late = await http().post('/v1/me/webauthn/registrations/confirm').set('Authorization', auth).send({ challengeId: early.body.challengeId, name: 'late', response: new SoftAuthenticator().register(early.body.options) }).expect(400);
      expect(late.body.code).toBe('WEBAUTHN_REGISTRATION_FAILED');
      // a TOTP seed started before the first key is gone once the key is registered
      const v = await vault.createUser(['auditor'], { enroll: false });
      const seed = (await http().post('/v1/me/mfa/totp').set('Authorization', v.auth).expect(200)).body.secret;
      const ok = await register(v.auth, new SoftAuthenticator(), 'first');
      const vAuth = `Bearer ${ok.body.newSession.accessToken}`;
      const stale = await http().post('/v1/me/mfa/totp/confirm').set('Authorization', vAuth).send({ code: totpAt(seed, vault.clock.now().getTime()) }).expect(409);
      expect(stale.body.code).toBe('MFA_ENROLLMENT_NOT_STARTED');
    });

    it('refuses credential ids the vault cannot keep (400), keeps only known transports, and a hostile body with an assertion is a 400', async () => {
      const u = await vault.createUser(['operator']);
      for (const id of [randomBytes(4), randomBytes(1100)]) {
        const odd = new SoftAuthenticator({}, undefined, id);
        const started = await http().post('/v1/me/webauthn/registrations').set('Authorization', u.auth).set('X-MFA-Code', await u.code()).expect(200);
        const res = await http().post('/v1/me/webauthn/registrations/confirm').set('Authorization', u.auth).send({ challengeId: started.body.challengeId, name: 'odd', response: odd.register(started.body.options) }).expect(400);
        expect(res.body.code).toBe('WEBAUTHN_REGISTRATION_FAILED');
      }
      const deep = `{"email":${'['.repeat(20_000)}${']'.repeat(20_000)}}`;
      const hostile = await http().patch('/v1/me').set('Authorization', u.auth).set('X-MFA-Assertion', 'e30').set('content-type', 'application/json').send(deep);
      expect([400, 413]).toContain(hostile.status);
    });

    it('at most 20 keys per user (409 WEBAUTHN_TOO_MANY_KEYS)', async () => {
      const u = await vault.createUser(['operator']);
      await vault.db.query(
        // flagged ones count too (and leave the user's code as the way to add a key)
        `INSERT INTO webauthn_credentials (id, user_id, credential_id, public_key, name, aaguid, flagged_at)
         SELECT gen_random_uuid(), $1, 'filler-credential-id-' || n, '\\x00', 'filler ' || n, '00000000-0000-0000-0000-000000000000', now() FROM generate_series(1, 20) AS n`,
        [u.id],
      );
      const res = await register(u.auth, new SoftAuthenticator(), 'one too many', await u.code());
      expect(res.status).toBe(409);
      expect(res.body.code).toBe('WEBAUTHN_TOO_MANY_KEYS');
    });

    it('a user with only a key needs a step-up to add TOTP too', async () => {
      const u = await vault.createUser(['auditor'], { enroll: false });
      const key = new SoftAuthenticator();
      const ok = await register(u.auth, key, 'only key');
      const auth = `Bearer ${ok.body.newSession.accessToken}`;
      expect((await http().post('/v1/me/mfa/totp').set('Authorization', auth).expect(401)).body.code).toBe('MFA_REQUIRED');
      const header = await assertionFor(auth, key, 'POST', '/v1/me/mfa/totp');
      const started = await http().post('/v1/me/mfa/totp').set('Authorization', auth).set('X-MFA-Assertion', header).expect(200);
      expect(started.body.secret).toMatch(/^[A-Z2-7]{32}$/);
    });
  });

  describe('removal', () => {
    it('refuses removing the only factor (409 LAST_FACTOR); removes one of two with a step-up, audited', async () => {
      const u = await vault.createUser(['auditor'], { enroll: false });
      const key = new SoftAuthenticator();
      const ok = await register(u.auth, key, 'main');
      const auth = `Bearer ${ok.body.newSession.accessToken}`;
      const id = ok.body.credential.id as string;
      const path = `/v1/me/webauthn/credentials/${id}`;
      expect((await http().delete(path).set('Authorization', auth).expect(401)).body.code).toBe('MFA_REQUIRED');
      const refused = await http().delete(path).set('Authorization', auth).set('X-MFA-Assertion', await assertionFor(auth, key, 'DELETE', path)).expect(409);
      expect(refused.body.code).toBe('LAST_FACTOR');

      const spare = new SoftAuthenticator();
      const started = await http().post('/v1/me/webauthn/registrations').set('Authorization', auth).set('X-MFA-Assertion', await assertionFor(auth, key, 'POST', '/v1/me/webauthn/registrations')).expect(200);
      await http().post('/v1/me/webauthn/registrations/confirm').set('Authorization', auth).send({ challengeId: started.body.challengeId, name: 'spare', response: spare.register(started.body.options) }).expect(200);
      await http().delete(path).set('Authorization', auth).set('X-MFA-Assertion', await assertionFor(auth, spare, 'DELETE', path)).expect(204);
      expect((await http().get('/v1/me/webauthn/credentials').set('Authorization', auth).expect(200)).body.map((c: { name: string }) => c.name)).toEqual(['spare']);
      expect(await auditOf('webauthn.removed', u.id)).toEqual([{ outcome: 'success', details: expect.objectContaining({ credentialId: id, name: 'main', by: 'self' }) }]);

      // a flagged key is no factor: the last usable one stays; the flagged one may go
      const third = new SoftAuthenticator();
      const again = await http().post('/v1/me/webauthn/registrations').set('Authorization', auth).set('X-MFA-Assertion', await assertionFor(auth, spare, 'POST', '/v1/me/webauthn/registrations')).expect(200);
      const thirdId = (await http().post('/v1/me/webauthn/registrations/confirm').set('Authorization', auth).send({ challengeId: again.body.challengeId, name: 'third', response: third.register(again.body.options) }).expect(200)).body.credential.id;
      await vault.db.query('UPDATE webauthn_credentials SET flagged_at = now() WHERE id = $1', [thirdId]);
      const spareId = (await http().get('/v1/me/webauthn/credentials').set('Authorization', auth).expect(200)).body.find((c: { name: string }) => c.name === 'spare').id;
      const sparePath = `/v1/me/webauthn/credentials/${spareId}`;
      expect((await http().delete(sparePath).set('Authorization', auth).set('X-MFA-Assertion', await assertionFor(auth, spare, 'DELETE', sparePath)).expect(409)).body.code).toBe('LAST_FACTOR');
      const thirdPath = `/v1/me/webauthn/credentials/${thirdId}`;
      await http().delete(thirdPath).set('Authorization', auth).set('X-MFA-Assertion', await assertionFor(auth, spare, 'DELETE', thirdPath)).expect(204);
    });
  });

  describe('sign-in with a key', () => {
    it('answers MFA_REQUIRED with a login challenge after the password; the assertion signs in (bearer and portal), once', async () => {
      const { user, key, keyId } = await userWithKey(['auditor']);
      const wrongPassword = await http().post('/v1/auth/login').send({ username: user.username, password: 'wrong-password' }).expect(401);
      expect(wrongPassword.body).not.toHaveProperty('webauthn');
      const first = await http().post('/v1/auth/login').send({ username: user.username, password: user.password }).expect(401);
      expect(first.body).toMatchObject({ code: 'MFA_REQUIRED', methods: ['totp', 'webauthn'], webauthn: { challengeId: expect.any(String), options: { rpId: 'localhost', userVerification: 'required' } } });
      expect(first.body.webauthn.options.allowCredentials).toEqual([expect.objectContaining({ id: key.id })]);
      const assertion = key.assert(first.body.webauthn.options);
      const ok = await http().post('/v1/auth/login').send({ username: user.username, password: user.password, assertion }).expect(200);
      expect(ok.body).toMatchObject({ accessToken: expect.stringMatching(/^pvt_/), mfaEnrollmentRequired: false });
      await http().get('/v1/audit-events').set('Authorization', `Bearer ${ok.body.accessToken}`).expect(200);
      const logins = await auditOf('auth.login', user.id);
      expect(logins.at(-1)).toMatchObject({ outcome: 'success', details: { mfa: 'webauthn', authenticatorId: keyId } });
      // the same assertion again: its challenge was used
      expect((await http().post('/v1/auth/login').send({ username: user.username, password: user.password, assertion }).expect(401)).body.code).toBe('MFA_REPLAYED');
      // a discoverable credential naming another user is refused; naming this one passes
      const other = Buffer.from(randomBytes(16)).toString('base64url');
      const named = await http().post('/v1/auth/login').send({ username: user.username, password: user.password }).expect(401);
      expect((await http().post('/v1/auth/login').send({ username: user.username, password: user.password, assertion: key.assert(named.body.webauthn.options, { userHandle: other }) }).expect(401)).body.code).toBe('MFA_INVALID');
      const own = Buffer.from(user.id.replace(/-/g, ''), 'hex').toString('base64url');
      const step2 = await http().post('/v1/auth/login').send({ username: user.username, password: user.password }).expect(401);
      await http().post('/v1/auth/login').send({ username: user.username, password: user.password, assertion: key.assert(step2.body.webauthn.options, { userHandle: own }) }).expect(200);
      // both factors at once: refused
      const both = await http().post('/v1/auth/login').send({ username: user.username, password: user.password, assertion, code: '123456' }).expect(401);
      expect(both.body.code).toBe('MFA_INVALID');

      // the portal's sign-in: the same two steps, a session cookie at the end
      const step = await http().post('/v1/auth/session').send({ username: user.username, password: user.password }).expect(401);
      const session = await http().post('/v1/auth/session').send({ username: user.username, password: user.password, assertion: key.assert(step.body.webauthn.options) }).expect(200);
      expect(session.headers['set-cookie']?.[0]).toMatch(/^vault_session=pvb_/);
      expect(session.body.user).toMatchObject({ id: user.id, mfaEnrolled: true, mfaMethods: ['totp', 'webauthn'] });
      const [row] = await vault.db.query<{ last: Date | null; count: string }>('SELECT last_used_at AS last, sign_count::text AS count FROM webauthn_credentials WHERE id = $1', [keyId]);
      expect(row.count).toBe('4');
      expect(row.last).not.toBeNull();
    });

    it('key sign-ins do not add up in the password throttle (the first step’s right password is given back)', async () => {
      const { user, key } = await userWithKey(['auditor']);
      for (let i = 0; i < 12; i++) {
        const first = await http().post('/v1/auth/login').send({ username: user.username, password: user.password }).expect(401);
        await http().post('/v1/auth/login').send({ username: user.username, password: user.password, assertion: key.assert(first.body.webauthn.options) }).expect(200);
      }
      const [pair] = await vault.db.query<{ n: number }>("SELECT failures AS n FROM auth_throttle WHERE key LIKE $1", [`pair:pw:${user.id}@%`]);
      expect(pair.n).toBe(0);
    });

    it('a key-only user: methods [webauthn]; a TOTP code is refused', async () => {
      const u = await vault.createUser(['auditor'], { enroll: false });
      const key = new SoftAuthenticator();
      await register(u.auth, key, 'only');
      const first = await http().post('/v1/auth/login').send({ username: u.username, password: u.password }).expect(401);
      expect(first.body.methods).toEqual(['webauthn']);
      expect((await http().post('/v1/auth/login').send({ username: u.username, password: u.password, code: '123456' }).expect(401)).body.code).toBe('MFA_INVALID');
      await http().post('/v1/auth/login').send({ username: u.username, password: u.password, assertion: key.assert(first.body.webauthn.options) }).expect(200);
    });
  });

  describe('step-up with X-MFA-Assertion', () => {
    it('checks out (in the action’s transaction), reveals and approves with a key; audited with the method and the key', async () => {
      const { user: op, key, keyId } = await userWithKey(['operator']);
      const { user: ap, key: apKey, keyId: apKeyId } = await userWithKey(['approver']);
      const accountId = await newAccount();
      const body = { accountId, justification: 'webauthn step-up' };
      const co = await http().post('/v1/checkouts').set('Authorization', op.auth).set('X-MFA-Assertion', await assertionFor(op.auth, key, 'POST', '/v1/checkouts', body)).send(body).expect(201);
      expect(co.body).toMatchObject({ status: 'active', credential: { password: expect.any(String) } });
      const reveal = `/v1/checkouts/${co.body.id}/reveal`;
      await http().post(reveal).set('Authorization', op.auth).set('X-MFA-Assertion', await assertionFor(op.auth, key, 'POST', reveal)).expect(200);
      const verified = await auditOf('mfa.verified', op.id);
      expect(verified.slice(-2).map((e) => e.details)).toEqual([
        expect.objectContaining({ action: 'POST /v1/checkouts', method: 'webauthn', credentialId: keyId }),
        expect.objectContaining({ action: 'POST /v1/checkouts/:id/reveal', method: 'webauthn', credentialId: keyId }),
      ]);
      await as(op).post(`/v1/checkouts/${co.body.id}/checkin`).expect(200);

      const gated = await newAccount({ approvalsRequired: 1 });
      const pending = (await as(op).post('/v1/checkouts', { accountId: gated, justification: 'needs approval' }, true).expect(201)).body;
      const approvePath = `/v1/checkouts/${pending.id}/approve`;
      const decision = { requestDigest: pending.requestDigest };
      const approved = await http().post(approvePath).set('Authorization', ap.auth).set('X-MFA-Assertion', await assertionFor(ap.auth, apKey, 'POST', approvePath, decision)).send(decision).expect(200);
      expect(approved.body.status).toBe('active');
      expect((await auditOf('mfa.verified', ap.id)).at(-1)?.details).toMatchObject({ method: 'webauthn', credentialId: apKeyId });
      await as(op).post(`/v1/checkouts/${pending.id}/checkin`).expect(200);
    });

    it('refuses another challenge’s signature, a replay, another action (path, body), an expired challenge, both headers and garbage — each audited and counted', async () => {
      const { user: op, key } = await userWithKey(['operator']);
      const accountId = await newAccount();
      const co = (await as(op).post('/v1/checkouts', { accountId, justification: 'refusals' }, true).expect(201)).body;
      const reveal = `/v1/checkouts/${co.id}/reveal`;
      const send = (header: string, path = reveal) => http().post(path).set('Authorization', op.auth).set('X-MFA-Assertion', header);
      const refusals = async () => (await auditOf('mfa.failed', op.id)).map((e) => e.details.refusal);

      // a signature over challenge A presented with challenge B's client data
      const a = (await http().post('/v1/me/webauthn/step-up').set('Authorization', op.auth).send({ method: 'POST', path: reveal }).expect(200)).body;
      const b = (await http().post('/v1/me/webauthn/step-up').set('Authorization', op.auth).send({ method: 'POST', path: reveal }).expect(200)).body;
      // the table keeps a keyed HMAC of the action, never its bare SHA-256 (a body may hold a password)
      const [stored] = await vault.db.query<{ binding: string }>('SELECT binding FROM webauthn_challenges WHERE id = $1', [a.challengeId]);
      expect(stored.binding).toMatch(/^[0-9a-f]{64}$/);
      expect(stored.binding).not.toBe(actionDigest({ method: 'POST', path: reveal }));
      const overA = key.assert(a.options);
      const overB = key.assert(b.options);
      const spliced = { ...overA, response: { ...(overA.response as object), clientDataJSON: (overB.response as { clientDataJSON: string }).clientDataJSON } };
      expect((await send(SoftAuthenticator.header(spliced)).expect(401)).body.code).toBe('MFA_INVALID');
      // the genuine one works once; the replay is refused
      await send(SoftAuthenticator.header(overB)).expect(200);
      expect((await send(SoftAuthenticator.header(overB)).expect(401)).body.code).toBe('MFA_REPLAYED');

      // bound to another path, another body, another method
      const other = await newAccount();
      const co2 = (await as(op).post('/v1/checkouts', { accountId: other, justification: 'second' }, true).expect(201)).body;
      expect((await send(await assertionFor(op.auth, key, 'POST', reveal), `/v1/checkouts/${co2.id}/reveal`).expect(401)).body.code).toBe('MFA_INVALID');
      const extend = `/v1/checkouts/${co.id}/extend`;
      const header = await assertionFor(op.auth, key, 'POST', extend, { ttlSeconds: 60 });
      expect((await http().post(extend).set('Authorization', op.auth).set('X-MFA-Assertion', header).send({ ttlSeconds: 3600 }).expect(401)).body.code).toBe('MFA_INVALID');
      expect((await http().post(extend).set('Authorization', op.auth).set('X-MFA-Assertion', await assertionFor(op.auth, key, 'PATCH', extend, { ttlSeconds: 60 })).send({ ttlSeconds: 60 }).expect(401)).body.code).toBe('MFA_INVALID');

      // expired: answered after its two minutes
      const late = await assertionFor(op.auth, key, 'POST', reveal);
      vault.clock.advance(121_000);
      expect((await send(late).expect(401)).body.code).toBe('MFA_INVALID');
      // a wrong origin (a phishing page's), no user verification
      expect((await send(await assertionFor(op.auth, key, 'POST', reveal, undefined, { origin: 'https://evil.example' })).expect(401)).body.code).toBe('MFA_INVALID');
      key.userVerified = false;
      expect((await send(await assertionFor(op.auth, key, 'POST', reveal)).expect(401)).body.code).toBe('MFA_INVALID');
      key.userVerified = true;

      // both headers; garbage
      expect((await send(await assertionFor(op.auth, key, 'POST', reveal)).set('X-MFA-Code', '123456').expect(401)).body.code).toBe('MFA_INVALID');
      expect((await send('not*base64').expect(401)).body.code).toBe('MFA_INVALID');
      expect((await send(Buffer.from('[1,2]').toString('base64url')).expect(401)).body.code).toBe('MFA_INVALID');
      expect((await send(Buffer.from('{"id":"x"}').toString('base64url')).expect(401)).body.code).toBe('MFA_INVALID');

      expect(await refusals()).toEqual(['bad_signature', 'challenge_used', 'other_action', 'other_action', 'other_action', 'expired', 'bad_signature', 'bad_signature', 'malformed']);
      const failed = await auditOf('mfa.failed', op.id);
      expect(failed.every((e) => e.details.method === 'webauthn' && e.outcome === 'failure')).toBe(true);
      expect(failed[1].details.reason).toBe('MFA_REPLAYED');
      // wrong assertions count like wrong codes (the replay does not)
      const [counted] = await vault.db.query<{ n: number }>("SELECT max(failures)::int AS n FROM auth_throttle WHERE key = $1", [`user:mfa:${op.id}`]);
      expect(counted.n).toBe(8);
      await as(op).post(`/v1/checkouts/${co.id}/checkin`).expect(200);
      await as(op).post(`/v1/checkouts/${co2.id}/checkin`).expect(200);
    });

    it('keeps at most 50 challenges per user however fast they are asked for; the newest still works', async () => {
      const { user: op, key } = await userWithKey(['operator']);
      const ask = () => http().post('/v1/me/webauthn/step-up').set('Authorization', op.auth).send({ method: 'PATCH', path: '/v1/me', body: {} }).expect(200);
      for (let i = 0; i < 60; i++) await ask();
      const newest = (await ask()).body;
      const [{ n }] = await vault.db.query<{ n: number }>('SELECT count(*)::int AS n FROM webauthn_challenges WHERE user_id = $1', [op.id]);
      expect(n).toBe(50);
      await http().patch('/v1/me').set('Authorization', op.auth).set('X-MFA-Assertion', SoftAuthenticator.header(key.assert(newest.options))).send({}).expect(200);
    });

    it('a cloned key (its counter goes back) is refused and flagged; administrators and auditors are alerted; the key stays refused', async () => {
      const { user: op, key, keyId } = await userWithKey(['operator']);
      const path = '/v1/me';
      const patch = (header: string) => http().patch(path).set('Authorization', op.auth).set('X-MFA-Assertion', header).send({});
      await patch(await assertionFor(op.auth, key, 'PATCH', path, {})).expect(200);
      await patch(await assertionFor(op.auth, key, 'PATCH', path, {})).expect(200);
      expect(key.counter).toBe(2);
      const copy = key.clone(1);
      const refused = await patch(await assertionFor(op.auth, copy, 'PATCH', path, {})).expect(401);
      expect(refused.body.code).toBe('MFA_INVALID');
      // either side may be the copy: every session of the user ends; they sign in again with TOTP
      expect((await http().get('/v1/me').set('Authorization', op.auth).expect(401)).body.code).toBe('UNAUTHENTICATED');
      op.auth = `Bearer ${(await http().post('/v1/auth/login').send({ username: op.username, password: op.password, code: await op.code() }).expect(200)).body.accessToken}`;
      expect((await http().get('/v1/me/webauthn/credentials').set('Authorization', op.auth).expect(200)).body).toEqual([expect.objectContaining({ id: keyId, flagged: true })]);
      expect(await auditOf('webauthn.clone_suspected', op.id)).toEqual([{ outcome: 'failure', details: expect.objectContaining({ credentialId: keyId, storedCounter: 2, presentedCounter: 2, sessionsEnded: 1 }) }]);
      const alerts = await vault.db.query<{ type: string }>("SELECT type FROM notification_events WHERE type = 'alert.webauthn_clone_suspected' AND subject_id = $1", [op.id]);
      expect(alerts).toHaveLength(1);
      // the genuine key is refused too until the key is removed (no challenge is even offered for it)
      expect((await http().post('/v1/me/webauthn/step-up').set('Authorization', op.auth).send({ method: 'PATCH', path }).expect(409)).body.code).toBe('WEBAUTHN_NOT_ENROLLED');
      // its owner removes it with TOTP (they have both); admins see it as flagged first
      expect((await as(admin).get(`/v1/users/${op.id}/webauthn`).expect(200)).body).toEqual([expect.objectContaining({ id: keyId, flagged: true })]);
      await as(op).delete(`/v1/me/webauthn/credentials/${keyId}`, true).expect(204);
    });

    it('20 requests racing with one assertion: exactly one succeeds (checkout in its transaction, and reveal)', async () => {
      const { user: op, key } = await userWithKey(['operator']);
      const accountId = await newAccount();
      const body = { accountId, justification: 'race' };
      const header = await assertionFor(op.auth, key, 'POST', '/v1/checkouts', body);
      const answers = await Promise.all(Array.from({ length: 20 }, () => http().post('/v1/checkouts').set('Authorization', op.auth).set('X-MFA-Assertion', header).send(body)));
      const statuses = answers.map((r) => r.status);
      expect(statuses.filter((s) => s === 201)).toHaveLength(1);
      for (const r of answers.filter((x) => x.status !== 201)) expect(['MFA_REPLAYED', 'THROTTLED']).toContain(r.body.code);
      expect(await vault.db.query('SELECT id FROM checkouts WHERE account_id = $1', [accountId])).toHaveLength(1);
      const co = answers.find((r) => r.status === 201)!.body;

      await resetThrottle();
      const reveal = `/v1/checkouts/${co.id}/reveal`;
      const once = await assertionFor(op.auth, key, 'POST', reveal);
      const reveals = await Promise.all(Array.from({ length: 20 }, () => http().post(reveal).set('Authorization', op.auth).set('X-MFA-Assertion', once)));
      expect(reveals.filter((r) => r.status === 200)).toHaveLength(1);
      for (const r of reveals.filter((x) => x.status !== 200)) expect(['MFA_REPLAYED', 'THROTTLED']).toContain(r.body.code);
      const revealed = await vault.db.query("SELECT 1 FROM audit_events WHERE type = 'checkout.revealed' AND subject_id = $1 AND details->>'via' = 'reveal'", [co.id]);
      expect(revealed).toHaveLength(1);
      // the losers saw the counter the winner stored: a replay, not a cloned key
      expect((await http().get('/v1/me/webauthn/credentials').set('Authorization', op.auth).expect(200)).body).toEqual([expect.objectContaining({ flagged: false })]);
      expect(await vault.db.query("SELECT 1 FROM audit_events WHERE type = 'webauthn.clone_suspected' AND subject_id = $1", [op.id])).toEqual([]);
      await as(op).post(`/v1/checkouts/${co.id}/checkin`).expect(200);
    });
  });

  describe('policies that refuse a TOTP step-up', () => {
    it("an account's requireWebauthn: checkout, reveal and extend refuse a TOTP code (403 WEBAUTHN_REQUIRED, the code burned) and take a key; lifting it needs a key", async () => {
      const { user: op, key } = await userWithKey(['operator']);
      const accountId = await newAccount({ requireWebauthn: true });
      expect((await as(admin).get(`/v1/accounts/${accountId}`).expect(200)).body.policy.requireWebauthn).toBe(true);
      const body = { accountId, justification: 'strong factor' };
      const code = await op.code();
      const refused = await http().post('/v1/checkouts').set('Authorization', op.auth).set('X-MFA-Code', code).send(body).expect(403);
      expect(refused.body.code).toBe('WEBAUTHN_REQUIRED');
      expect(await vault.db.query('SELECT id FROM checkouts WHERE account_id = $1', [accountId])).toHaveLength(0);
      // the code was spent all the same
      expect((await http().post('/v1/checkouts').set('Authorization', op.auth).set('X-MFA-Code', code).send(body).expect(401)).body.code).toBe('MFA_REPLAYED');

      const co = (await http().post('/v1/checkouts').set('Authorization', op.auth).set('X-MFA-Assertion', await assertionFor(op.auth, key, 'POST', '/v1/checkouts', body)).send(body).expect(201)).body;
      const reveal = `/v1/checkouts/${co.id}/reveal`;
      expect((await as(op).post(reveal, {}, true).expect(403)).body.code).toBe('WEBAUTHN_REQUIRED');
      await http().post(reveal).set('Authorization', op.auth).set('X-MFA-Assertion', await assertionFor(op.auth, key, 'POST', reveal, {})).send({}).expect(200);
      const extend = `/v1/checkouts/${co.id}/extend`;
      expect((await as(op).post(extend, { ttlSeconds: 60 }, true).expect(403)).body.code).toBe('WEBAUTHN_REQUIRED');
      await http().post(extend).set('Authorization', op.auth).set('X-MFA-Assertion', await assertionFor(op.auth, key, 'POST', extend, { ttlSeconds: 60 })).send({ ttlSeconds: 60 }).expect(200);
      await as(op).post(`/v1/checkouts/${co.id}/checkin`).expect(200);

      // a code alone does not lift the policy, nor delete the account (it could be vaulted again without it)
      const path = `/v1/accounts/${accountId}`;
      expect((await as(admin).patch(path, { policy: { requireWebauthn: false } }, true).expect(403)).body.code).toBe('WEBAUTHN_REQUIRED');
      expect((await as(admin).delete(path, true).expect(403)).body.code).toBe('WEBAUTHN_REQUIRED');
      await as(admin).patch(path, { policy: { checkoutTtlSeconds: 1800 } }, true).expect(200);
      expect((await as(admin).get(path).expect(200)).body.policy).toMatchObject({ requireWebauthn: true, checkoutTtlSeconds: 1800 });
      const lift = { policy: { requireWebauthn: false } };
      await http().patch(path).set('Authorization', admin.auth).set('X-MFA-Assertion', await assertionFor(admin.auth, await adminKey(), 'PATCH', path, lift)).send(lift).expect(200);
    });

    it('VAULT_APPROVERS_REQUIRE_WEBAUTHN: approve and deny refuse a TOTP code and take a key', async () => {
      const env = { VAULT_MASTER_KEY: randomBytes(32).toString('base64'), VAULT_APPROVERS_REQUIRE_WEBAUTHN: 'true' };
      expect(loadConfig(env).webauthn.approversRequireWebauthn).toBe(true);
      expect(loadConfig({ VAULT_MASTER_KEY: env.VAULT_MASTER_KEY }).webauthn.approversRequireWebauthn).toBe(false);
      // this vault's configuration, switched as the variable sets it (a vault of its own would need a second target)
      const config = vault.get<AppConfig>(APP_CONFIG);
      config.webauthn.approversRequireWebauthn = true;
      try {
        const { user: ap, key } = await userWithKey(['approver']);
        const op = await vault.createUser(['operator']);
        const accountId = await newAccount({ approvalsRequired: 1 });
        const pending = (await as(op).post('/v1/checkouts', { accountId, justification: 'approve me' }, true).expect(201)).body;
        const decision = { requestDigest: pending.requestDigest };
        for (const verb of ['approve', 'deny']) expect((await as(ap).post(`/v1/checkouts/${pending.id}/${verb}`, decision, true).expect(403)).body.code).toBe('WEBAUTHN_REQUIRED');
        expect((await as(approver).post(`/v1/checkouts/${pending.id}/approve`, decision, true).expect(403)).body.code).toBe('WEBAUTHN_REQUIRED');
        const path = `/v1/checkouts/${pending.id}/deny`;
        const denied = await http().post(path).set('Authorization', ap.auth).set('X-MFA-Assertion', await assertionFor(ap.auth, key, 'POST', path, decision)).send(decision).expect(200);
        expect(denied.body.status).toBe('denied');

        // one-time account requests: the same
        await as(admin).put(`/v1/targets/${targetId}/ephemeral-policy`, { approvalsRequired: 1, maxTtlSeconds: 3600 }, true).expect(200);
        const vendor = await vault.createUser(['vendor']);
        const request = (await as(op).post('/v1/ephemeral-accounts', { targetId, vendorUserId: vendor.id, ttlSeconds: 1800, justification: 'vendor work' }).expect(201)).body;
        const ask = { requestDigest: request.requestDigest };
        for (const verb of ['approve', 'deny']) expect((await as(ap).post(`/v1/ephemeral-accounts/${request.id}/${verb}`, ask, true).expect(403)).body.code).toBe('WEBAUTHN_REQUIRED');
        const approvePath = `/v1/ephemeral-accounts/${request.id}/approve`;
        const approved = await http().post(approvePath).set('Authorization', ap.auth).set('X-MFA-Assertion', await assertionFor(ap.auth, key, 'POST', approvePath, ask)).send(ask).expect(200);
        expect(approved.body.status).toBe('approved');
        await as(op).post(`/v1/ephemeral-accounts/${request.id}/revoke`).expect(200);
      } finally {
        config.webauthn.approversRequireWebauthn = false;
      }
    });
  });

  describe('admin recovery', () => {
    it('an admin lists and removes a lost key with their own key (the last factor: the user’s sessions end); the MFA reset removes every key', async () => {
      const u = await vault.createUser(['auditor'], { enroll: false });
      const key = new SoftAuthenticator();
      const ok = await register(u.auth, key, 'lost');
      const auth = `Bearer ${ok.body.newSession.accessToken}`;
      const listed = (await as(admin).get(`/v1/users/${u.id}/webauthn`).expect(200)).body;
      expect(listed).toEqual([expect.objectContaining({ name: 'lost', flagged: false })]);
      const keyPath = `/v1/users/${u.id}/webauthn/${listed[0].id}`;
      expect((await http().delete(keyPath).set('Authorization', admin.auth).expect(401)).body.code).toBe('MFA_REQUIRED');
      // only a key weakens a key: a usable key goes with the admin's own key, not a code
      expect((await as(admin).delete(keyPath, true).expect(403)).body.code).toBe('WEBAUTHN_REQUIRED');
      await http().delete(keyPath).set('Authorization', admin.auth).set('X-MFA-Assertion', await assertionFor(admin.auth, await adminKey(), 'DELETE', keyPath)).expect(204);
      expect((await http().get('/v1/me').set('Authorization', auth).expect(401)).body.code).toBe('UNAUTHENTICATED');
      expect(await auditOf('webauthn.removed', u.id)).toEqual([{ outcome: 'success', details: expect.objectContaining({ by: 'admin', lastFactor: true }) }]);

      const { user: v, keyId } = await userWithKey(['operator']);
      const resetPath = `/v1/users/${v.id}/mfa/reset`;
      expect((await as(admin).post(resetPath, {}, true).expect(403)).body.code).toBe('WEBAUTHN_REQUIRED');
      await http().post(resetPath).set('Authorization', admin.auth).set('X-MFA-Assertion', await assertionFor(admin.auth, await adminKey(), 'POST', resetPath, {})).send({}).expect(204);
      // the admin's own keys are removed on their own page
      const own = (await as(admin).get(`/v1/users/${admin.id}/webauthn`).expect(200)).body[0].id;
      expect((await as(admin).delete(`/v1/users/${admin.id}/webauthn/${own}`, true).expect(403)).body.code).toBe('FORBIDDEN');
      expect(await vault.db.query('SELECT id FROM webauthn_credentials WHERE user_id = $1', [v.id])).toEqual([]);
      expect((await as(admin).get(`/v1/users/${v.id}/webauthn`).expect(200)).body).toEqual([]);
      expect((await auditOf('mfa.reset', v.id)).at(-1)?.details).toMatchObject({ webauthnRemoved: 1 });
      const login = await http().post('/v1/auth/login').send({ username: v.username, password: v.password }).expect(200);
      expect(login.body.mfaEnrollmentRequired).toBe(true);
      expect(keyId).toEqual(expect.any(String));
    });
  });
});

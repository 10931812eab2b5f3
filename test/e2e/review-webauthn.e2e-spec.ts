import { createHash, createSign, generateKeyPairSync, randomBytes } from 'node:crypto';
import { isoCBOR } from '@simplewebauthn/server/helpers';
import canonicalize from 'canonicalize';
import { browserSignIn } from '../support/browser-session';
import { actingAs } from '../support/http';
import { SoftAuthenticator } from '../support/soft-authenticator';
import { SshdHandle, startSshd } from '../support/targets/sshd';
import { totpAt } from '../support/totp';
import { startTestVault, TestUser, TestVault } from '../support/vault';

/**
 * Adversarial review of the WebAuthn second factor (issue 18) on the real PostgreSQL, a real sshd target and the
 * vault's SSH gateway, with the software authenticator of test/support/soft-authenticator.ts (real ES256 signatures).
 * Each test is an attack: a passing test documents the defence; a test named `FINDING n: …` fails while the weakness
 * is there (see /tmp/s26/review-webauthn.md).
 */
describe('review: attacking the WebAuthn second factor (e2e, real PostgreSQL)', () => {
  let vault: TestVault;
  let admin: TestUser;
  let sshd: SshdHandle;
  let targetId: string;
  const logLines: string[] = [];

  const as = (user: TestUser) => actingAs(vault, user);
  const http = () => vault.http();
  const resetThrottle = () => vault.db.query('DELETE FROM auth_throttle');
  const bearer = (token: string) => `Bearer ${token}`;

  /** Registers `key` for the user behind `auth` (with a TOTP step-up when `code` is given): the confirm answer. */
  const register = async (auth: string, key: SoftAuthenticator, name: string, code?: string) => {
    const start = http().post('/v1/me/webauthn/registrations').set('Authorization', auth);
    const started = await (code ? start.set('X-MFA-Code', code) : start).expect(200);
    return http().post('/v1/me/webauthn/registrations/confirm').set('Authorization', auth).send({ challengeId: started.body.challengeId, name, response: key.register(started.body.options) });
  };

  /** A user with TOTP and one key. */
  const userWithKey = async (roles: Parameters<TestVault['createUser']>[0], key = new SoftAuthenticator()) => {
    const user = await vault.createUser(roles);
    const res = await register(user.auth, key, 'yubikey', await user.code());
    expect(res.status).toBe(200);
    return { user, key, keyId: res.body.credential.id as string };
  };

  /** A user whose only factor is `key` (registered as the first factor): the fresh session it answered with. */
  const keyOnlyUser = async (roles: Parameters<TestVault['createUser']>[0], key = new SoftAuthenticator()) => {
    const user = await vault.createUser(roles, { enroll: false });
    const res = await register(user.auth, key, 'only key');
    expect(res.status).toBe(200);
    return { user, key, keyId: res.body.credential.id as string, auth: bearer(res.body.newSession.accessToken) };
  };

  /** A step-up challenge for {method, path, body} (the raw answer). */
  const challengeFor = async (auth: string, method: string, path: string, body?: object) =>
    (await http().post('/v1/me/webauthn/step-up').set('Authorization', auth).send(body === undefined ? { method, path } : { method, path, body }).expect(200)).body as { challengeId: string; options: { challenge: string } };

  /** The X-MFA-Assertion value answering a challenge bound to {method, path, body}. */
  const assertionFor = async (auth: string, key: SoftAuthenticator, method: string, path: string, body?: object, over: Parameters<SoftAuthenticator['assert']>[1] = {}) =>
    SoftAuthenticator.header(key.assert((await challengeFor(auth, method, path, body)).options, over));

  const patchMe = (auth: string, header: string, body: object = {}) => http().patch('/v1/me').set('Authorization', auth).set('X-MFA-Assertion', header).send(body);
  const credentialsOf = async (userId: string) =>
    vault.db.query<{ id: string; flagged: boolean }>('SELECT id, flagged_at IS NOT NULL AS flagged FROM webauthn_credentials WHERE user_id = $1 ORDER BY created_at', [userId]);

  /** A local user on the sshd, vaulted with `policy`. */
  const newAccount = async (policy: object = {}) => {
    const username = `rw${randomBytes(4).toString('hex')}`;
    const password = `Pw-${randomBytes(12).toString('hex')}`;
    await sshd.createUser(username, password);
    return (await as(admin).post('/v1/accounts', { targetId, username, password, policy }, true).expect(201)).body.id as string;
  };

  /**
   * An assertion signed by hand (the soft authenticator always sets UP): `flags` and `rpId` as given, over the
   * challenge of `options`, with the key pair `keys` and credential id `credentialId`.
   */
  const handSigned = (
    keys: { privateKey: import('node:crypto').KeyObject },
    credentialId: Buffer,
    options: { challenge: string },
    o: { flags: number; counter: number; rpId?: string; origin?: string },
  ) => {
    const clientDataJSON = Buffer.from(JSON.stringify({ type: 'webauthn.get', challenge: options.challenge, origin: o.origin ?? 'http://localhost:8080', crossOrigin: false }));
    const count = Buffer.alloc(4);
    count.writeUInt32BE(o.counter);
    const authenticatorData = Buffer.concat([createHash('sha256').update(o.rpId ?? 'localhost').digest(), Buffer.from([o.flags]), count]);
    const signature = createSign('sha256').update(Buffer.concat([authenticatorData, createHash('sha256').update(clientDataJSON).digest()])).sign(keys.privateKey);
    const id = credentialId.toString('base64url');
    return {
      id,
      rawId: id,
      type: 'public-key',
      response: { clientDataJSON: clientDataJSON.toString('base64url'), authenticatorData: authenticatorData.toString('base64url'), signature: signature.toString('base64url') },
      clientExtensionResults: {},
    };
  };

  beforeAll(async () => {
    vault = await startTestVault({
      gateway: true,
      logLines,
      env: { VAULT_CHECKOUT_SWEEP_MS: '3600000', VAULT_ROTATION_SWEEP_MS: '3600000', VAULT_EPHEMERAL_SWEEP_MS: '3600000' },
    });
    admin = await vault.admin();
    sshd = await startSshd({ usePam: false, keysInHome: true });
    const sudoAdmin = await sshd.createSudoAdmin({ nopasswd: false });
    const body = {
      name: 'review-webauthn-sshd',
      type: 'ssh',
      host: sshd.host,
      port: sshd.port,
      admin: { username: sudoAdmin.username, password: sudoAdmin.password },
      options: { hostKeySha256: sshd.hostKeySha256, sudo: true },
    };
    targetId = (await as(admin).post('/v1/targets', body, true).expect(201)).body.id;
  }, 90_000);
  afterAll(async () => {
    await vault?.close();
    await sshd?.stop();
  });
  beforeEach(() => resetThrottle());

  // ---- the binding: what the digest covers -------------------------------------------------------------------------

  describe('the step-up binding', () => {
    it('covers the body as the handler reads it: key order is free, a duplicate key is read as its last value on both sides, a string is not a number', async () => {
      const { user: op, key } = await userWithKey(['operator']);
      // the challenge for {mutedNotifications, email} answers the same body in another order
      const body = { mutedNotifications: ['request.approved'], email: 'op@example.com' };
      const reordered = `{"email":"op@example.com","mutedNotifications":["request.approved"]}`;
      await http().patch('/v1/me').set('Authorization', op.auth).set('X-MFA-Assertion', await assertionFor(op.auth, key, 'PATCH', '/v1/me', body)).set('Content-Type', 'application/json').send(reordered).expect(200);
      // a duplicate key: JSON.parse keeps the last one for the digest and for the handler alike
      const dup = `{"email":"first@example.com","email":"last@example.com"}`;
      const forFirst = await assertionFor(op.auth, key, 'PATCH', '/v1/me', { email: 'first@example.com' });
      expect((await http().patch('/v1/me').set('Authorization', op.auth).set('X-MFA-Assertion', forFirst).set('Content-Type', 'application/json').send(dup).expect(401)).body.code).toBe('MFA_INVALID');
      const forLast = await assertionFor(op.auth, key, 'PATCH', '/v1/me', { email: 'last@example.com' });
      await http().patch('/v1/me').set('Authorization', op.auth).set('X-MFA-Assertion', forLast).set('Content-Type', 'application/json').send(dup).expect(200);
      expect((await as(op).get('/v1/me').expect(200)).body.email).toBe('last@example.com');
      // a number signed, a string sent (or the reverse): refused before anything is used
      const accountId = await newAccount();
      const co = (await as(op).post('/v1/checkouts', { accountId, justification: 'binding' }, true).expect(201)).body;
      const extend = `/v1/checkouts/${co.id}/extend`;
      const asNumber = await assertionFor(op.auth, key, 'POST', extend, { ttlSeconds: 60 });
      const sent = await http().post(extend).set('Authorization', op.auth).set('X-MFA-Assertion', asNumber).set('Content-Type', 'application/json').send('{"ttlSeconds":"60"}');
      expect([400, 401]).toContain(sent.status);
      // the number itself still works once (the refused request used nothing)
      await http().post(extend).set('Authorization', op.auth).set('X-MFA-Assertion', asNumber).send({ ttlSeconds: 60 }).expect(200);
      await as(op).post(`/v1/checkouts/${co.id}/checkin`).expect(200);
    });

    it('ignores the query string (no @RequiresMfa handler reads one) and refuses another path for the same handler', async () => {
      const { user: op, key } = await userWithKey(['operator']);
      await patchMe(op.auth, await assertionFor(op.auth, key, 'PATCH', '/v1/me', {})).expect(200);
      const header = await assertionFor(op.auth, key, 'PATCH', '/v1/me', {});
      await http().patch('/v1/me?x=1').set('Authorization', op.auth).set('X-MFA-Assertion', header).send({}).expect(200);
      // a trailing slash routes to the same handler but is another path: refused, not confused
      const slash = await assertionFor(op.auth, key, 'PATCH', '/v1/me', {});
      expect((await http().patch('/v1/me/').set('Authorization', op.auth).set('X-MFA-Assertion', slash).send({})).status).not.toBe(200);
    });
  });

  // ---- whose challenge, which purpose ------------------------------------------------------------------------------

  describe('challenges of another user or another purpose', () => {
    it("U's assertion sent with V's session is refused, and V's key over U's challenge is refused; U's challenge stays usable", async () => {
      const u = await userWithKey(['operator']);
      const v = await userWithKey(['operator']);
      const challenge = await challengeFor(u.user.auth, 'PATCH', '/v1/me', {});
      const uAnswer = SoftAuthenticator.header(u.key.assert(challenge.options));
      expect((await patchMe(v.user.auth, uAnswer).expect(401)).body.code).toBe('MFA_INVALID');
      const vAnswer = SoftAuthenticator.header(v.key.assert(challenge.options));
      expect((await patchMe(u.user.auth, vAnswer).expect(401)).body.code).toBe('MFA_INVALID');
      // a spoofed userHandle does not make V's key U's
      const spoofed = v.key.assert(challenge.options);
      (spoofed.response as Record<string, string>).userHandle = Buffer.from(u.user.id.replace(/-/g, ''), 'hex').toString('base64url');
      expect((await patchMe(u.user.auth, SoftAuthenticator.header(spoofed)).expect(401)).body.code).toBe('MFA_INVALID');
      await patchMe(u.user.auth, uAnswer).expect(200);
    });

    it('a login answer is no step-up, a step-up answer is no login, a registration challenge answers neither', async () => {
      const { user, key } = await userWithKey(['operator']);
      // (the registration challenge first: its step-up moves the key's counter before the login answer is signed)
      const reg = await http().post('/v1/me/webauthn/registrations').set('Authorization', user.auth).set('X-MFA-Assertion', await assertionFor(user.auth, key, 'POST', '/v1/me/webauthn/registrations')).expect(200);
      const login = await http().post('/v1/auth/login').send({ username: user.username, password: user.password }).expect(401);
      const loginAnswer = key.assert(login.body.webauthn.options);
      expect((await patchMe(user.auth, SoftAuthenticator.header(loginAnswer)).expect(401)).body.code).toBe('MFA_INVALID');
      const stepUpAnswer = key.assert((await challengeFor(user.auth, 'PATCH', '/v1/me', {})).options);
      const asLogin = await http().post('/v1/auth/login').send({ username: user.username, password: user.password, assertion: stepUpAnswer });
      expect(asLogin.status).toBe(401);
      expect(asLogin.body.accessToken).toBeUndefined();
      expect((await patchMe(user.auth, SoftAuthenticator.header(key.assert(reg.body.options))).expect(401)).body.code).toBe('MFA_INVALID');
      const regAsLogin = await http().post('/v1/auth/login').send({ username: user.username, password: user.password, assertion: key.assert(reg.body.options) });
      expect(regAsLogin.status).toBe(401);
      // the login answer still signs in (the refusals above used nothing)
      await http().post('/v1/auth/login').send({ username: user.username, password: user.password, assertion: loginAnswer }).expect(200);
      // and another user's registration challenge cannot be confirmed
      const other = await vault.createUser(['operator']);
      const confirm = await http().post('/v1/me/webauthn/registrations/confirm').set('Authorization', other.auth).send({ challengeId: reg.body.challengeId, name: 'theirs', response: new SoftAuthenticator().register(reg.body.options) });
      expect(confirm.status).toBe(400);
      expect(confirm.body.code).toBe('WEBAUTHN_REGISTRATION_FAILED');
    });
  });

  // ---- the authenticator's flags and counter -----------------------------------------------------------------------

  describe('flags, relying party, counter', () => {
    it('user presence off, user verification off, another rp id hash: refused (step-up and login)', async () => {
      const keys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const credentialId = randomBytes(32);
      const key = new SoftAuthenticator({}, keys, credentialId);
      const { user } = await userWithKey(['operator'], key);
      const UP = 0x01;
      const UV = 0x04;
      let counter = 10;
      const tries: Array<[string, { flags: number; rpId?: string }]> = [
        ['no UP', { flags: UV }],
        ['no UV', { flags: UP }],
        ['other rp', { flags: UP | UV, rpId: 'evil.example' }],
      ];
      for (const [, o] of tries) {
        const c = await challengeFor(user.auth, 'PATCH', '/v1/me', {});
        expect((await patchMe(user.auth, SoftAuthenticator.header(handSigned(keys, credentialId, c.options, { ...o, counter: ++counter }))).expect(401)).body.code).toBe('MFA_INVALID');
        const login = await http().post('/v1/auth/login').send({ username: user.username, password: user.password }).expect(401);
        const signed = handSigned(keys, credentialId, login.body.webauthn.options, { ...o, counter: ++counter });
        expect((await http().post('/v1/auth/login').send({ username: user.username, password: user.password, assertion: signed })).status).toBe(401);
        await resetThrottle();
      }
      // the hand-made signature is right: with UP|UV on the right rp it passes
      const ok = await challengeFor(user.auth, 'PATCH', '/v1/me', {});
      await patchMe(user.auth, SoftAuthenticator.header(handSigned(keys, credentialId, ok.options, { flags: UP | UV, counter: counter + 1 }))).expect(200);
    });

    it('a passkey whose counter stays 0 keeps working (step-up and login) and is never flagged', async () => {
      const key = new SoftAuthenticator({ backedUp: true });
      const { user, keyId } = await userWithKey(['operator'], key);
      for (let i = 0; i < 3; i++) await patchMe(user.auth, await assertionFor(user.auth, key, 'PATCH', '/v1/me', {}, { counter: 0 })).expect(200);
      const login = await http().post('/v1/auth/login').send({ username: user.username, password: user.password }).expect(401);
      await http().post('/v1/auth/login').send({ username: user.username, password: user.password, assertion: key.assert(login.body.webauthn.options, { counter: 0 }) }).expect(200);
      expect(await credentialsOf(user.id)).toEqual([{ id: keyId, flagged: false }]);
    });

    it('a flagged key is refused for sign-in too, even when the user has another key that is offered', async () => {
      const { user, key } = await userWithKey(['operator']);
      const spare = new SoftAuthenticator();
      const started = await http().post('/v1/me/webauthn/registrations').set('Authorization', user.auth).set('X-MFA-Assertion', await assertionFor(user.auth, key, 'POST', '/v1/me/webauthn/registrations')).expect(200);
      await http().post('/v1/me/webauthn/registrations/confirm').set('Authorization', user.auth).send({ challengeId: started.body.challengeId, name: 'spare', response: spare.register(started.body.options) }).expect(200);
      await patchMe(user.auth, await assertionFor(user.auth, key, 'PATCH', '/v1/me', {})).expect(200);
      await patchMe(user.auth, await assertionFor(user.auth, key, 'PATCH', '/v1/me', {})).expect(200);
      const copy = key.clone(1);
      await patchMe(user.auth, await assertionFor(user.auth, copy, 'PATCH', '/v1/me', {})).expect(401);
      expect((await credentialsOf(user.id)).map((c) => c.flagged)).toEqual([true, false]);
      const login = await http().post('/v1/auth/login').send({ username: user.username, password: user.password }).expect(401);
      expect(login.body.webauthn.options.allowCredentials).toEqual([expect.objectContaining({ id: spare.id })]);
      for (const k of [key, copy]) {
        const refused = await http().post('/v1/auth/login').send({ username: user.username, password: user.password, assertion: k.assert(login.body.webauthn.options, { counter: 100 }) });
        expect(refused.status).toBe(401);
        expect(refused.body.accessToken).toBeUndefined();
      }
    });

    it('FINDING 9: the counter check is not atomic: assertions with the same counter (a key and its copy) racing each pass, nothing is flagged', async () => {
      const { user, key } = await userWithKey(['operator']);
      await patchMe(user.auth, await assertionFor(user.auth, key, 'PATCH', '/v1/me', {})).expect(200);
      const copy = key.clone(key.counter);
      // the genuine key and its copy each answer their own challenge with the same next counter, at the same time
      const challenges = await Promise.all(Array.from({ length: 10 }, () => challengeFor(user.auth, 'PATCH', '/v1/me', {})));
      const next = key.counter + 1;
      const headers = challenges.map((c, i) => SoftAuthenticator.header((i % 2 ? copy : key).assert(c.options, { counter: next })));
      const answers = await Promise.all(headers.map((h) => patchMe(user.auth, h)));
      const ok = answers.filter((a) => a.status === 200).length;
      // one counter value is accepted once; the others are a copy's (or a replayed counter): refused, the key flagged
      expect(ok).toBe(1);
      expect((await credentialsOf(user.id))[0].flagged).toBe(true);
    });

    it('FINDING 10: a key and its copy signing in at once: the winner keeps a live token although the clone was detected and "every session ended"', async () => {
      const survivors: number[] = [];
      for (let round = 0; round < 8; round++) {
        await resetThrottle();
        const { user, key } = await userWithKey(['auditor']);
        await patchMe(user.auth, await assertionFor(user.auth, key, 'PATCH', '/v1/me', {})).expect(200);
        const copy = key.clone(key.counter);
        const next = key.counter + 1;
        const [a, b] = await Promise.all([0, 1].map(() => http().post('/v1/auth/login').send({ username: user.username, password: user.password }).expect(401)));
        const answers = await Promise.all([
          http().post('/v1/auth/login').send({ username: user.username, password: user.password, assertion: key.assert(a.body.webauthn.options, { counter: next }) }),
          http().post('/v1/auth/login').send({ username: user.username, password: user.password, assertion: copy.assert(b.body.webauthn.options, { counter: next }) }),
        ]);
        expect((await credentialsOf(user.id))[0].flagged).toBe(true);
        for (const ok of answers.filter((r) => r.status === 200)) {
          if ((await http().get('/v1/me').set('Authorization', bearer(ok.body.accessToken))).status === 200) survivors.push(round);
        }
      }
      // a token issued on a key found cloned must not outlive the decision that ended the user's sessions
      expect(survivors).toEqual([]);
    });

    it('a key and its copy with one counter checking out two accounts at once (in the checkout\'s transaction): one checkout, the key flagged', async () => {
      const { user: op, key } = await userWithKey(['operator']);
      await patchMe(op.auth, await assertionFor(op.auth, key, 'PATCH', '/v1/me', {})).expect(200);
      const copy = key.clone(key.counter);
      const next = key.counter + 1;
      const accounts = [await newAccount(), await newAccount()];
      const bodies = accounts.map((accountId) => ({ accountId, justification: 'race with a copy' }));
      const headers = await Promise.all(bodies.map(async (body, i) => SoftAuthenticator.header((i ? copy : key).assert((await challengeFor(op.auth, 'POST', '/v1/checkouts', body)).options, { counter: next }))));
      const answers = await Promise.all(bodies.map((body, i) => http().post('/v1/checkouts').set('Authorization', op.auth).set('X-MFA-Assertion', headers[i]).send(body)));
      expect(answers.map((a) => a.status).sort()).toEqual([201, 401]);
      expect(answers.find((a) => a.status === 401)!.body.code).toBe('MFA_INVALID');
      const made = await vault.db.query<{ id: string }>('SELECT id FROM checkouts WHERE account_id = ANY($1)', [accounts]);
      expect(made).toHaveLength(1);
      expect((await credentialsOf(op.id))[0].flagged).toBe(true);
      await as(admin).post(`/v1/checkouts/${made[0].id}/revoke`, { reason: 'review cleanup' }).expect(200);
    });

    it('10 clone answers in parallel: the key is flagged once, one audit event, one alert, nothing passes', async () => {
      const { user, key, keyId } = await userWithKey(['operator']);
      for (let i = 0; i < 3; i++) await patchMe(user.auth, await assertionFor(user.auth, key, 'PATCH', '/v1/me', {})).expect(200);
      const copy = key.clone(1);
      const headers = await Promise.all(Array.from({ length: 10 }, async () => SoftAuthenticator.header(copy.assert((await challengeFor(user.auth, 'PATCH', '/v1/me', {})).options, { counter: 2 }))));
      const answers = await Promise.all(headers.map((h) => patchMe(user.auth, h)));
      expect(answers.filter((a) => a.status === 200)).toEqual([]);
      expect(await credentialsOf(user.id)).toEqual([{ id: keyId, flagged: true }]);
      expect(await vault.db.query("SELECT 1 FROM audit_events WHERE type = 'webauthn.clone_suspected' AND subject_id = $1", [user.id])).toHaveLength(1);
      expect(await vault.db.query("SELECT 1 FROM notification_events WHERE type = 'alert.webauthn_clone_suspected' AND subject_id = $1", [user.id])).toHaveLength(1);
    });

    it('FINDING 1: a suspected clone ends nothing: the session the clone signed in with goes on', async () => {
      const { user, key, auth } = await keyOnlyUser(['auditor']);
      // the attacker's copy signs in first, moving the counter ahead of the genuine key
      const copy = key.clone(50);
      const login = await http().post('/v1/auth/login').send({ username: user.username, password: user.password }).expect(401);
      const stolen = await http().post('/v1/auth/login').send({ username: user.username, password: user.password, assertion: copy.assert(login.body.webauthn.options) }).expect(200);
      const attacker = bearer(stolen.body.accessToken);
      await http().get('/v1/audit-events').set('Authorization', attacker).expect(200);
      // the genuine key's next use presents a lower counter: the key is flagged and the admins alerted ...
      await patchMe(auth, await assertionFor(auth, key, 'PATCH', '/v1/me', {})).expect(401);
      expect((await credentialsOf(user.id)).map((c) => c.flagged)).toEqual([true]);
      // ... but the session the copy opened still reads the audit trail
      expect((await http().get('/v1/audit-events').set('Authorization', attacker)).status).toBe(401);
    });
  });

  // ---- factors added or removed ------------------------------------------------------------------------------------

  describe('adding and removing factors', () => {
    it('FINDING 2: removing your last usable key is allowed when the other one is flagged: the user is locked out', async () => {
      const { user, key, keyId, auth } = await keyOnlyUser(['auditor']);
      const spare = new SoftAuthenticator();
      const started = await http().post('/v1/me/webauthn/registrations').set('Authorization', auth).set('X-MFA-Assertion', await assertionFor(auth, key, 'POST', '/v1/me/webauthn/registrations')).expect(200);
      const spareId = (await http().post('/v1/me/webauthn/registrations/confirm').set('Authorization', auth).send({ challengeId: started.body.challengeId, name: 'spare', response: spare.register(started.body.options) }).expect(200)).body.credential.id;
      // the spare is flagged (its copy showed up)
      await patchMe(auth, await assertionFor(auth, spare, 'PATCH', '/v1/me', {})).expect(200);
      await patchMe(auth, await assertionFor(auth, spare.clone(0), 'PATCH', '/v1/me', {})).expect(401);
      expect(await credentialsOf(user.id)).toEqual([{ id: keyId, flagged: false }, { id: spareId, flagged: true }]);
      // (a suspected clone may end the sessions: sign in again with the good key)
      const login = await http().post('/v1/auth/login').send({ username: user.username, password: user.password }).expect(401);
      const fresh = bearer((await http().post('/v1/auth/login').send({ username: user.username, password: user.password, assertion: key.assert(login.body.webauthn.options) }).expect(200)).body.accessToken);
      // the only usable factor: removing it must be refused like the last factor
      const path = `/v1/me/webauthn/credentials/${keyId}`;
      const removed = await http().delete(path).set('Authorization', fresh).set('X-MFA-Assertion', await assertionFor(fresh, key, 'DELETE', path));
      expect(removed.status).toBe(409);
      expect(removed.body.code).toBe('LAST_FACTOR');
    });

    it('a stolen session adds no key and no TOTP without a step-up (the start routes)', async () => {
      const { auth } = await keyOnlyUser(['auditor']);
      expect((await http().post('/v1/me/webauthn/registrations').set('Authorization', auth).expect(401)).body.code).toBe('MFA_REQUIRED');
      expect((await http().post('/v1/me/mfa/totp').set('Authorization', auth).expect(401)).body.code).toBe('MFA_REQUIRED');
    });

    it('FINDING 3: a TOTP seed started before the first key was registered is confirmed afterwards without a step-up', async () => {
      const user = await vault.createUser(['auditor'], { enroll: false });
      // while the account had no factor (the password alone opened a session), a TOTP enrollment was started ...
      const seed = (await http().post('/v1/me/mfa/totp').set('Authorization', user.auth).expect(200)).body.secret as string;
      // ... then the user registered a key as the first factor: every earlier session ended
      const key = new SoftAuthenticator();
      const first = await register(user.auth, key, 'desk key');
      expect(first.status).toBe(200);
      const session = bearer(first.body.newSession.accessToken);
      // a session of the key-only user (no step-up) confirms the old seed: a second factor the key never approved
      const code = totpAt(seed, vault.clock.now().getTime());
      const confirmed = await http().post('/v1/me/mfa/totp/confirm').set('Authorization', session).send({ code });
      expect(confirmed.status).not.toBe(200);
      expect((await http().get('/v1/me').set('Authorization', session)).body.mfaMethods).toEqual(['webauthn']);
    });

    it('FINDING 4: a registration challenge issued before the first factor is confirmed after TOTP enrollment without a step-up', async () => {
      const user = await vault.createUser(['auditor'], { enroll: false });
      // no factor yet: the registration start needs no step-up
      const started = await http().post('/v1/me/webauthn/registrations').set('Authorization', user.auth).expect(200);
      // the user enrolls TOTP (every earlier session ends; the answer carries a fresh one)
      const seed = (await http().post('/v1/me/mfa/totp').set('Authorization', user.auth).expect(200)).body.secret as string;
      const enrolled = await http().post('/v1/me/mfa/totp/confirm').set('Authorization', user.auth).send({ code: totpAt(seed, vault.clock.now().getTime()) }).expect(200);
      const session = bearer(enrolled.body.accessToken);
      // the challenge made for a user without factor now adds a key to a user with TOTP, with no step-up
      const added = await http().post('/v1/me/webauthn/registrations/confirm').set('Authorization', session).send({ challengeId: started.body.challengeId, name: 'sneaked in', response: new SoftAuthenticator().register(started.body.options) });
      expect(added.status).not.toBe(200);
      expect(await credentialsOf(user.id)).toEqual([]);
    });

    it('one registration challenge confirmed 20 times in parallel: one key; two first-factor registrations in parallel: one first factor, the other refused', async () => {
      const { user, key, auth } = await keyOnlyUser(['auditor']);
      const started = await http().post('/v1/me/webauthn/registrations').set('Authorization', auth).set('X-MFA-Assertion', await assertionFor(auth, key, 'POST', '/v1/me/webauthn/registrations')).expect(200);
      const answers = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          http().post('/v1/me/webauthn/registrations/confirm').set('Authorization', auth).send({ challengeId: started.body.challengeId, name: `race ${i}`, response: new SoftAuthenticator().register(started.body.options) }),
        ),
      );
      expect(answers.filter((a) => a.status === 200)).toHaveLength(1);
      expect(answers.filter((a) => a.status >= 500)).toEqual([]);
      expect(await credentialsOf(user.id)).toHaveLength(2);

      const fresh = await vault.createUser(['auditor'], { enroll: false });
      const a = await http().post('/v1/me/webauthn/registrations').set('Authorization', fresh.auth).expect(200);
      const b = await http().post('/v1/me/webauthn/registrations').set('Authorization', fresh.auth).expect(200);
      const both = await Promise.all(
        [a, b].map((st, i) =>
          http().post('/v1/me/webauthn/registrations/confirm').set('Authorization', fresh.auth).send({ challengeId: st.body.challengeId, name: `first ${i}`, response: new SoftAuthenticator().register(st.body.options) }),
        ),
      );
      // the loser is refused: as a challenge made for a first factor (400), or because the winner ended its session (401)
      expect(both.filter((r) => r.status === 200)).toHaveLength(1);
      expect([400, 401]).toContain(both.find((r) => r.status !== 200)!.status);
      expect(both.find((r) => r.status === 200)!.body.newSession).not.toBeNull();
      expect(await credentialsOf(fresh.id)).toHaveLength(1);
    });

    it('at most 20 keys per user (each is in every challenge), refused with a code, not a 500', async () => {
      const { user, key, auth } = await keyOnlyUser(['auditor']);
      const statuses: number[] = [];
      for (let i = 0; i < 20; i++) {
        const started = await http().post('/v1/me/webauthn/registrations').set('Authorization', auth).set('X-MFA-Assertion', await assertionFor(auth, key, 'POST', '/v1/me/webauthn/registrations')).expect(200);
        const res = await http().post('/v1/me/webauthn/registrations/confirm').set('Authorization', auth).send({ challengeId: started.body.challengeId, name: `spare ${i}`, response: new SoftAuthenticator().register(started.body.options) });
        statuses.push(res.status);
        if (res.status !== 200) expect(res.body.code).toBe('WEBAUTHN_TOO_MANY_KEYS');
      }
      expect(statuses.filter((st) => st === 200)).toHaveLength(19);
      expect(statuses.at(-1)).toBe(409);
      expect(await credentialsOf(user.id)).toHaveLength(20);
    });

    it('the first key registered from a portal session ends the other browser sessions and bearer tokens of the user', async () => {
      const user = await vault.createUser(['auditor'], { enroll: false });
      const other = await browserSignIn(vault, { username: user.username, password: user.password });
      const portal = await browserSignIn(vault, { username: user.username, password: user.password });
      const started = await http().post('/v1/me/webauthn/registrations').set('Cookie', portal.cookie).set('X-CSRF-Token', portal.csrf).expect(200);
      const ok = await http()
        .post('/v1/me/webauthn/registrations/confirm')
        .set('Cookie', portal.cookie)
        .set('X-CSRF-Token', portal.csrf)
        .send({ challengeId: started.body.challengeId, name: 'portal key', response: new SoftAuthenticator().register(started.body.options) })
        .expect(200);
      expect(ok.body.newSession).toMatchObject({ csrfToken: expect.any(String), mfaEnrollmentRequired: false });
      await http().get('/v1/me').set('Cookie', other.cookie).expect(401);
      await http().get('/v1/me').set('Cookie', portal.cookie).expect(401);
      await http().get('/v1/me').set('Authorization', user.auth).expect(401);
    });

    it('the admin MFA reset leaves no key: an old assertion over a new login challenge signs nobody in', async () => {
      const { user, key } = await userWithKey(['operator']);
      // (an admin with a key: resetting a user who has one may need the admin's key)
      const { user: boss, key: bossKey } = await userWithKey(['admin']);
      const reset = `/v1/users/${user.id}/mfa/reset`;
      await http().post(reset).set('Authorization', boss.auth).set('X-MFA-Assertion', await assertionFor(boss.auth, bossKey, 'POST', reset, {})).send({}).expect(204);
      expect(await credentialsOf(user.id)).toEqual([]);
      const login = await http().post('/v1/auth/login').send({ username: user.username, password: user.password, assertion: key.assert({ challenge: randomBytes(32).toString('base64url') }) });
      // no factor any more: the login goes on to enrollment only, never as a key sign-in
      if (login.status === 200) expect(login.body.mfaEnrollmentRequired).toBe(true);
      const logins = await vault.db.query<{ details: { mfa: string | null } }>("SELECT details FROM audit_events WHERE type = 'auth.login' AND subject_id = $1 AND outcome = 'success' ORDER BY id DESC LIMIT 1", [user.id]);
      expect(logins[0].details.mfa).not.toBe('webauthn');
    });
  });

  // ---- policies ----------------------------------------------------------------------------------------------------

  describe('requireWebauthn', () => {
    it("FINDING 5: an account's requireWebauthn is bypassed by the gateway connect: a TOTP code gets an SSH ticket", async () => {
      const { user: op, key } = await userWithKey(['operator']);
      const accountId = await newAccount({ requireWebauthn: true });
      const body = { accountId, justification: 'strong factor only' };
      const co = (await http().post('/v1/checkouts').set('Authorization', op.auth).set('X-MFA-Assertion', await assertionFor(op.auth, key, 'POST', '/v1/checkouts', body)).send(body).expect(201)).body;
      // reveal with a TOTP code is refused ...
      expect((await as(op).post(`/v1/checkouts/${co.id}/reveal`, {}, true).expect(403)).body.code).toBe('WEBAUTHN_REQUIRED');
      // ... the gateway ticket (a live login as the account) is not
      const connect = await as(op).post(`/v1/checkouts/${co.id}/connect`, {}, true);
      await as(op).post(`/v1/checkouts/${co.id}/checkin`).expect(200);
      expect(connect.status).toBe(403);
      expect(connect.body.code).toBe('WEBAUTHN_REQUIRED');
    });
  });

  describe('requireWebauthn downgrade', () => {
    it('a policy change that does not name requireWebauthn keeps it', async () => {
      const accountId = await newAccount({ requireWebauthn: true });
      await as(admin).patch(`/v1/accounts/${accountId}`, { policy: { approvalsRequired: 0 } }, true).expect(200);
      expect((await as(admin).get(`/v1/accounts/${accountId}`).expect(200)).body.policy.requireWebauthn).toBe(true);
    });

    it('FINDING 12: an admin turns requireWebauthn off with a TOTP code: the weaker factor removes the protection meant against it', async () => {
      const accountId = await newAccount({ requireWebauthn: true });
      const res = await as(admin).patch(`/v1/accounts/${accountId}`, { policy: { requireWebauthn: false } }, true);
      expect((await as(admin).get(`/v1/accounts/${accountId}`).expect(200)).body.policy.requireWebauthn).toBe(true);
      expect(res.status).toBe(403);
      expect(res.body.code).toBe('WEBAUTHN_REQUIRED');
    });

    it('FINDING 12: … or deletes the account with a TOTP code (to vault it again without the policy)', async () => {
      const accountId = await newAccount({ requireWebauthn: true });
      const res = await as(admin).delete(`/v1/accounts/${accountId}`, true);
      expect(res.status).toBe(403);
      expect(res.body.code).toBe('WEBAUTHN_REQUIRED');
    });

    it('FINDING 13: a TOTP code mints a security key for a user who has one: a phished code (and session) then passes requireWebauthn', async () => {
      const { user: op } = await userWithKey(['operator']);
      const accountId = await newAccount({ requireWebauthn: true });
      // the attacker: the operator's session and one phished TOTP code, their own authenticator
      const mine = new SoftAuthenticator();
      const started = await http().post('/v1/me/webauthn/registrations').set('Authorization', op.auth).set('X-MFA-Code', await op.code());
      let checkedOut = 0;
      if (started.status === 200) {
        await http().post('/v1/me/webauthn/registrations/confirm').set('Authorization', op.auth).send({ challengeId: started.body.challengeId, name: 'attacker', response: mine.register(started.body.options) }).expect(200);
        const body = { accountId, justification: 'phished' };
        const co = await http().post('/v1/checkouts').set('Authorization', op.auth).set('X-MFA-Assertion', await assertionFor(op.auth, mine, 'POST', '/v1/checkouts', body)).send(body);
        checkedOut = co.status;
        if (co.status === 201) await as(op).post(`/v1/checkouts/${co.body.id}/checkin`).expect(200);
      }
      expect({ start: started.status, code: started.body.code, checkedOut }).toEqual({ start: 403, code: 'WEBAUTHN_REQUIRED', checkedOut: 0 });
    });

    it('FINDING 14: … and two TOTP codes still do it: remove the user\'s key with one, add the attacker\'s with the next', async () => {
      const { user: op, keyId } = await userWithKey(['operator']);
      const accountId = await newAccount({ requireWebauthn: true });
      // the attacker: the operator's session and the TOTP seed (or two phished codes)
      const removed = await as(op).delete(`/v1/me/webauthn/credentials/${keyId}`, true);
      let checkedOut = 0;
      if (removed.status === 204) {
        const mine = new SoftAuthenticator();
        const added = await register(op.auth, mine, 'attacker', await op.code());
        expect(added.status).toBe(200);
        const body = { accountId, justification: 'phished twice' };
        const co = await http().post('/v1/checkouts').set('Authorization', op.auth).set('X-MFA-Assertion', await assertionFor(op.auth, mine, 'POST', '/v1/checkouts', body)).send(body);
        checkedOut = co.status;
        if (co.status === 201) await as(op).post(`/v1/checkouts/${co.body.id}/checkin`).expect(200);
      }
      expect({ removed: removed.status, code: removed.body?.code, checkedOut }).toEqual({ removed: 403, code: 'WEBAUTHN_REQUIRED', checkedOut: 0 });
    });

    it('FINDING 14: … an admin\'s code removes an operator\'s key (admin route), the operator\'s code adds the attacker\'s', async () => {
      const { user: op, keyId } = await userWithKey(['operator']);
      await userWithKey(['admin']).then(async ({ user: boss }) => {
        const removed = await as(boss).delete(`/v1/users/${op.id}/webauthn/${keyId}`, true);
        expect({ status: removed.status, code: removed.body?.code }).toEqual({ status: 403, code: 'WEBAUTHN_REQUIRED' });
      });
      expect((await credentialsOf(op.id)).map((c) => c.id)).toEqual([keyId]);
    });

    it('FINDING 14: … an admin removes their own key through the admin route with a code, adds their own, and lowers the policy', async () => {
      const { user: boss, keyId } = await userWithKey(['admin']);
      const removed = await as(boss).delete(`/v1/users/${boss.id}/webauthn/${keyId}`, true);
      expect(removed.status).not.toBe(204);
      expect((await credentialsOf(boss.id)).map((c) => c.id)).toEqual([keyId]);
    });

    it('documented limit (F15, lead: a compromised admin can create people): an admin\'s code makes an operator who enrols a first key and checks out a requireWebauthn account — every step audited with who did it', async () => {
      const accountId = await newAccount({ requireWebauthn: true });
      const username = `x${randomBytes(5).toString('hex')}`;
      const password = `pw-${randomBytes(12).toString('hex')}`;
      const created = (await as(admin).post('/v1/users', { username, password, roles: ['operator'] }, true).expect(201)).body;
      const login = await http().post('/v1/auth/login').send({ username, password }).expect(200);
      const mine = new SoftAuthenticator();
      const first = await register(bearer(login.body.accessToken), mine, 'new key');
      const auth = bearer(first.body.newSession.accessToken);
      const body = { accountId, justification: 'a new operator' };
      const co = (await http().post('/v1/checkouts').set('Authorization', auth).set('X-MFA-Assertion', await assertionFor(auth, mine, 'POST', '/v1/checkouts', body)).send(body).expect(201)).body;
      await http().post(`/v1/checkouts/${co.id}/checkin`).set('Authorization', auth).expect(200);
      const trail = await vault.db.query<{ type: string; actor_id: string | null; details: Record<string, unknown> }>(
        "SELECT type, actor_id, details FROM audit_events WHERE subject_id = $1 AND type IN ('user.created', 'webauthn.registered') ORDER BY id",
        [created.id],
      );
      expect(trail).toEqual([
        { type: 'user.created', actor_id: admin.id, details: expect.objectContaining({ roles: ['operator'] }) },
        { type: 'webauthn.registered', actor_id: created.id, details: expect.objectContaining({ firstFactor: true }) },
      ]);
    });
  });

  // ---- throttle ----------------------------------------------------------------------------------------------------

  describe('throttle', () => {
    it('FINDING 8: signing in with a key leaves the password attempt counted: the 11th key sign-in within 15 minutes is throttled', async () => {
      const { user, key } = await userWithKey(['operator']);
      const statuses: number[] = [];
      for (let i = 0; i < 12; i++) {
        const first = await http().post('/v1/auth/login').send({ username: user.username, password: user.password });
        if (first.status !== 401 || !first.body.webauthn) {
          statuses.push(first.status);
          continue;
        }
        const ok = await http().post('/v1/auth/login').send({ username: user.username, password: user.password, assertion: key.assert(first.body.webauthn.options) });
        statuses.push(ok.status);
      }
      expect(statuses).toEqual(Array.from({ length: 12 }, () => 200));
    });

    it('300 parallel wrong assertions: at most 10 evaluated, the rest 429; the genuine key still works afterwards (another window)', async () => {
      const { user, key } = await userWithKey(['operator']);
      const wrong = new SoftAuthenticator({}, undefined, key.credentialId); // the right credential id, another private key
      const challenge = await challengeFor(user.auth, 'PATCH', '/v1/me', {});
      const header = SoftAuthenticator.header(wrong.assert(challenge.options));
      const failedBefore = (await vault.db.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_events WHERE type = 'mfa.failed' AND subject_id = $1", [user.id]))[0].n;
      const answers = await Promise.all(Array.from({ length: 300 }, () => patchMe(user.auth, header)));
      const statuses = answers.map((a) => a.status);
      expect(statuses.filter((s) => s !== 401 && s !== 429)).toEqual([]);
      expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(10);
      const failedAfter = (await vault.db.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_events WHERE type = 'mfa.failed' AND subject_id = $1", [user.id]))[0].n;
      expect(failedAfter - failedBefore).toBeLessThanOrEqual(10);
      expect((await credentialsOf(user.id))[0].flagged).toBe(false);
      await resetThrottle();
      await patchMe(user.auth, SoftAuthenticator.header(key.assert(challenge.options))).expect(200);
    }, 120_000);

    it('300 parallel sign-ins with the right password and a wrong assertion: limited like wrong codes, no token', async () => {
      const { user, key } = await userWithKey(['operator']);
      const login = await http().post('/v1/auth/login').send({ username: user.username, password: user.password }).expect(401);
      const wrong = new SoftAuthenticator({}, undefined, key.credentialId);
      const assertion = wrong.assert(login.body.webauthn.options);
      const answers = await Promise.all(Array.from({ length: 300 }, () => http().post('/v1/auth/login').send({ username: user.username, password: user.password, assertion })));
      const statuses = answers.map((a) => a.status);
      expect(statuses.filter((s) => s !== 401 && s !== 429)).toEqual([]);
      expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(10);
      expect(answers.some((a) => a.body.accessToken)).toBe(false);
      const [{ n }] = await vault.db.query<{ n: number }>('SELECT count(*)::int AS n FROM webauthn_challenges WHERE user_id = $1', [user.id]);
      expect(n).toBeLessThanOrEqual(50);
    }, 120_000);
  });

  // ---- bad input ---------------------------------------------------------------------------------------------------

  describe('malformed input is a 4xx with a code, never a 500', () => {
    it('X-MFA-Assertion: broken base64, JSON, client data, authenticator data and signatures', async () => {
      const { user, key } = await userWithKey(['operator']);
      const c = await challengeFor(user.auth, 'PATCH', '/v1/me', {});
      const good = key.assert(c.options);
      const r = good.response as Record<string, string>;
      const b64 = (s: string) => Buffer.from(s).toString('base64url');
      const variants: unknown[] = [
        { ...good, response: { ...r, clientDataJSON: b64('null') } },
        { ...good, response: { ...r, clientDataJSON: b64('42') } },
        { ...good, response: { ...r, clientDataJSON: b64('{"challenge":{"x":1}}') } },
        { ...good, response: { ...r, clientDataJSON: b64('\u0000\uffff') } },
        { ...good, response: { ...r, authenticatorData: 'AA' } },
        { ...good, response: { ...r, signature: 'AA' } },
        { ...good, id: 'A'.repeat(1400), rawId: 'A'.repeat(1400) },
        { ...good, rawId: 'other' },
        { ...good, response: { ...r, userHandle: 'AA' } },
        { ...good, response: null },
        { ...good, type: 'other' },
      ];
      const seen: string[] = [];
      for (const v of variants) {
        const res = await patchMe(user.auth, SoftAuthenticator.header(v as Record<string, unknown>));
        seen.push(`${res.status} ${res.body.code}`);
        await resetThrottle();
      }
      expect(seen).toEqual(variants.map(() => '401 MFA_INVALID'));
      for (const raw of ['', '=', 'e30', b64('"x"'), b64('true'), b64('{'), 'A'.repeat(20_000)]) {
        const res = await patchMe(user.auth, raw);
        expect(res.status).toBeGreaterThanOrEqual(400);
        expect(res.status).toBeLessThan(500);
      }
      // the good one was never used by the refusals
      await patchMe(user.auth, SoftAuthenticator.header(good)).expect(200);
    });

    it('FINDING 6: a deeply nested body with an X-MFA-Assertion on any step-up route is a 500 (the digest recurses before validation)', async () => {
      const { user } = await userWithKey(['operator']);
      const depth = 20_000;
      const body = `{"email":${'['.repeat(depth)}${']'.repeat(depth)}}`;
      const res = await http().patch('/v1/me').set('Authorization', user.auth).set('X-MFA-Assertion', Buffer.from('{}').toString('base64url')).set('Content-Type', 'application/json').send(body);
      expect(res.status).toBeLessThan(500);
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(typeof res.body.code).toBe('string');
    });

    it('registration answers: broken CBOR, other attestation formats with junk, a CBOR nesting bomb, wrong types: 400 with a code', async () => {
      const user = await vault.createUser(['auditor'], { enroll: false });
      const cbor = (m: Map<string, unknown>) => Buffer.from(isoCBOR.encode(m as never)).toString('base64url');
      const withAttestation = (attestationObject: string) => (o: { challenge: string }) => {
        const r = new SoftAuthenticator().register(o);
        return { ...r, response: { ...(r.response as object), attestationObject } };
      };
      const goodAuthData = (o: { challenge: string }) => {
        const r = new SoftAuthenticator().register(o);
        const decoded = isoCBOR.decodeFirst<Map<string, unknown>>(Buffer.from((r.response as { attestationObject: string }).attestationObject, 'base64url'));
        return decoded.get('authData') as Uint8Array;
      };
      const fmt = (name: string, attStmt: Map<string, unknown>) => (o: { challenge: string }) =>
        withAttestation(cbor(new Map<string, unknown>([['fmt', name], ['attStmt', attStmt], ['authData', goodAuthData(o)]])))(o);
      const bomb = Buffer.concat([Buffer.alloc(30_000, 0x81), Buffer.from([0x00])]).toString('base64url');
      const tries: Array<[string, (o: { challenge: string }) => unknown]> = [
        ['garbage', withAttestation(Buffer.from('garbage').toString('base64url'))],
        ['authData text', withAttestation(cbor(new Map<string, unknown>([['fmt', 'none'], ['attStmt', new Map()], ['authData', 'text']])))],
        ['authData truncated', withAttestation(cbor(new Map<string, unknown>([['fmt', 'none'], ['attStmt', new Map()], ['authData', new Uint8Array(37).fill(0x45)]])))],
        ['packed junk', fmt('packed', new Map<string, unknown>([['alg', -7], ['sig', new Uint8Array(10)]]))],
        ['fido-u2f junk', fmt('fido-u2f', new Map<string, unknown>([['sig', new Uint8Array(10)], ['x5c', [new Uint8Array(10)]]]))],
        ['tpm junk', fmt('tpm', new Map<string, unknown>([['ver', '2.0'], ['alg', -7]]))],
        ['safetynet junk', fmt('android-safetynet', new Map<string, unknown>([['ver', '1'], ['response', new Uint8Array(Buffer.from('a.b.c'))]]))],
        ['apple junk', fmt('apple', new Map<string, unknown>([['x5c', [new Uint8Array(10)]]]))],
        ['unknown fmt', fmt('evil', new Map())],
        ['CBOR nesting bomb', withAttestation(bomb)],
        ['id a number', (o) => ({ ...new SoftAuthenticator().register(o), id: 123 })],
        ['response a string', (o) => ({ ...new SoftAuthenticator().register(o), response: 'x' })],
        ['client data a number', (o) => {
          const r = new SoftAuthenticator().register(o);
          return { ...r, response: { ...(r.response as object), clientDataJSON: Buffer.from('42').toString('base64url') } };
        }],
      ];
      const seen: Record<string, string> = {};
      for (const [what, make] of tries) {
        const started = await http().post('/v1/me/webauthn/registrations').set('Authorization', user.auth).expect(200);
        const res = await http().post('/v1/me/webauthn/registrations/confirm').set('Authorization', user.auth).send({ challengeId: started.body.challengeId, name: what, response: make(started.body.options) });
        seen[what] = `${res.status} ${typeof res.body.code === 'string' ? 'coded' : 'no code'}`;
      }
      expect(seen).toEqual(Object.fromEntries(tries.map(([what]) => [what, '400 coded'])));
      expect(await credentialsOf(user.id)).toEqual([]);
    });

    it('FINDING 7: registration answers a 500 for a credential id the table refuses (too short, too long) and for transports that are no list', async () => {
      const user = await vault.createUser(['auditor'], { enroll: false });
      const tries: Array<[string, (o: { challenge: string }) => Record<string, unknown>]> = [
        ['4-byte credential id', (o) => new SoftAuthenticator({}, undefined, randomBytes(4)).register(o)],
        ['1100-byte credential id', (o) => new SoftAuthenticator({}, undefined, randomBytes(1100)).register(o)],
        [
          'transports a string',
          (o) => {
            const r = new SoftAuthenticator().register(o);
            return { ...r, response: { ...(r.response as object), transports: 'usb' } };
          },
        ],
        [
          'transports a number',
          (o) => {
            const r = new SoftAuthenticator().register(o);
            return { ...r, response: { ...(r.response as object), transports: 5 } };
          },
        ],
      ];
      const answers: Record<string, number> = {};
      for (const [what, make] of tries) {
        const started = await http().post('/v1/me/webauthn/registrations').set('Authorization', user.auth).expect(200);
        const res = await http().post('/v1/me/webauthn/registrations/confirm').set('Authorization', user.auth).send({ challengeId: started.body.challengeId, name: what, response: make(started.body.options) });
        answers[what] = res.status;
      }
      expect(answers).toEqual({ '4-byte credential id': 400, '1100-byte credential id': 400, 'transports a string': 400, 'transports a number': 400 });
    });
  });

  // ---- secrets -----------------------------------------------------------------------------------------------------

  describe('what the audit trail and the logs hold', () => {
    it('FINDING 11: a step-up binding is a plain SHA-256 of the body: a new user\'s password (or an account\'s) can be checked offline from the challenge table', async () => {
      const { user: boss, key } = await userWithKey(['admin']);
      const body = { username: `u${randomBytes(4).toString('hex')}`, password: 'Summer2026!!', roles: ['operator'] };
      const c = await challengeFor(boss.auth, 'POST', '/v1/users', body);
      await http().post('/v1/users').set('Authorization', boss.auth).set('X-MFA-Assertion', SoftAuthenticator.header(key.assert(c.options))).send(body).expect(201);
      // the password sent to the challenge endpoint is in no log line and no audit event
      expect(logLines.filter((l) => l.includes('Summer2026!!'))).toEqual([]);
      expect(JSON.stringify(await vault.db.query('SELECT details FROM audit_events WHERE actor_id = $1', [boss.id]))).not.toContain('Summer2026!!');
      const [row] = await vault.db.query<{ binding: string }>('SELECT binding FROM webauthn_challenges WHERE id = $1', [c.challengeId]);
      // what a reader of the database (a backup) can compute for each guess, at SHA-256 speed — the password itself is
      // kept only as an Argon2 hash, an account's only encrypted (INVARIANT 1)
      const guess = (password: string) => createHash('sha256').update(canonicalize({ method: 'POST', path: '/v1/users', body: { ...body, password } })!, 'utf8').digest('hex');
      expect(row.binding).not.toBe(guess('Summer2026!!'));
    });

    it('no raw credential id, public key or assertion in any audit event, notification or log line', async () => {
      const keys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const key = new SoftAuthenticator({}, keys);
      const { user } = await userWithKey(['operator'], key);
      const header = await assertionFor(user.auth, key, 'PATCH', '/v1/me', {});
      await patchMe(user.auth, header).expect(200);
      await patchMe(user.auth, header).expect(401); // a replay, audited
      await patchMe(user.auth, await assertionFor(user.auth, key.clone(0), 'PATCH', '/v1/me', {})).expect(401); // a clone, alerted
      const jwk = keys.publicKey.export({ format: 'jwk' });
      const forbidden = [key.id, key.credentialId.toString('hex'), jwk.x as string, jwk.y as string, header.slice(0, 40)];
      const audit = JSON.stringify(await vault.db.query('SELECT type, details FROM audit_events WHERE subject_id = $1 OR actor_id = $1', [user.id]));
      const notes = JSON.stringify(await vault.db.query('SELECT * FROM notification_events WHERE subject_id = $1', [user.id]));
      expect(audit).toContain('webauthn.clone_suspected');
      for (const s of forbidden) {
        expect(audit).not.toContain(s);
        expect(notes).not.toContain(s);
        expect(logLines.filter((l) => l.includes(s))).toEqual([]);
      }
    });
  });
});

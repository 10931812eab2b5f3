import { randomUUID } from 'node:crypto';
import { base32Decode, totpAt } from '../support/totp';
import { startTestVault, TestUser, TestVault } from '../support/vault';

/** Step-up endpoint for these tests: the MFA guard runs before the handler, whose dummy id then answers 404. */
const stepUpPath = () => `/v1/users/${randomUUID()}/mfa/reset`;

describe('TOTP enrollment, login second factor and step-up MFA (e2e, real PostgreSQL)', () => {
  let vault: TestVault;
  let admin: TestUser;

  const stepUp = (user: TestUser, code?: string) => {
    const req = vault.http().post(stepUpPath()).set('Authorization', user.auth);
    return code === undefined ? req : req.set('X-MFA-Code', code);
  };
  const resetThrottle = () => vault.db.query('DELETE FROM auth_throttle');
  const lastStep = async (id: string) => Number((await vault.db.query<{ s: string }>('SELECT mfa_last_step::text AS s FROM users WHERE id = $1', [id]))[0].s);
  const codeAtStep = (user: TestUser, step: number) => totpAt(user.secret, step * 30_000);
  const currentStep = () => Math.floor(vault.clock.now().getTime() / 30_000);

  beforeAll(async () => {
    vault = await startTestVault();
    admin = await vault.admin();
  });
  afterAll(() => vault.close());
  beforeEach(() => resetThrottle());

  describe('enrollment', () => {
    it('lets an unenrolled user do nothing but /me, enroll and confirm', async () => {
      const u = await vault.createUser(['operator', 'auditor'], { enroll: false });
      expect((await vault.http().get('/v1/me').set('Authorization', u.auth).expect(200)).body.mfaEnrolled).toBe(false);
      for (const [method, path] of [['get', '/v1/targets'], ['get', '/v1/accounts'], ['get', '/v1/audit-events']] as const) {
        const res = await vault.http()[method](path).set('Authorization', u.auth).expect(403);
        expect(res.body.code).toBe('MFA_ENROLLMENT_REQUIRED');
      }
    });

    it('returns a base32 seed and an otpauth URI, stores the seed only encrypted, and confirms with a valid code', async () => {
      const u = await vault.createUser(['auditor'], { enroll: false });
      const started = await vault.http().post('/v1/me/mfa/totp').set('Authorization', u.auth).expect(200);
      const { secret, otpauthUri } = started.body as { secret: string; otpauthUri: string };
      expect(secret).toMatch(/^[A-Z2-7]{32}$/);
      expect(base32Decode(secret)).toHaveLength(20);
      expect(otpauthUri).toBe(`otpauth://totp/pam-vault:${u.username}?secret=${secret}&issuer=pam-vault`);
      const [row] = await vault.db.query<{ mfa_pending_secret: Buffer; mfa_secret: Buffer | null }>('SELECT mfa_pending_secret, mfa_secret FROM users WHERE id = $1', [u.id]);
      expect(row.mfa_secret).toBeNull();
      expect(row.mfa_pending_secret.toString('latin1')).not.toContain(secret);

      const wrong = await vault.http().post('/v1/me/mfa/totp/confirm').set('Authorization', u.auth).send({ code: '000000' }).expect(401);
      expect(wrong.body.code).toBe('MFA_INVALID');
      const ok = await vault.http().post('/v1/me/mfa/totp/confirm').set('Authorization', u.auth).send({ code: totpAt(secret, vault.clock.now().getTime()) }).expect(200);
      expect(ok.body).toEqual({ mfaEnrolled: true, accessToken: expect.stringMatching(/^pvt_/), expiresAt: expect.any(String) });
      const [after] = await vault.db.query<{ mfa_secret: Buffer; mfa_pending_secret: Buffer | null }>('SELECT mfa_secret, mfa_pending_secret FROM users WHERE id = $1', [u.id]);
      expect(after.mfa_pending_secret).toBeNull();
      expect(after.mfa_secret.toString('latin1')).not.toContain(secret);
      // the enrolling token has ended; the fresh one works, and enrolling again is refused
      expect((await vault.http().get('/v1/me').set('Authorization', u.auth).expect(401)).body.code).toBe('UNAUTHENTICATED');
      const fresh = `Bearer ${ok.body.accessToken}`;
      await vault.http().get('/v1/audit-events').set('Authorization', fresh).expect(200);
      expect((await vault.http().post('/v1/me/mfa/totp').set('Authorization', fresh).expect(409)).body.code).toBe('MFA_ALREADY_ENROLLED');
    });

    it('ends every token issued before enrollment: none of them becomes a full session', async () => {
      const u = await vault.createUser(['auditor'], { enroll: false });
      // a second password-only token, as a thief of the password (or of a token) would hold
      const stolen = `Bearer ${(await vault.http().post('/v1/auth/login').send({ username: u.username, password: u.password }).expect(200)).body.accessToken}`;
      await vault.http().get('/v1/me').set('Authorization', stolen).expect(200);
      const { secret } = (await vault.http().post('/v1/me/mfa/totp').set('Authorization', u.auth).expect(200)).body as { secret: string };
      const ok = await vault.http().post('/v1/me/mfa/totp/confirm').set('Authorization', u.auth).send({ code: totpAt(secret, vault.clock.now().getTime()) }).expect(200);
      for (const old of [stolen, u.auth]) {
        expect((await vault.http().get('/v1/audit-events').set('Authorization', old).expect(401)).body.code).toBe('UNAUTHENTICATED');
        expect((await vault.http().get('/v1/me').set('Authorization', old).expect(401)).body.code).toBe('UNAUTHENTICATED');
      }
      await vault.http().get('/v1/audit-events').set('Authorization', `Bearer ${ok.body.accessToken}`).expect(200);
      const live = await vault.db.query<{ n: number }>('SELECT count(*)::int AS n FROM access_tokens WHERE user_id = $1 AND revoked_at IS NULL', [u.id]);
      expect(live).toEqual([{ n: 1 }]);
    });

    it('a login racing an enrollment never yields a password-only token that outlives it', async () => {
      const u = await vault.createUser(['auditor'], { enroll: false });
      const { secret } = (await vault.http().post('/v1/me/mfa/totp').set('Authorization', u.auth).expect(200)).body as { secret: string };
      const logins = Array.from({ length: 8 }, () => vault.http().post('/v1/auth/login').send({ username: u.username, password: u.password }));
      const confirm = vault.http().post('/v1/me/mfa/totp/confirm').set('Authorization', u.auth).send({ code: totpAt(secret, vault.clock.now().getTime()) });
      const [confirmed, ...answers] = await Promise.all([confirm, ...logins]);
      expect(confirmed.status).toBe(200);
      for (const a of answers) {
        expect([200, 401]).toContain(a.status);
        // a token from before the enrollment was ended by it; one after it was refused (MFA_REQUIRED)
        if (a.status === 200) await vault.http().get('/v1/audit-events').set('Authorization', `Bearer ${a.body.accessToken}`).expect(401);
        else expect(a.body.code).toBe('MFA_REQUIRED');
      }
    });

    it('refuses confirm before enrollment started', async () => {
      const u = await vault.createUser(['auditor'], { enroll: false });
      const res = await vault.http().post('/v1/me/mfa/totp/confirm').set('Authorization', u.auth).send({ code: '123456' }).expect(409);
      expect(res.body.code).toBe('MFA_ENROLLMENT_NOT_STARTED');
    });
  });

  describe('login', () => {
    it('needs the code once enrolled: missing, wrong and right', async () => {
      const u = await vault.createUser(['operator']);
      const login = (code?: string) => vault.http().post('/v1/auth/login').send({ username: u.username, password: u.password, ...(code ? { code } : {}) });
      expect((await login().expect(401)).body.code).toBe('MFA_REQUIRED');
      expect((await login('000000').expect(401)).body.code).toBe('MFA_INVALID');
      const ok = await login(await u.code()).expect(200);
      expect(ok.body.mfaEnrollmentRequired).toBe(false);
    });
  });

  describe('step-up (X-MFA-Code)', () => {
    it('asks for the code, refuses a wrong one, accepts a fresh one', async () => {
      const u = await vault.createUser(['admin']);
      expect((await stepUp(u).expect(401)).body.code).toBe('MFA_REQUIRED');
      expect((await stepUp(u, '12345').expect(401)).body.code).toBe('MFA_INVALID');
      expect((await stepUp(u, '000000').expect(401)).body.code).toBe('MFA_INVALID');
      expect((await stepUp(u, await u.code()).expect(404)).body.code).toBe('NOT_FOUND'); // passed the MFA guard
    });

    it('burns the step: the same code and older steps are refused with MFA_REPLAYED and the time of the next code', async () => {
      const u = await vault.createUser(['admin']);
      const code = await u.code();
      await stepUp(u, code).expect(404);
      const replay = await stepUp(u, code).expect(401);
      expect(replay.body).toMatchObject({ code: 'MFA_REPLAYED', nextCodeAt: expect.any(String) });
      const burned = await lastStep(u.id);
      expect(new Date(replay.body.nextCodeAt).getTime()).toBe((burned + 1) * 30_000);
      // the previous step is inside the drift window but older than the burned one
      expect((await stepUp(u, codeAtStep(u, burned - 1)).expect(401)).body.code).toBe('MFA_REPLAYED');
      // a code used at login cannot be used again for a step-up
      const loginCode = await u.code();
      await vault.http().post('/v1/auth/login').send({ username: u.username, password: u.password, code: loginCode }).expect(200);
      expect((await stepUp(u, loginCode).expect(401)).body.code).toBe('MFA_REPLAYED');
    });

    it('accepts one step of drift each way, not two', async () => {
      const u = await vault.createUser(['admin']);
      await u.code(); // moves the clock past the enrollment step…
      vault.clock.advance(60_000); // …and far enough that the step before now is unused too
      const now = currentStep();
      expect(now - 1).toBeGreaterThan(await lastStep(u.id));
      expect((await stepUp(u, codeAtStep(u, now + 2)).expect(401)).body.code).toBe('MFA_INVALID');
      expect((await stepUp(u, codeAtStep(u, now - 2)).expect(401)).body.code).toBe('MFA_INVALID');
      await stepUp(u, codeAtStep(u, now - 1)).expect(404);
      await stepUp(u, codeAtStep(u, now + 1)).expect(404);
      // the future step is burned now, so the present one is too
      expect((await stepUp(u, codeAtStep(u, now)).expect(401)).body.code).toBe('MFA_REPLAYED');
    });

    it('gives exactly one success to many concurrent requests with one code', async () => {
      const u = await vault.createUser(['admin']);
      const code = await u.code();
      // (10: what one address may have in evaluation at once; more answer 429 while these are being checked)
      const results = await Promise.all(Array.from({ length: 10 }, () => stepUp(u, code)));
      const statuses = results.map((r) => r.status).sort();
      expect(statuses.filter((s) => s === 404)).toHaveLength(1);
      expect(results.filter((r) => r.status === 401).every((r) => r.body.code === 'MFA_REPLAYED')).toBe(true);
      expect(statuses.filter((s) => s === 401)).toHaveLength(9);
    });

    it('a request refused by validation (400) burns no code, counts nothing and writes no mfa.verified', async () => {
      const admin2 = await vault.createUser(['admin']);
      const operator = await vault.createUser(['operator']);
      const verified = async (id: string) =>
        (await vault.db.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_events WHERE type = 'mfa.verified' AND actor_id = $1", [id]))[0].n;
      const throttled = async () => (await vault.db.query<{ n: number }>('SELECT coalesce(sum(failures), 0)::int AS n FROM auth_throttle'))[0].n;
      // a malformed path parameter, then a malformed body: each with a valid, unused code
      const code = await admin2.code();
      const step = await lastStep(admin2.id);
      const beforeAdmin = await verified(admin2.id);
      const badParam = await vault.http().post('/v1/users/not-a-uuid/mfa/reset').set('Authorization', admin2.auth).set('X-MFA-Code', code).expect(400);
      expect(badParam.body.code).toBe('VALIDATION_FAILED');
      expect(await lastStep(admin2.id)).toBe(step);
      expect(await verified(admin2.id)).toBe(beforeAdmin);
      expect(await throttled()).toBe(0);
      // the same code still works on a valid request (the guard passed: the dummy id then answers 404)
      await stepUp(admin2, code).expect(404);
      expect(await verified(admin2.id)).toBe(beforeAdmin + 1);

      const opCode = await operator.code();
      const beforeOp = await verified(operator.id);
      for (const body of [{ accountId: 'nope', justification: 'x' }, { accountId: randomUUID(), justification: 'because', unknownField: 1 }, { accountId: [[]] }]) {
        const res = await vault.http().post('/v1/checkouts').set('Authorization', operator.auth).set('X-MFA-Code', opCode).send(body).expect(400);
        expect(res.body.code).toBe('VALIDATION_FAILED');
      }
      expect(await verified(operator.id)).toBe(beforeOp);
      expect(await vault.db.query("SELECT type FROM audit_events WHERE actor_id = $1 AND type = 'mfa.failed'", [operator.id])).toEqual([]);
      expect(await throttled()).toBe(0);
      // a well-formed request with that code passes the MFA check (the account does not exist: 404)
      const ok = await vault.http().post('/v1/checkouts').set('Authorization', operator.auth).set('X-MFA-Code', opCode).send({ accountId: randomUUID(), justification: 'a valid request' });
      expect(ok.body.code).not.toMatch(/^MFA_/);
      expect(await verified(operator.id)).toBe(beforeOp + 1);
    });

    it('refuses service tokens on MFA routes', async () => {
      const created = await vault.http().post('/v1/service-tokens').set('Authorization', admin.auth).set('X-MFA-Code', await admin.code()).send({ name: 'cron', roles: ['scheduler'] }).expect(201);
      const res = await vault.http().post(stepUpPath()).set('Authorization', `Bearer ${created.body.token}`).set('X-MFA-Code', '123456').expect(403);
      expect(res.body.code).toBe('FORBIDDEN');
    });
  });

  describe('throttling (per user and per address, in windows that end)', () => {
    it('locks a user after 10 failed codes, refuses even the right code, and lets them in once the window has passed', async () => {
      const u = await vault.createUser(['admin']);
      for (let i = 0; i < 10; i++) expect((await stepUp(u, '000000').expect(401)).body.code).toBe('MFA_INVALID');
      const locked = await stepUp(u, await u.code()).expect(429);
      expect(locked.body).toMatchObject({ code: 'THROTTLED', retryAfterSeconds: expect.any(Number) });
      expect(locked.body.retryAfterSeconds).toBeGreaterThan(0);
      expect(locked.body.retryAfterSeconds).toBeLessThanOrEqual(15 * 60);
      // the lock is not for ever: once the window has passed, the right code works
      await vault.db.query("UPDATE auth_throttle SET window_start = now() - interval '16 minutes' WHERE key LIKE 'pair:%' OR key LIKE 'addr:%'");
      await stepUp(u, await u.code()).expect(404);
    });

    it('caps a user at 100 failed codes an hour from everywhere, however spread out', async () => {
      const u = await vault.createUser(['admin']);
      await vault.db.query(
        `INSERT INTO auth_throttle (key, failures, window_start) VALUES ($1, 100, now() - interval '50 minutes')
         ON CONFLICT (key) DO UPDATE SET failures = 100, window_start = now() - interval '50 minutes'`,
        [`user:mfa:${u.id}`],
      );
      expect((await stepUp(u, await u.code()).expect(429)).body.code).toBe('THROTTLED');
      await vault.db.query(`UPDATE auth_throttle SET window_start = now() - interval '61 minutes' WHERE key = $1`, [`user:mfa:${u.id}`]);
      await stepUp(u, await u.code()).expect(404);
    });

    it('throttles failed logins per user (known or not) and per address', async () => {
      const u = await vault.createUser(['operator']);
      for (let i = 0; i < 10; i++) await vault.http().post('/v1/auth/login').send({ username: u.username, password: 'wrong-password!' }).expect(401);
      const res = await vault.http().post('/v1/auth/login').send({ username: u.username, password: u.password, code: await u.code() }).expect(429);
      expect(res.body.code).toBe('THROTTLED');
      await resetThrottle();
      // 30 failures for 30 different unknown names from one address lock that address for more unknown names only:
      // a real user there still logs in (nobody at a shared address locks everybody else out)
      for (let i = 0; i < 30; i++) await vault.http().post('/v1/auth/login').send({ username: `nobody${i}`, password: 'whatever-password' }).expect(401);
      expect((await vault.http().post('/v1/auth/login').send({ username: 'nobody-more', password: 'whatever-password' }).expect(429)).body.code).toBe('THROTTLED');
      await vault.http().post('/v1/auth/login').send({ username: u.username, password: u.password, code: await u.code() }).expect(200);
      // and no typed username is stored in the throttle table
      const keys = (await vault.db.query<{ key: string }>('SELECT key FROM auth_throttle')).map((r) => r.key).join(' ');
      expect(keys).not.toMatch(/nobody/);
    });
  });

  describe('admin actions', () => {
    it('disabling a user stops their tokens at once and refuses their login', async () => {
      const u = await vault.createUser(['operator']);
      await vault.http().get('/v1/accounts').set('Authorization', u.auth).expect(200);
      await vault.http().patch(`/v1/users/${u.id}`).set('Authorization', admin.auth).set('X-MFA-Code', await admin.code()).send({ disabled: true }).expect(200);
      expect((await vault.http().get('/v1/accounts').set('Authorization', u.auth).expect(401)).body.code).toBe('UNAUTHENTICATED');
      await vault.http().post('/v1/auth/login').send({ username: u.username, password: u.password, code: await u.code() }).expect(401);
      await vault.http().patch(`/v1/users/${u.id}`).set('Authorization', admin.auth).set('X-MFA-Code', await admin.code()).send({ disabled: false }).expect(200);
      await vault.http().post('/v1/auth/login').send({ username: u.username, password: u.password, code: await u.code() }).expect(200);
    });

    it('role changes apply to existing tokens at once', async () => {
      const u = await vault.createUser(['operator']);
      await vault.http().get('/v1/targets').set('Authorization', u.auth).expect(200);
      await vault.http().patch(`/v1/users/${u.id}`).set('Authorization', admin.auth).set('X-MFA-Code', await admin.code()).send({ roles: ['vendor'] }).expect(200);
      await vault.http().get('/v1/targets').set('Authorization', u.auth).expect(403);
      await vault.http().get('/v1/ephemeral-accounts').set('Authorization', u.auth).expect(200);
    });

    it('resets a user’s MFA only with the admin’s own code; the user must enroll again', async () => {
      const u = await vault.createUser(['operator']);
      const second = (await vault.http().post('/v1/auth/login').send({ username: u.username, password: u.password, code: await u.code() }).expect(200)).body.accessToken;
      const path = `/v1/users/${u.id}/mfa/reset`;
      expect((await vault.http().post(path).set('Authorization', admin.auth).expect(401)).body.code).toBe('MFA_REQUIRED');
      // the user's own code is not the admin's
      expect((await vault.http().post(path).set('Authorization', admin.auth).set('X-MFA-Code', await u.code()).expect(401)).body.code).toMatch(/MFA_INVALID|MFA_REPLAYED/);
      await vault.http().post(path).set('Authorization', admin.auth).set('X-MFA-Code', await admin.code()).expect(204);
      await vault.http().get('/v1/accounts').set('Authorization', u.auth).expect(401); // sessions ended, every one
      await vault.http().get('/v1/me').set('Authorization', `Bearer ${second}`).expect(401);
      expect(await vault.db.query('SELECT id FROM access_tokens WHERE user_id = $1 AND revoked_at IS NULL', [u.id])).toEqual([]);
      const login = await vault.http().post('/v1/auth/login').send({ username: u.username, password: u.password }).expect(200);
      expect(login.body.mfaEnrollmentRequired).toBe(true);
      const events = await vault.db.query<{ type: string; actor_id: string }>("SELECT type, actor_id FROM audit_events WHERE type = 'mfa.reset' AND subject_id = $1", [u.id]);
      expect(events).toEqual([{ type: 'mfa.reset', actor_id: admin.id }]);
    });

    it('never leaves the vault without an enabled admin', async () => {
      // the break-glass admin is never demoted nor disabled (README "Single sign-on → Break glass") …
      const patchAdmin = async (change: object) => (await vault.http().patch(`/v1/users/${admin.id}`).set('Authorization', admin.auth).set('X-MFA-Code', await admin.code()).send(change).expect(409)).body.code;
      expect(await patchAdmin({ roles: ['operator'] })).toBe('BREAK_GLASS_USER');
      expect(await patchAdmin({ disabled: true })).toBe('BREAK_GLASS_USER');
      // … and without it (a vault whose bootstrap admin was disabled before that rule) the last other admin stays one
      const last = await vault.createUser(['admin']);
      const admins = await vault.db.query<{ id: string }>("SELECT id FROM users WHERE 'admin' = ANY (roles) AND NOT disabled AND id NOT IN ($1, $2)", [admin.id, last.id]);
      for (const a of admins) await vault.db.query("UPDATE users SET roles = '{operator}' WHERE id = $1", [a.id]);
      await vault.db.query('UPDATE users SET disabled = true WHERE id = $1', [admin.id]);
      try {
        const patchLast = async (change: object) => (await vault.http().patch(`/v1/users/${last.id}`).set('Authorization', last.auth).set('X-MFA-Code', await last.code()).send(change).expect(409)).body.code;
        expect(await patchLast({ roles: ['operator'] })).toBe('LAST_ADMIN');
        expect(await patchLast({ disabled: true })).toBe('LAST_ADMIN');
      } finally {
        await vault.db.query('UPDATE users SET disabled = false WHERE id = $1', [admin.id]);
      }
    });
  });
});

import { browserSignIn, sessionCookieOf, sessionFrom, TestBrowserSession } from '../support/browser-session';
import { actingAs } from '../support/http';
import { totpAt } from '../support/totp';
import { ADMIN_PASSWORD, startTestVault, TestUser, TestVault } from '../support/vault';

/**
 * Browser sessions of the web portal (issue 15; README "Web portal → Security model") against the real application on
 * the real PostgreSQL: the cookie's flags, the CSRF defence (nothing changes and no MFA code is burned when it fails),
 * idle and absolute timeouts on the test clock, revocation (sign-out, disabled user, enrollment), role changes on the
 * next request, and session fixation. The session and CSRF tokens are recorded for the secret scan.
 */
const IDLE = 600;
const ABSOLUTE = 1800;

describe('browser sessions (e2e, real PostgreSQL)', () => {
  let vault: TestVault;
  let admin: TestUser;
  const logLines: string[] = [];

  beforeAll(async () => {
    vault = await startTestVault({ env: { VAULT_PORTAL_IDLE_SECONDS: String(IDLE), VAULT_PORTAL_SESSION_SECONDS: String(ABSOLUTE) }, logLines });
    admin = await vault.admin();
  });
  afterAll(() => vault.close());

  const asAdmin = () => actingAs(vault, admin);
  const signIn = (user: TestUser, headers?: Record<string, string>) => browserSignIn(vault, { username: user.username, password: user.password, code: user.code }, headers);
  const get = (path: string, s: Pick<TestBrowserSession, 'cookie'>) => vault.http().get(path).set('Cookie', s.cookie);
  const emailOf = async (id: string) => (await vault.db.query<{ email: string | null }>('SELECT email FROM users WHERE id = $1', [id]))[0].email;
  const lastStep = async (id: string) => (await vault.db.query<{ step: string }>('SELECT mfa_last_step::text AS step FROM users WHERE id = $1', [id]))[0].step;

  it('signs in with password and code: an HttpOnly, SameSite=Strict cookie on Path=/, the CSRF token in the body, the session only hashed', async () => {
    const user = await vault.createUser(['operator']);
    const s = await signIn(user);
    expect(s.setCookie).toMatch(/^vault_session=pvb_[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict$/);
    expect(s.setCookie).not.toMatch(/Secure|Domain|Expires|Max-Age/i); // plain http here; ends with the browser
    expect(s.body).toEqual({
      csrfToken: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
      expiresAt: expect.any(String),
      idleTimeoutSeconds: IDLE,
      mfaEnrollmentRequired: false,
      user: { id: user.id, username: user.username, roles: ['operator'], mfaEnrolled: true, mfaMethods: ['totp'], kind: 'user', email: null, mutedNotifications: [] },
    });
    expect(new Date(s.body.expiresAt as string).getTime() - vault.clock.now().getTime()).toBeGreaterThan((ABSOLUTE - 60) * 1000);
    expect(JSON.stringify(s.body)).not.toContain(s.token);
    const rows = await vault.db.query<{ token_hash: Buffer; csrf_hash: Buffer }>("SELECT token_hash, csrf_hash FROM access_tokens WHERE kind = 'browser' AND user_id = $1", [user.id]);
    expect(rows).toHaveLength(1);
    for (const v of [rows[0].token_hash.toString('latin1'), rows[0].csrf_hash.toString('latin1')]) {
      expect(v).not.toContain(s.token);
      expect(v).not.toContain(s.csrf);
    }
    const [ev] = await vault.db.query<{ details: Record<string, unknown> }>("SELECT details FROM audit_events WHERE type = 'auth.login' AND subject_id = $1 ORDER BY id DESC LIMIT 1", [user.id]);
    expect(ev.details).toMatchObject({ mfa: 'totp', session: 'browser' });
    expect((await get('/v1/me', s).expect(200)).body.id).toBe(user.id);
  });

  it('GET /v1/auth/session answers the same CSRF token to a reloaded page; 401 without a session, 404 for a bearer token', async () => {
    const user = await vault.createUser(['approver']);
    const s = await signIn(user);
    const again = await get('/v1/auth/session', s).expect(200);
    expect(again.body).toEqual({ ...s.body, expiresAt: s.body.expiresAt });
    expect(sessionCookieOf(again)).toBeUndefined(); // the same session: no new cookie
    expect((await vault.http().get('/v1/auth/session').expect(401)).body.code).toBe('UNAUTHENTICATED');
    expect((await vault.http().get('/v1/auth/session').set('Authorization', user.auth).expect(404)).body.code).toBe('NOT_FOUND');
  });

  it('never accepts a cookie it did not issue: made-up, bearer-token and duplicated cookies are 401 and the cookie is cleared', async () => {
    const user = await vault.createUser(['operator']);
    const s = await signIn(user);
    const bearer = user.auth.replace(/^Bearer /, '');
    for (const cookie of ['vault_session=pvb_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', `vault_session=${bearer}`, 'vault_session=', `${s.cookie}; ${s.cookie}`, `${s.cookie}; vault_session=pvb_x`]) {
      const res = await vault.http().get('/v1/me').set('Cookie', cookie).expect(401);
      expect(res.body.code).toBe('UNAUTHENTICATED');
      if (cookie !== 'vault_session=') expect(sessionCookieOf(res)?.line).toMatch(/^vault_session=; Path=\/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Strict$/);
    }
    // the __Host- name belongs to HTTPS: on plain http it is not read (nor planted by a sibling subdomain over http)
    await vault.http().get('/v1/me').set('Cookie', `__Host-${s.cookie}`).expect(401);
    await get('/v1/me', s).expect(200);
  });

  it('a sign-in never continues a session: a new id every time, the one the browser had ends, a planted value stays worthless', async () => {
    const user = await vault.createUser(['operator']);
    const first = await signIn(user);
    const second = await signIn(user, { Cookie: first.cookie });
    expect(second.token).not.toBe(first.token);
    expect(second.csrf).not.toBe(first.csrf);
    await get('/v1/me', first).expect(401);
    await get('/v1/me', second).expect(200);
    const planted = 'pvb_ChosenByTheAttackerChosenByTheAttacker000';
    const third = await signIn(user, { Cookie: `vault_session=${planted}` });
    expect(third.token).not.toBe(planted);
    await vault.http().get('/v1/me').set('Cookie', `vault_session=${planted}`).expect(401);
  });

  describe('CSRF', () => {
    let user: TestUser;
    let s: TestBrowserSession;
    beforeAll(async () => {
      user = await vault.createUser(['operator']);
      s = await signIn(user);
    });

    it.each([
      ['no X-CSRF-Token', {}],
      ['a wrong X-CSRF-Token', { 'X-CSRF-Token': 'x'.repeat(43) }],
      ['an empty X-CSRF-Token', { 'X-CSRF-Token': '' }],
      ['the right token from another site (Sec-Fetch-Site: cross-site)', { 'Sec-Fetch-Site': 'cross-site', 'X-CSRF-Token': '<right>' }],
      ['the right token from a sibling subdomain (Sec-Fetch-Site: same-site)', { 'Sec-Fetch-Site': 'same-site', 'X-CSRF-Token': '<right>' }],
    ])('a change by cookie with %s is 403 CSRF_FAILED: nothing changes, the MFA code is not burned', async (_label, headers: Record<string, string>) => {
      const step = await lastStep(user.id);
      const set = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, v === '<right>' ? s.csrf : v]));
      const res = await vault.http().patch('/v1/me').set('Cookie', s.cookie).set(set).set('X-MFA-Code', await user.code()).send({ email: 'csrf@example.com' }).expect(403);
      expect(res.body).toEqual({ statusCode: 403, code: 'CSRF_FAILED', message: expect.any(String) });
      expect(await emailOf(user.id)).toBeNull();
      expect(await lastStep(user.id)).toBe(step);
    });

    it('a cross-site form post (urlencoded, no header) is refused and changes nothing', async () => {
      const before = await vault.db.query('SELECT count(*)::int AS n FROM audit_events');
      const res = await vault.http().post('/v1/me/mfa/totp').set('Cookie', s.cookie).type('form').send('anything=1').expect(403);
      expect(res.body.code).toBe('CSRF_FAILED');
      const sneaky = await vault.http().post('/v1/checkouts').set('Cookie', s.cookie).set('Content-Type', 'text/plain').send('{"accountId":"x"}').expect(403);
      expect(sneaky.body.code).toBe('CSRF_FAILED');
      expect(await vault.db.query('SELECT count(*)::int AS n FROM audit_events')).toEqual(before);
    });

    it('with the right token the change goes through (the code is burned then); GET and HEAD need no token', async () => {
      await vault.http().patch('/v1/me').set('Cookie', s.cookie).set('X-CSRF-Token', s.csrf).set('X-MFA-Code', await user.code()).send({ email: 'csrf-ok@example.com' }).expect(200);
      expect(await emailOf(user.id)).toBe('csrf-ok@example.com');
      await get('/v1/checkouts', s).expect(200);
      await vault.http().head('/v1/me').set('Cookie', s.cookie).expect(200);
    });

    it('a bearer token needs no CSRF token, and wins over a cookie sent with it', async () => {
      await vault.http().patch('/v1/me').set('Authorization', user.auth).set('X-MFA-Code', await user.code()).send({ email: 'bearer@example.com' }).expect(200);
      await vault.http().patch('/v1/me').set('Authorization', user.auth).set('Cookie', s.cookie).set('X-MFA-Code', await user.code()).send({ email: 'both@example.com' }).expect(200);
      expect(await emailOf(user.id)).toBe('both@example.com');
      // a broken bearer header is not rescued by a good cookie
      await vault.http().get('/v1/me').set('Authorization', 'Bearer pvt_nope').set('Cookie', s.cookie).expect(401);
    });

    it('sign-in from another site\'s page is refused (login CSRF), and a form-encoded sign-in is not read', async () => {
      const res = await vault.http().post('/v1/auth/session').set('Sec-Fetch-Site', 'cross-site').send({ username: user.username, password: user.password, code: await user.code() }).expect(403);
      expect(res.body.code).toBe('CSRF_FAILED');
      expect(sessionCookieOf(res)).toBeUndefined();
      const form = await vault.http().post('/v1/auth/session').type('form').send({ username: user.username, password: user.password }).expect(400);
      expect(sessionCookieOf(form)).toBeUndefined();
    });
  });

  describe('timeouts (test clock)', () => {
    it(`ends a session idle for ${IDLE} s; requests keep it alive; passive polling does not`, async () => {
      const user = await vault.createUser(['operator']);
      const s = await signIn(user);
      // twice (IDLE - 60) s, then once more passively: 3 × 540 s stays within the absolute 1800 s
      for (let i = 0; i < 2; i++) {
        vault.clock.advance((IDLE - 60) * 1000);
        await get('/v1/me', s).expect(200);
      }
      vault.clock.advance((IDLE - 60) * 1000);
      await get('/v1/auth/session', s).set('X-Session-Activity', 'passive').expect(200);
      vault.clock.advance(120 * 1000);
      const res = await get('/v1/me', s).expect(401);
      expect(sessionCookieOf(res)?.value).toBe('');
    });

    it("a request another site's page makes (an <img> on a sibling subdomain carries a SameSite=Strict cookie too) is refused, a GET too, and is no activity", async () => {
      const user = await vault.createUser(['operator']);
      const s = await signIn(user);
      vault.clock.advance((IDLE - 60) * 1000);
      for (const site of ['same-site', 'cross-site']) {
        const res = await get('/v1/me', s).set('Sec-Fetch-Site', site).expect(403);
        expect(res.body.code).toBe('CSRF_FAILED');
        expect(sessionCookieOf(res)).toBeUndefined(); // no forced sign-out either
      }
      await get('/v1/me', s).set('Sec-Fetch-Site', 'none').expect(200); // typed into the address bar: the user
      vault.clock.advance((IDLE - 60) * 1000);
      await get('/v1/me', s).set('Sec-Fetch-Site', 'same-origin').expect(200);
      vault.clock.advance((IDLE + 1) * 1000);
      await get('/v1/me', s).expect(401);
    });

    it('a CSRF refusal is logged at warn with the route and why, never the token', async () => {
      const user = await vault.createUser(['operator']);
      const s = await signIn(user);
      const from = logLines.length;
      await vault.http().post('/v1/me/mfa/totp').set('Cookie', s.cookie).set('X-CSRF-Token', 'wrong').expect(403);
      const lines = logLines.slice(from).filter((l) => l.includes('CSRF check refused'));
      expect(lines).toHaveLength(1);
      expect(JSON.parse(lines[0])).toMatchObject({ level: 40, route: 'IdentityController.enroll', method: 'POST', reason: 'wrong_token' });
      expect(lines[0]).not.toContain(s.token);
      expect(lines[0]).not.toContain(s.csrf);
    });

    it(`ends a session ${ABSOLUTE} s after sign-in however busy it is`, async () => {
      const user = await vault.createUser(['operator']);
      const s = await signIn(user);
      const end = new Date(s.body.expiresAt as string).getTime();
      while (vault.clock.now().getTime() + (IDLE / 2) * 1000 < end) {
        vault.clock.advance((IDLE / 2) * 1000);
        await get('/v1/me', s).expect(200);
      }
      vault.clock.advance(end - vault.clock.now().getTime() + 1000);
      await get('/v1/me', s).expect(401);
    });
  });

  describe('revocation', () => {
    it('sign-out ends the session server-side: a copy of the cookie is 401 afterwards; it needs the CSRF token', async () => {
      const user = await vault.createUser(['operator']);
      const s = await signIn(user);
      expect((await vault.http().delete('/v1/auth/session').set('Cookie', s.cookie).expect(403)).body.code).toBe('CSRF_FAILED');
      await get('/v1/me', s).expect(200);
      const out = await vault.http().delete('/v1/auth/session').set('Cookie', s.cookie).set('X-CSRF-Token', s.csrf).expect(204);
      expect(sessionCookieOf(out)?.line).toMatch(/^vault_session=; Path=\/; Expires=Thu, 01 Jan 1970/);
      await get('/v1/me', s).expect(401);
      await vault.http().delete('/v1/auth/session').set('Cookie', s.cookie).set('X-CSRF-Token', s.csrf).expect(401);
      const [ev] = await vault.db.query<{ details: Record<string, unknown> }>("SELECT details FROM audit_events WHERE type = 'auth.logout' AND subject_id = $1", [user.id]);
      expect(ev.details).toMatchObject({ session: 'browser' });
    });

    it("disabling the user ends their open tab's session at its next request; enabling them again does not revive it", async () => {
      const user = await vault.createUser(['operator']);
      const s = await signIn(user);
      await asAdmin().patch(`/v1/users/${user.id}`, { disabled: true }, true).expect(200);
      await get('/v1/me', s).expect(401);
      await asAdmin().patch(`/v1/users/${user.id}`, { disabled: false }, true).expect(200);
      await get('/v1/me', s).expect(401);
    });

    it('a removed role stops working at the next request', async () => {
      const user = await vault.createUser(['operator', 'auditor']);
      const s = await signIn(user);
      await get('/v1/audit-events', s).expect(200);
      await asAdmin().patch(`/v1/users/${user.id}`, { roles: ['operator'] }, true).expect(200);
      expect((await get('/v1/audit-events', s).expect(403)).body.code).toBe('FORBIDDEN');
      expect((await get('/v1/auth/session', s).expect(200)).body.user.roles).toEqual(['operator']);
    });

    it('an admin MFA reset ends the session too', async () => {
      const user = await vault.createUser(['operator']);
      const s = await signIn(user);
      await asAdmin().post(`/v1/users/${user.id}/mfa/reset`, {}, true).expect(204);
      await get('/v1/me', s).expect(401);
    });
  });

  it('TOTP enrollment from the portal: confirm needs the CSRF token (no code burned without it), then a new cookie and CSRF token replace the old ones', async () => {
    const pending = await vault.createUser(['operator'], { enroll: false });
    const s = await browserSignIn(vault, { username: pending.username, password: pending.password });
    expect(s.body).toMatchObject({ mfaEnrollmentRequired: true, user: { mfaEnrolled: false } });
    expect((await get('/v1/checkouts', s).expect(403)).body.code).toBe('MFA_ENROLLMENT_REQUIRED');
    const started = await vault.http().post('/v1/me/mfa/totp').set('Cookie', s.cookie).set('X-CSRF-Token', s.csrf).expect(200);
    const secret = started.body.secret as string;
    vault.clock.advance(30_000);
    const code = totpAt(secret, vault.clock.now().getTime());
    expect((await vault.http().post('/v1/me/mfa/totp/confirm').set('Cookie', s.cookie).send({ code }).expect(403)).body.code).toBe('CSRF_FAILED');
    expect(await lastStep(pending.id)).toBe('0');
    const confirmed = await vault.http().post('/v1/me/mfa/totp/confirm').set('Cookie', s.cookie).set('X-CSRF-Token', s.csrf).send({ code }).expect(200);
    const fresh = sessionFrom(confirmed);
    expect(confirmed.body).toEqual({
      mfaEnrolled: true,
      csrfToken: fresh.csrf,
      expiresAt: expect.any(String),
      idleTimeoutSeconds: IDLE,
      mfaEnrollmentRequired: false,
      user: expect.objectContaining({ id: pending.id, mfaEnrolled: true }),
    });
    expect(confirmed.body).not.toHaveProperty('accessToken');
    expect(fresh.token).not.toBe(s.token);
    expect(fresh.csrf).not.toBe(s.csrf);
    await get('/v1/me', s).expect(401);
    await get('/v1/checkouts', fresh).expect(200);
    // the old CSRF token does not fit the new session
    expect((await vault.http().post('/v1/me/mfa/totp').set('Cookie', fresh.cookie).set('X-CSRF-Token', s.csrf).expect(403)).body.code).toBe('CSRF_FAILED');
    // and the password-only bearer token of that user ended as well
    await vault.http().get('/v1/me').set('Authorization', pending.auth).expect(401);
  });

  it('throttles and audits failed sign-ins together with POST /v1/auth/login', async () => {
    const user = await vault.createUser(['operator']);
    const wrong = { username: user.username, password: 'not-the-password' };
    for (let i = 0; i < 5; i++) await vault.http().post('/v1/auth/login').send(wrong).expect(401);
    for (let i = 0; i < 5; i++) await vault.http().post('/v1/auth/session').send(wrong).expect(401);
    const res = await vault.http().post('/v1/auth/session').send({ username: user.username, password: user.password, code: await user.code() }).expect(429);
    expect(res.body.code).toBe('THROTTLED');
    expect(sessionCookieOf(res)).toBeUndefined();
    const failures = await vault.db.query("SELECT 1 FROM audit_events WHERE type = 'auth.login' AND outcome = 'failure' AND subject_id = $1", [user.id]);
    expect(failures).toHaveLength(10);
  });

  it('a wrong code at sign-in is audited like the login one and sets no cookie', async () => {
    const user = await vault.createUser(['operator']);
    const res = await vault.http().post('/v1/auth/session').send({ username: user.username, password: user.password, code: '000000' }).expect(401);
    expect(['MFA_INVALID', 'MFA_REPLAYED']).toContain(res.body.code);
    expect(sessionCookieOf(res)).toBeUndefined();
    const [ev] = await vault.db.query<{ details: Record<string, unknown> }>("SELECT details FROM audit_events WHERE type = 'mfa.failed' AND subject_id = $1", [user.id]);
    expect(ev.details).toMatchObject({ action: 'login' });
  });

  it('no session or CSRF token in a log line or an audit event', async () => {
    const s = await browserSignIn(vault, { username: 'admin', password: ADMIN_PASSWORD, code: admin.code });
    await get('/v1/me', s).expect(200);
    await vault.http().post('/v1/me/mfa/totp').set('Cookie', s.cookie).expect(403);
    await vault.http().delete('/v1/auth/session').set('Cookie', s.cookie).set('X-CSRF-Token', s.csrf).expect(204);
    await get('/v1/me', s).expect(401);
    expect(logLines.length).toBeGreaterThan(0);
    const audit = JSON.stringify(await vault.db.query('SELECT * FROM audit_events'));
    for (const value of [s.token, s.csrf]) {
      expect(logLines.filter((l) => l.includes(value))).toEqual([]);
      expect(audit).not.toContain(value);
    }
  });
});

import { ADMIN_PASSWORD, startTestVault, TestVault } from '../support/vault';

describe('login and bearer tokens (e2e, real PostgreSQL)', () => {
  let vault: TestVault;

  beforeAll(async () => {
    vault = await startTestVault();
  });
  afterAll(() => vault.close());

  it('creates the bootstrap admin once, with an argon2id hash', async () => {
    const rows = await vault.db.query<{ username: string; roles: string[]; password_hash: string }>('SELECT username, roles, password_hash FROM users');
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ username: 'admin', roles: ['admin'] });
    expect(rows[0].password_hash).toMatch(/^\$argon2id\$/);
    expect(rows[0].password_hash).not.toContain(ADMIN_PASSWORD);
  });

  it('logs the admin in and answers /v1/me', async () => {
    const res = await vault.http().post('/v1/auth/login').send({ username: 'admin', password: ADMIN_PASSWORD }).expect(200);
    expect(res.body).toEqual({ accessToken: expect.stringMatching(/^pvt_/), expiresAt: expect.any(String), mfaEnrollmentRequired: true });
    expect(new Date(res.body.expiresAt).getTime()).toBeGreaterThan(Date.now());
    const me = await vault.http().get('/v1/me').set('Authorization', `Bearer ${res.body.accessToken}`).expect(200);
    expect(me.body).toEqual({ id: expect.any(String), username: 'admin', roles: ['admin'], mfaEnrolled: false, mfaMethods: [], kind: 'user', email: null, mutedNotifications: [] });
  });

  it('stores only a hash of the token', async () => {
    const res = await vault.http().post('/v1/auth/login').send({ username: 'admin', password: ADMIN_PASSWORD }).expect(200);
    const rows = await vault.db.query<{ token_hash: Buffer }>('SELECT token_hash FROM access_tokens');
    for (const r of rows) expect(r.token_hash.toString('latin1')).not.toContain(res.body.accessToken);
  });

  it.each([
    ['wrong password', { username: 'admin', password: 'nope-nope-nope' }],
    ['unknown user', { username: 'mallory', password: 'whatever-password' }],
  ])('refuses a %s with 401 UNAUTHENTICATED and audits it without the typed values', async (_l, body) => {
    const res = await vault.http().post('/v1/auth/login').send(body).expect(401);
    expect(res.body).toEqual({ statusCode: 401, code: 'UNAUTHENTICATED', message: 'invalid username or password' });
    const [ev] = await vault.db.query<{ outcome: string; details: unknown }>(
      "SELECT outcome, details FROM audit_events WHERE type = 'auth.login' ORDER BY id DESC LIMIT 1",
    );
    expect(ev.outcome).toBe('failure');
    expect(JSON.stringify(ev.details)).not.toContain(body.password);
    expect(JSON.stringify(ev.details)).not.toContain(body.username);
  });

  it.each([
    ['no header', undefined],
    ['garbage token', 'Bearer garbage'],
    ['unknown token', 'Bearer pvt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'],
    ['basic auth', 'Basic YWRtaW46YWRtaW4='],
  ])('refuses %s with 401', async (_l, header) => {
    const req = vault.http().get('/v1/targets');
    if (header) req.set('Authorization', header);
    const res = await req.expect(401);
    expect(res.body.code).toBe('UNAUTHENTICATED');
  });

  it('takes the token from the Authorization header only, and never fails on odd token shapes', async () => {
    const token = (await vault.http().post('/v1/auth/login').send({ username: 'admin', password: ADMIN_PASSWORD }).expect(200)).body.accessToken;
    // a token in a URL ends up in logs and proxies: refused
    expect((await vault.http().get(`/v1/me?access_token=${token}`).expect(401)).body.code).toBe('UNAUTHENTICATED');
    expect((await vault.http().get('/v1/me?access_token=a&access_token=b').expect(401)).body.code).toBe('UNAUTHENTICATED');
    expect((await vault.http().post('/v1/targets').send({ access_token: token }).expect(401)).body.code).toBe('UNAUTHENTICATED');
    expect((await vault.http().post('/v1/targets').send({ access_token: {} }).expect(401)).body.code).toBe('UNAUTHENTICATED');
    expect((await vault.http().post('/v1/targets').send({ access_token: 123 }).expect(401)).body.code).toBe('UNAUTHENTICATED');
    await vault.http().get('/v1/me').set('Authorization', `bearer ${token}`).expect(200);
  });

  it('refuses an expired or revoked token and a disabled user at once', async () => {
    const login = async () => (await vault.http().post('/v1/auth/login').send({ username: 'admin', password: ADMIN_PASSWORD }).expect(200)).body.accessToken as string;
    const expired = await login();
    await vault.db.query("UPDATE access_tokens SET expires_at = now() - interval '1 second' WHERE expires_at = (SELECT max(expires_at) FROM access_tokens)");
    await vault.http().get('/v1/me').set('Authorization', `Bearer ${expired}`).expect(401);

    const live = await login();
    await vault.http().get('/v1/me').set('Authorization', `Bearer ${live}`).expect(200);
    await vault.db.query("UPDATE users SET disabled = true WHERE username = 'admin'");
    try {
      await vault.http().get('/v1/me').set('Authorization', `Bearer ${live}`).expect(401);
      await vault.http().post('/v1/auth/login').send({ username: 'admin', password: ADMIN_PASSWORD }).expect(401);
    } finally {
      await vault.db.query("UPDATE users SET disabled = false WHERE username = 'admin'");
    }
  });

  it('refuses a role the route does not allow', async () => {
    const auditor = await vault.createUser(['auditor']);
    const res = await vault.http().post('/v1/targets').set('Authorization', auditor.auth).send({}).expect(403);
    expect(res.body.code).toBe('FORBIDDEN');
    await vault.http().get('/v1/audit-events').set('Authorization', auditor.auth).expect(200);
    await vault.http().get('/v1/users').set('Authorization', auditor.auth).expect(403);
  });

  it('serves health without a token', async () => {
    await vault.http().get('/health/live').expect(200, { status: 'ok' });
    await vault.http().get('/health/ready').expect(200, { status: 'ok' });
  });
});

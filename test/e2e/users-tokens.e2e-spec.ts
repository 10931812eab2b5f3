import type { Test } from 'supertest';
import { startTestVault, TestUser, TestVault } from '../support/vault';
import { needsStepUp, withMfa } from '../support/http';

describe('users and service tokens (e2e, real PostgreSQL)', () => {
  let vault: TestVault;
  let admin: TestUser;
  /** As the holder of `auth`; the admin sends a fresh step-up code where the route needs one. */
  const as = (auth: string) => {
    const stepUp = (method: string, path: string, req: Test) => (auth === admin.auth && needsStepUp(method, path) ? withMfa(req, () => admin.code()) : req);
    return {
      get: (path: string) => vault.http().get(path).set('Authorization', auth),
      post: (path: string, body: object = {}) => stepUp('post', path, vault.http().post(path).set('Authorization', auth).send(body)),
      patch: (path: string, body: object) => stepUp('patch', path, vault.http().patch(path).set('Authorization', auth).send(body)),
      delete: (path: string) => stepUp('delete', path, vault.http().delete(path).set('Authorization', auth)),
    };
  };

  beforeAll(async () => {
    vault = await startTestVault();
    admin = await vault.admin();
  });
  afterAll(() => vault.close());

  it('creates users with several roles, hashes their password with argon2id, never returns it', async () => {
    const res = await as(admin.auth).post('/v1/users', { username: 'carol', password: 'carol-long-password', roles: ['operator', 'approver'] }).expect(201);
    expect(res.body).toEqual({ id: expect.any(String), username: 'carol', roles: ['operator', 'approver'], disabled: false, mfaEnrolled: false, email: null, mutedNotifications: [], passwordLogin: true, breakGlass: false, oidcProvider: null, createdAt: expect.any(String) });
    expect(JSON.stringify(res.body)).not.toContain('carol-long-password');
    const [row] = await vault.db.query<{ password_hash: string }>('SELECT password_hash FROM users WHERE id = $1', [res.body.id]);
    expect(row.password_hash).toMatch(/^\$argon2id\$v=19\$m=8192,t=1,p=1\$/); // the configured parameters
    expect((await as(admin.auth).post('/v1/users', { username: 'carol', password: 'another-long-one', roles: ['auditor'] }).expect(409)).body.code).toBe('USERNAME_TAKEN');
  });

  it.each([
    [{ username: 'Bad Name', password: 'long-enough-pass', roles: ['operator'] }],
    [{ username: 'dave', password: 'short', roles: ['operator'] }],
    [{ username: 'dave', password: 'long-enough-pass', roles: [] }],
    [{ username: 'dave', password: 'long-enough-pass', roles: ['root'] }],
    [{ username: 'dave', password: 'long-enough-pass', roles: ['operator', 'operator'] }],
  ])('refuses a bad user %j', async (body) => {
    expect((await as(admin.auth).post('/v1/users', body).expect(400)).body.code).toBe('VALIDATION_FAILED');
  });

  it('lists users by keyset pages and reads one', async () => {
    for (const name of ['erin', 'frank', 'grace']) await as(admin.auth).post('/v1/users', { username: name, password: 'long-enough-pass', roles: ['auditor'] }).expect(201);
    const names: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { body: { items: Array<{ username: string; id: string }>; nextCursor: string | null } } = await as(admin.auth)
        .get(`/v1/users?limit=2${cursor ? `&cursor=${cursor}` : ''}`)
        .expect(200);
      names.push(...page.body.items.map((u) => u.username));
      cursor = page.body.nextCursor;
    } while (cursor);
    expect(names).toEqual([...names].sort());
    expect(names).toEqual(expect.arrayContaining(['admin', 'erin', 'frank', 'grace']));
    expect(JSON.stringify(names)).not.toContain('password');
    await as(admin.auth).get(`/v1/users/${admin.id}`).expect(200);
  });

  it('creates a service token shown once and stored as a hash; it works with its roles only; revoking stops it', async () => {
    const created = await as(admin.auth).post('/v1/service-tokens', { name: 'nightly rotation', roles: ['scheduler'] }).expect(201);
    expect(created.body).toMatchObject({ id: expect.any(String), token: expect.stringMatching(/^pvs_[A-Za-z0-9_-]{43}$/), roles: ['scheduler'], expiresAt: null });
    const token = `Bearer ${created.body.token}`;
    const rows = await vault.db.query<{ token_hash: Buffer }>('SELECT token_hash FROM service_tokens WHERE id = $1', [created.body.id]);
    expect(rows[0].token_hash).toHaveLength(32);
    const listed = await as(admin.auth).get('/v1/service-tokens').expect(200);
    expect(JSON.stringify(listed.body)).not.toContain(created.body.token);

    const me = await as(token).get('/v1/me').expect(200);
    expect(me.body).toMatchObject({ id: created.body.id, roles: ['scheduler'], kind: 'service', mfaEnrolled: false });
    // a scheduler never reads accounts or targets
    await as(token).get('/v1/accounts').expect(403);
    await as(token).get('/v1/targets').expect(403);

    await as(admin.auth).delete(`/v1/service-tokens/${created.body.id}`).expect(204);
    await as(admin.auth).delete(`/v1/service-tokens/${created.body.id}`).expect(204); // twice is fine
    expect((await as(token).get('/v1/me').expect(401)).body.code).toBe('UNAUTHENTICATED');
  });

  it('expires service tokens', async () => {
    const created = await as(admin.auth).post('/v1/service-tokens', { name: 'short', roles: ['auditor'], expiresAt: new Date(Date.now() + 3600_000).toISOString() }).expect(201);
    await as(`Bearer ${created.body.token}`).get('/v1/audit-events').expect(200);
    await vault.db.query("UPDATE service_tokens SET expires_at = now() - interval '1 second' WHERE id = $1", [created.body.id]);
    await as(`Bearer ${created.body.token}`).get('/v1/audit-events').expect(401);
  });

  it.each([
    [{ name: 'x', roles: ['admin'] }],
    [{ name: 'x', roles: ['operator'] }],
    [{ name: 'x', roles: ['scheduler'], expiresAt: '2001-01-01T00:00:00Z' }],
    [{ name: 'x', roles: ['scheduler'], expiresAt: 'tomorrow' }],
    [{ name: '', roles: ['scheduler'] }],
  ])('refuses a bad service token %j', async (body) => {
    expect((await as(admin.auth).post('/v1/service-tokens', body).expect(400)).body.code).toBe('VALIDATION_FAILED');
  });

  it('audits logins, failures, enrollments, MFA failures, role and token changes, without secrets', async () => {
    const u = await vault.createUser(['operator']);
    await vault.http().post('/v1/auth/login').send({ username: u.username, password: 'wrong-password-123' }).expect(401);
    await vault.http().post(`/v1/users/${u.id}/mfa/reset`).set('Authorization', admin.auth).set('X-MFA-Code', '000000').expect(401);
    await as(admin.auth).patch(`/v1/users/${u.id}`, { roles: ['operator', 'approver'] }).expect(200);
    const token = await as(admin.auth).post('/v1/service-tokens', { name: 'audited', roles: ['scheduler'] }).expect(201);
    await as(admin.auth).delete(`/v1/service-tokens/${token.body.id}`).expect(204);

    const events = await vault.db.query<{ type: string; outcome: string; details: unknown }>('SELECT type, outcome, details FROM audit_events ORDER BY id');
    const types = events.map((e) => `${e.type}:${e.outcome}`);
    for (const t of [
      'user.created:success',
      'mfa.enrollment_started:success',
      'mfa.enrolled:success',
      'auth.login:success',
      'auth.login:failure',
      'mfa.failed:failure',
      'user.updated:success',
      'service_token.created:success',
      'service_token.revoked:success',
    ]) {
      expect(types).toContain(t);
    }
    const text = JSON.stringify(events);
    for (const secret of [u.password, u.secret, 'wrong-password-123', token.body.token, admin.secret]) expect(text).not.toContain(secret);
    expect((await as(admin.auth).get('/v1/audit-events/verify').expect(200)).body.ok).toBe(true);
  });
});

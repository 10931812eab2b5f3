import { randomUUID } from 'node:crypto';
import { PasswordHasher } from '../../src/identity/password-hasher';
import { TotpService } from '../../src/identity/totp.service';
import { startTestVault, TestUser, TestVault } from '../support/vault';

/**
 * Throttling under concurrency (bursts of 300 parallel requests) and lock-out resistance. The client address comes
 * from `X-Forwarded-For` (the vault trusts the loopback proxy here), so one test process plays many addresses.
 */
describe('throttling holds under any concurrency, and a burst cannot lock a user out elsewhere (e2e, real PostgreSQL)', () => {
  let vault: TestVault;
  const BURST = 300;
  const A = '198.51.100.7';
  const B = '203.0.113.9';

  beforeAll(async () => {
    vault = await startTestVault({ env: { VAULT_TRUST_PROXY: 'loopback' } });
    await vault.admin();
  });
  afterAll(() => vault.close());
  beforeEach(() => vault.db.query('DELETE FROM auth_throttle'));
  afterEach(() => jest.restoreAllMocks());

  const login = (from: string, body: object) => vault.http().post('/v1/auth/login').set('X-Forwarded-For', from).send(body);
  const stepUp = (from: string, user: TestUser, code: string) =>
    vault.http().post(`/v1/users/${randomUUID()}/mfa/reset`).set('Authorization', user.auth).set('X-Forwarded-For', from).set('X-MFA-Code', code);
  const count = async (sql: string, params: unknown[]) => (await vault.db.query<{ n: number }>(sql, params))[0].n;
  const failedLogins = (userId: string) => count("SELECT count(*)::int AS n FROM audit_events WHERE type = 'auth.login' AND outcome = 'failure' AND subject_id = $1", [userId]);
  const failedCodes = (userId: string) => count("SELECT count(*)::int AS n FROM audit_events WHERE type = 'mfa.failed' AND subject_id = $1", [userId]);
  const liveTokens = (userId: string) => count('SELECT count(*)::int AS n FROM access_tokens WHERE user_id = $1 AND revoked_at IS NULL', [userId]);
  const lastStep = async (id: string) => Number((await vault.db.query<{ s: string }>('SELECT mfa_last_step::text AS s FROM users WHERE id = $1', [id]))[0].s);
  const tally = (statuses: number[]) => statuses.reduce<Record<number, number>>((t, s) => ({ ...t, [s]: (t[s] ?? 0) + 1 }), {});
  /** Argon2 verifications (a known user's hash or the timing equaliser for an unknown one). */
  const spyArgon2 = () => {
    const hasher = vault.get(PasswordHasher);
    return [jest.spyOn(hasher, 'verify'), jest.spyOn(hasher, 'burn')] as const;
  };

  it(`${BURST} parallel wrong passwords from one address: 10 evaluated, and the right password inside the burst gets no token`, async () => {
    const u = await vault.createUser(['operator']);
    const tokensBefore = await liveTokens(u.id);
    const failuresBefore = await failedLogins(u.id);
    const [verify] = spyArgon2();
    const code = await u.code();
    const RIGHT = 249; // the 250th request
    const answers = await Promise.all(
      Array.from({ length: BURST }, (_, i) => login(A, i === RIGHT ? { username: u.username, password: u.password, code } : { username: u.username, password: `wrong-${i}-password` })),
    );
    const statuses = answers.map((a) => a.status);
    // eslint-disable-next-line no-console
    console.info('login burst:', tally(statuses), 'argon2 verifications:', verify.mock.calls.length);
    expect(verify.mock.calls.length).toBeLessThanOrEqual(10);
    expect((await failedLogins(u.id)) - failuresBefore).toBeLessThanOrEqual(10);
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(10);
    expect(statuses.filter((s) => s !== 401 && s !== 429)).toEqual([]);
    expect(answers.filter((a) => a.status === 429).every((a) => a.body.code === 'THROTTLED' && a.body.retryAfterSeconds > 0)).toBe(true);
    expect(answers[RIGHT].status).toBe(429);
    expect(answers[RIGHT].body.accessToken).toBeUndefined();
    expect(await liveTokens(u.id)).toBe(tokensBefore);

    // the address is locked for this user, even with the right password and code…
    expect((await login(A, { username: u.username, password: u.password, code: await u.code() }).expect(429)).body.code).toBe('THROTTLED');
    // …but the user, from their own address, is not locked out
    const ok = await login(B, { username: u.username, password: u.password, code: await u.code() }).expect(200);
    expect(ok.body.accessToken).toMatch(/^pvt_/);
  });

  it(`${BURST} parallel wrong step-up codes from one address: 10 evaluated, the right code inside the burst is not accepted`, async () => {
    const u = await vault.createUser(['admin']);
    const totp = jest.spyOn(vault.get(TotpService), 'matchStep');
    const failuresBefore = await failedCodes(u.id);
    const code = await u.code();
    const step = await lastStep(u.id);
    const RIGHT = 249;
    const wrong = (i: number) => String((Number(code) + 1 + i) % 1_000_000).padStart(6, '0');
    const answers = await Promise.all(Array.from({ length: BURST }, (_, i) => stepUp(A, u, i === RIGHT ? code : wrong(i))));
    const statuses = answers.map((a) => a.status);
    // eslint-disable-next-line no-console
    console.info('step-up burst:', tally(statuses), 'TOTP evaluations:', totp.mock.calls.length);
    expect(totp.mock.calls.length).toBeLessThanOrEqual(10);
    expect((await failedCodes(u.id)) - failuresBefore).toBeLessThanOrEqual(10);
    expect(statuses.filter((s) => s !== 401 && s !== 429)).toEqual([]);
    expect(answers[RIGHT].status).toBe(429);
    expect(await lastStep(u.id)).toBe(step); // not burned: it was never evaluated

    // locked from A; from B the same (still unused) code passes
    expect((await stepUp(A, u, code).expect(429)).body.code).toBe('THROTTLED');
    await stepUp(B, u, code).expect(404);
  });

  it(`${BURST} parallel wrong passwords from ${BURST} addresses: the per-user limit (100 an hour) holds`, async () => {
    const u = await vault.createUser(['operator']);
    const failuresBefore = await failedLogins(u.id);
    const [verify] = spyArgon2();
    const answers = await Promise.all(
      Array.from({ length: BURST }, (_, i) => login(`10.1.${i >> 8}.${i & 255}`, { username: u.username, password: `wrong-${i}-password` })),
    );
    const statuses = answers.map((a) => a.status);
    // eslint-disable-next-line no-console
    console.info('distributed login burst:', tally(statuses), 'argon2 verifications:', verify.mock.calls.length);
    expect(verify.mock.calls.length).toBeLessThanOrEqual(100);
    expect((await failedLogins(u.id)) - failuresBefore).toBeLessThanOrEqual(100);
    expect(statuses.filter((s) => s !== 401 && s !== 429)).toEqual([]);
  });

  it(`${BURST} parallel logins for ${BURST} unknown names from one address: the per-address limit (30) holds`, async () => {
    const [verify, burn] = spyArgon2();
    const answers = await Promise.all(Array.from({ length: BURST }, (_, i) => login(A, { username: `nobody-${i}`, password: 'whatever-password' })));
    const statuses = answers.map((a) => a.status);
    // eslint-disable-next-line no-console
    console.info('address burst:', tally(statuses), 'argon2 verifications:', verify.mock.calls.length);
    expect(burn.mock.calls.length).toBeLessThanOrEqual(30);
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(30);
    expect(statuses.filter((s) => s !== 401 && s !== 429)).toEqual([]);
  });

  it('one address, window after window, cannot fill the per-user limit: the user still logs in from elsewhere', async () => {
    const u = await vault.createUser(['operator']);
    // five 15-minute windows of the address fit in one hour of the user's window: at most 50 of the 100
    for (let w = 0; w < 5; w++) {
      const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => login(A, { username: u.username, password: `wrong-${w}-${i}-pw` })));
      expect(answers.filter((a) => a.status === 401).length).toBeLessThanOrEqual(10);
      await vault.db.query("UPDATE auth_throttle SET window_start = window_start - interval '15 minutes 1 second' WHERE key LIKE 'pair:%' OR key LIKE 'addr:%'");
    }
    const [{ failures }] = await vault.db.query<{ failures: number }>('SELECT failures FROM auth_throttle WHERE key = $1', [`user:pw:${u.id}`]);
    expect(failures).toBeLessThanOrEqual(50);
    await login(B, { username: u.username, password: u.password, code: await u.code() }).expect(200);
  });

  it('40 parallel requests reusing one valid code: one passes, replays are not guesses, the user is not locked out', async () => {
    const u = await vault.createUser(['admin']);
    const code = await u.code();
    const answers = await Promise.all(Array.from({ length: 40 }, () => stepUp(A, u, code)));
    const statuses = answers.map((a) => a.status);
    // eslint-disable-next-line no-console
    console.info('replay burst:', tally(statuses));
    expect(statuses.filter((s) => s === 404)).toHaveLength(1);
    expect(answers.filter((a) => a.status === 401).every((a) => a.body.code === 'MFA_REPLAYED')).toBe(true);
    expect(statuses.filter((s) => s !== 404 && s !== 401 && s !== 429)).toEqual([]);
    // nothing stays counted: the next code works from the same address, and the login too
    const counted = await vault.db.query<{ n: number }>('SELECT coalesce(sum(failures), 0)::int AS n FROM auth_throttle WHERE key LIKE $1', [`%${u.id}%`]);
    expect(counted).toEqual([{ n: 0 }]);
    await stepUp(A, u, await u.code()).expect(404);
    await login(A, { username: u.username, password: u.password, code: await u.code() }).expect(200);
  });

  it('forgets windows that ended long ago (an occasional sweep), and only those', async () => {
    await vault.db.query(
      `INSERT INTO auth_throttle (key, failures, window_start) VALUES ('addr:192.0.2.1', 30, now() - interval '61 minutes'), ('addr:192.0.2.2', 3, now() - interval '59 minutes')`,
    );
    const random = jest.spyOn(Math, 'random').mockReturnValue(0);
    await login(A, { username: 'nobody-at-all', password: 'whatever-password' }).expect(401);
    random.mockRestore();
    // the sweep runs beside the request: wait for it
    for (let i = 0; i < 50 && (await vault.db.query("SELECT 1 FROM auth_throttle WHERE key = 'addr:192.0.2.1'")).length; i++) await new Promise((r) => setTimeout(r, 20));
    const keys = (await vault.db.query<{ key: string }>("SELECT key FROM auth_throttle WHERE key LIKE 'addr:192.0.2.%' ORDER BY key")).map((r) => r.key);
    expect(keys).toEqual(['addr:192.0.2.2']);
  });

  it('a success gives its attempt back: the right password and code do not count', async () => {
    const u = await vault.createUser(['operator']);
    for (let i = 0; i < 15; i++) await login(A, { username: u.username, password: u.password, code: await u.code() }).expect(200);
    const rows = await vault.db.query<{ key: string; failures: number }>('SELECT key, failures FROM auth_throttle WHERE failures > 0');
    expect(rows).toEqual([]);
  });

  it('nobody at a shared address locks the others there out: sprayed unknown names fill only the address\'s unknown-name window', async () => {
    const victim = await vault.createUser(['operator']);
    const SHARED = '192.0.2.50';
    const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => login(SHARED, { username: `ghost${i}`, password: 'wrong-password-x' })));
    expect(tally(answers.map((a) => a.status))).toEqual({ 401: 30 });
    expect((await login(SHARED, { username: 'ghost-next', password: 'wrong-password-x' })).status).toBe(429); // the spray is bounded
    // a real user at that address still logs in, and a logged-in user's step-up code still works from there
    const ok = await login(SHARED, { username: victim.username, password: victim.password, code: await victim.code() });
    expect(ok.status).toBe(200);
    const reset = await stepUp(SHARED, victim, await victim.code());
    expect(reset.status).not.toBe(429);
  });

  it('IPv6 addresses count per /64 and IPv4-mapped forms as IPv4: spelling one address many ways gives no more attempts', async () => {
    const u = await vault.createUser(['operator']);
    const forms = ['2001:db8::1', '2001:DB8:0:0::1', '2001:db8::2', '2001:db8:0:0:ffff::9', '2001:db8::a', '2001:db8::b', '2001:db8::c', '2001:db8::d', '2001:db8::e', '2001:db8::f', '2001:db8::10', '2001:db8::11'];
    const statuses = [];
    for (const from of forms) statuses.push((await login(from, { username: u.username, password: 'wrong-password-y' })).status);
    expect(statuses.slice(0, 10).every((s) => s === 401)).toBe(true);
    expect(statuses.slice(10)).toEqual([429, 429]); // one /64: one pair window of 10
    const v4 = await Promise.all(['::ffff:198.51.100.77', '198.51.100.77'].map((from) => login(from, { username: u.username, password: 'wrong-password-z' })));
    expect(v4.map((a) => a.status)).toEqual([401, 401]);
    const keys = (await vault.db.query<{ key: string }>("SELECT key FROM auth_throttle WHERE key LIKE $1 AND key NOT LIKE $2 ORDER BY key", [`pair:pw:${u.id}@%`, "%@127.0.0.1"])).map((r) => r.key);
    expect(keys).toEqual([`pair:pw:${u.id}@198.51.100.77`, `pair:pw:${u.id}@2001:0db8:0000:0000::/64`]);
  });

  it('a junk or oversized X-Forwarded-For is "invalid" in keys and audit events, never stored as given, never a 500', async () => {
    for (const from of ['not-an-ip\u0085\u00ae', 'x'.repeat(3000), '1.2.3.4.5']) {
      const res = await login(from, { username: 'nobody-here', password: 'wrong-password-w' });
      expect([401, 429]).toContain(res.status);
    }
    const addresses = (await vault.db.query<{ a: string }>("SELECT DISTINCT details->>'address' AS a FROM audit_events WHERE type = 'auth.login' AND details ? 'address'")).map((r) => r.a);
    expect(addresses.every((a) => a === null || a === 'invalid' || a === 'unknown' || /^[0-9a-f.:/]+$/.test(a))).toBe(true);
    const keys = (await vault.db.query<{ key: string }>('SELECT key FROM auth_throttle')).map((r) => r.key);
    expect(keys.every((k) => k.length < 200 && !/[\u0080-\u009f]/.test(k))).toBe(true);
  });

  it('the right password with a replayed code counts nothing: the user is not locked out of their own address', async () => {
    const u = await vault.createUser(['operator']);
    const code = await u.code();
    expect((await login(A, { username: u.username, password: u.password, code })).status).toBe(200);
    for (let i = 0; i < 12; i++) expect((await login(A, { username: u.username, password: u.password, code })).body.code).toBe('MFA_REPLAYED');
    expect((await login(A, { username: u.username, password: u.password, code: await u.code() })).status).toBe(200);
  });
});

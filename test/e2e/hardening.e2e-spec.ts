import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, Server, Socket } from 'node:net';
import { actingAs } from '../support/http';
import { createTestDatabase, TestDatabase } from '../support/db';
import { freePort } from '../support/process';
import { REAL_TARGETS, RealTarget } from '../support/targets/real';
import { startTestVault, TestUser, TestVault } from '../support/vault';

/**
 * Issue 12, the API's own edges through HTTP on the real PostgreSQL: answers carry no body digest and are not cached,
 * free text that approvers read cannot be disguised, malformed times and nested arrays are 400 (they were 500), an
 * outage of the vault's database is 503 with Retry-After (and visible in the metrics) until it is back, and background
 * failures show in the logs at warn.
 */
describe('API hardening (e2e)', () => {
  let vault: TestVault;
  let admin: TestUser;
  let operator: TestUser;
  let approver: TestUser;
  const as = (user: TestUser) => actingAs(vault, user);
  const logLines: string[] = [];
  /** The vault's database, reached through a TCP relay the test can cut (an outage) and restore. */
  let db: TestDatabase;
  let relay: Relay;
  let pg: RealTarget | undefined;

  beforeAll(async () => {
    db = await createTestDatabase();
    relay = await startRelay(new URL(db.url));
    const url = new URL(db.url);
    url.hostname = '127.0.0.1';
    url.port = String(relay.port);
    vault = await startTestVault({ db: { ...db, url: url.toString() }, logLines, env: { VAULT_ROTATION_MAX_FAILURES: '1', VAULT_ROTATION_SWEEP_MS: '3600000' } });
    admin = await vault.admin();
    operator = await vault.createUser(['operator']);
    approver = await vault.createUser(['approver']);
  }, 60_000);
  afterAll(async () => {
    await relay?.restore();
    await vault?.close();
    await relay?.stop();
    await pg?.stop();
  });

  it('answers carry no ETag (a digest of the body, which may hold a password) and are never cached', async () => {
    for (const res of [await as(admin).get('/v1/me').expect(200), await as(admin).get('/v1/targets').expect(200), await as(operator).post('/v1/checkouts', {}, true).expect(400)]) {
      expect(res.headers.etag).toBeUndefined();
      expect(res.headers['cache-control']).toBe('no-store');
    }
  });

  it.each([
    ['a right-to-left override', 'approve invoice \u202Egnp.exe'],
    ['an isolate', 'fix \u2066index\u2069'],
    ['a zero-width space', 'CHG\u200B-1234'],
    ['a C1 control', 'next\u0085line'],
  ])('refuses %s in free text an approver reads (400), storing nothing', async (_what, text) => {
    const before = (await vault.db.query<{ n: number }>('SELECT count(*)::int AS n FROM checkouts'))[0].n;
    const res = await as(operator).post('/v1/checkouts', { accountId: randomUUID(), justification: text }, true).expect(400);
    expect(res.body.code).toBe('VALIDATION_FAILED');
    expect(res.body.message).toMatch(/justification/);
    expect((await as(approver).post(`/v1/checkouts/${randomUUID()}/deny`, { comment: text }, true).expect(400)).body.code).toBe('VALIDATION_FAILED');
    expect((await vault.db.query<{ n: number }>('SELECT count(*)::int AS n FROM checkouts'))[0].n).toBe(before);
  });

  it('answers 400, not 500, for a time in the basic ISO format and for nested arrays where objects belong; nothing is stored', async () => {
    const tokens = async () => (await vault.db.query<{ n: number }>('SELECT count(*)::int AS n FROM service_tokens'))[0].n;
    const before = await tokens();
    for (const expiresAt of ['20270101T000000Z', '2027-01-01', '2027-02-30T00:00:00Z', '+275760-09-13T00:00:00Z']) {
      const res = await as(admin).post('/v1/service-tokens', { name: `t-${randomBytes(3).toString('hex')}`, roles: ['scheduler'], expiresAt }, true).expect(400);
      expect(res.body.code).toBe('VALIDATION_FAILED');
    }
    expect(await tokens()).toBe(before);
    const target = (await as(admin).post('/v1/targets', { name: `t-${randomBytes(3).toString('hex')}`, type: 'mysql', host: '127.0.0.1', port: 3306, admin: { username: 'x', password: 'y' } }, true).expect(201)).body;
    for (const allowedGrants of [[[]], [null], ['SELECT'], [[{ privileges: ['SELECT'], on: 'a.*' }]]]) {
      const res = await as(admin).put(`/v1/targets/${target.id}/ephemeral-policy`, { approvalsRequired: 1, maxTtlSeconds: 600, allowedGrants }, true).expect(400);
      expect(res.body.code).toBe('VALIDATION_FAILED');
    }
  });

  it('two admins demoting each other at once: one wins, the other gets 409 LAST_ADMIN, never a 500 (15 rounds)', async () => {
    let a = await vault.createUser(['admin']);
    let b = await vault.createUser(['admin']);
    const demote = (by: TestUser, whom: TestUser) => as(by).patch(`/v1/users/${whom.id}`, { roles: ['operator'] }, true);
    // the break-glass admin can be neither demoted nor disabled, so it never counts out: set aside here (in the
    // database) so that these two are the last admins
    const others = await vault.db.query<{ id: string }>("SELECT id FROM users WHERE 'admin' = ANY (roles) AND NOT disabled AND id NOT IN ($1, $2)", [a.id, b.id]);
    await vault.db.query('UPDATE users SET disabled = true WHERE id = ANY ($1::uuid[])', [others.map((o) => o.id)]);
    try {
      for (let round = 0; round < 15; round++) {
        const [x, y] = await Promise.all([demote(a, b), demote(b, a)]);
        const statuses = [x.status, y.status].sort();
        expect({ round, statuses, codes: [x.body.code, y.body.code] }).toEqual({ round, statuses: [200, 409], codes: expect.arrayContaining(['LAST_ADMIN']) });
        const [winner, loser] = x.status === 200 ? [a, b] : [b, a];
        await as(winner).patch(`/v1/users/${loser.id}`, { roles: ['admin'] }, true).expect(200);
        [a, b] = [loser, winner];
      }
    } finally {
      await vault.db.query('UPDATE users SET disabled = false WHERE id = ANY ($1::uuid[])', [others.map((o) => o.id)]);
    }
  }, 120_000);

  it('logs a failed rotation and an account going needs_attention at warn: what, which account and target, the code — never a secret', async () => {
    // a real PostgreSQL that refuses the admin (a wrong stored password): the rotation fails, and so do the test logins
    const real = (pg = await REAL_TARGETS.postgres());
    const body = real.body as { admin: { username: string } };
    const password = `Orig-${randomBytes(10).toString('hex')}`;
    const target = (await as(admin).post('/v1/targets', { ...real.body, name: `refused-${randomBytes(3).toString('hex')}`, admin: { username: body.admin.username, password: 'whatever-admin-pw' } }, true).expect(201)).body;
    const account = (await as(admin).post('/v1/accounts', { targetId: target.id, username: `acct_${randomBytes(3).toString('hex')}`, password }, true).expect(201)).body;
    await as(admin).post(`/v1/accounts/${account.id}/rotate`).expect(202);
    const deadline = Date.now() + 20_000;
    while ((await as(admin).get(`/v1/accounts/${account.id}`).expect(200)).body.status !== 'needs_attention') {
      if (Date.now() > deadline) throw new Error('the rotation did not fail in time');
      await new Promise((r) => setTimeout(r, 100));
    }
    const warn = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.level === 40 && l.accountId === account.id);
    expect(warn).toEqual([expect.objectContaining({ targetId: target.id, code: 'TARGET_AUTH_FAILED', msg: expect.stringContaining('needs_attention') })]);
    expect(logLines.join('\n')).not.toContain(password);
    expect(logLines.join('\n')).not.toContain('whatever-admin-pw');
  });

  it('answers 503 UNAVAILABLE with Retry-After while its database cannot be reached, says so in the metrics, and recovers', async () => {
    const before = await metric('vault_database_unavailable_total');
    await relay.cut();
    try {
      for (const res of [await as(admin).get('/v1/me'), await as(admin).get('/v1/accounts'), await vault.http().post('/v1/auth/login').send({ username: 'admin', password: 'x' })]) {
        expect({ status: res.status, code: res.body.code }).toEqual({ status: 503, code: 'UNAVAILABLE' });
        expect(res.headers['retry-after']).toBe('5');
      }
      expect((await vault.http().get('/health/ready')).status).toBe(503);
      expect(await metric('vault_database_up')).toBe(0);
      expect(await metric('vault_database_unavailable_total')).toBeGreaterThanOrEqual(before + 3);
    } finally {
      await relay.restore();
    }
    const deadline = Date.now() + 15_000;
    for (;;) {
      const res = await as(admin).get('/v1/me');
      if (res.status === 200) break;
      if (Date.now() > deadline) throw new Error(`not recovered: ${res.status}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(await metric('vault_database_up')).toBe(1);
  }, 60_000);

  async function metric(name: string): Promise<number> {
    const text = (await vault.http().get('/metrics').expect(200)).text;
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    if (!line) throw new Error(`no metric ${name}`);
    return Number(line.split(' ')[1]);
  }
});

interface Relay {
  port: number;
  /** Closes every relayed connection and refuses new ones (the database is "down"). */
  cut(): Promise<void>;
  /** Accepts connections again on the same port. */
  restore(): Promise<void>;
  stop(): Promise<void>;
}

/** A TCP relay to the test database that a test can cut, like a network partition or a stopped server. */
async function startRelay(to: URL): Promise<Relay> {
  const port = await freePort();
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      server = createServer((client) => {
        const upstream = new Socket();
        sockets.add(client).add(upstream);
        const end = () => {
          client.destroy();
          upstream.destroy();
          sockets.delete(client);
          sockets.delete(upstream);
        };
        client.on('error', end).on('close', end);
        upstream.on('error', end).on('close', end);
        upstream.connect(Number(to.port || 5432), to.hostname === 'localhost' ? '127.0.0.1' : to.hostname, () => {
          client.pipe(upstream).pipe(client);
        });
      });
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
  const close = async () => {
    for (const s of sockets) s.destroy();
    sockets.clear();
    if (server?.listening) await new Promise<void>((r) => server!.close(() => r()));
    server = undefined;
  };
  await listen();
  return {
    port,
    cut: close,
    restore: async () => {
      if (!server) await listen();
    },
    stop: close,
  };
}

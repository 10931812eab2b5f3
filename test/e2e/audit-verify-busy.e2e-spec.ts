import { DataSource, QueryRunner } from 'typeorm';
import { SEAL_LOCK } from '../../src/audit/audit-sealer.service';
import { startTestVault, TestUser, TestVault } from '../support/vault';

/**
 * Issue 12 review, finding 4: verify waited for the sealing lock on a pool connection, so parallel verifies while
 * another session held the lock took every connection of the pool and every other route answered 503 "cannot
 * reach its database". Verify now runs once at a time per instance and waits without a connection; a pool that is
 * busy says so. Through the HTTP API on the real PostgreSQL.
 */
describe('audit verify cannot exhaust the pool (e2e)', () => {
  let vault: TestVault;
  let auditor: TestUser;

  beforeAll(async () => {
    // a long wait for the lock: before the fix each waiting verify held a pool connection for all of it
    vault = await startTestVault({ env: { VAULT_AUDIT_VERIFY_LOCK_WAIT_MS: '8000' } });
    auditor = await vault.createUser(['auditor']);
  }, 60_000);
  afterAll(() => vault?.close());

  const verify = () => vault.http().get('/v1/audit-events/verify').set('Authorization', auditor.auth);

  it('25 parallel verifies while another session holds the sealing lock: one waits (without a connection), the others 503 at once; other routes keep answering', async () => {
    await vault.db.query('SELECT pg_advisory_lock($1)', [SEAL_LOCK]);
    let released = false;
    try {
      const started = Date.now();
      const burst = Array.from({ length: 25 }, () => verify().then((r) => ({ status: r.status, body: r.body, retryAfter: r.headers['retry-after'], ms: Date.now() - started })));
      await new Promise((r) => setTimeout(r, 500));
      // meanwhile the rest of the vault works: 200, and quickly (a starved pool would answer 503 after 5 s)
      for (let i = 0; i < 3; i++) {
        const t = Date.now();
        const me = await vault.http().get('/v1/me').set('Authorization', auditor.auth);
        expect(me.status).toBe(200);
        expect(Date.now() - t).toBeLessThan(2000);
      }
      await vault.db.query('SELECT pg_advisory_unlock($1)', [SEAL_LOCK]);
      released = true;
      const answers = await Promise.all(burst);
      const refused = answers.filter((a) => a.status === 503);
      expect(answers.map((a) => a.status).sort()).toEqual([200, ...Array(24).fill(503)]);
      for (const a of refused) {
        expect(a.body).toMatchObject({ code: 'UNAVAILABLE', retryAfterSeconds: expect.any(Number) });
        expect(a.retryAfter).toBe(String(a.body.retryAfterSeconds));
        expect(a.ms).toBeLessThan(2000); // at once, not after the lock wait
      }
      expect(answers.find((a) => a.status === 200)?.body).toMatchObject({ ok: true });
    } finally {
      if (!released) await vault.db.query('SELECT pg_advisory_unlock($1)', [SEAL_LOCK]);
    }
  }, 30_000);

  it('a pool with no connection free in time answers 503 "busy or unavailable" with Retry-After, not "cannot reach its database"', async () => {
    const ds = vault.get(DataSource);
    const held: QueryRunner[] = [];
    try {
      // every connection of the pool taken (max 20), as a burst of slow requests would
      for (let i = 0; i < 20; i++) {
        const qr = ds.createQueryRunner();
        await qr.connect();
        held.push(qr);
      }
      const res = await vault.http().get('/v1/me').set('Authorization', auditor.auth);
      expect(res.status).toBe(503);
      expect(res.body).toMatchObject({ code: 'UNAVAILABLE', retryAfterSeconds: expect.any(Number) });
      expect(res.headers['retry-after']).toBe(String(res.body.retryAfterSeconds));
      expect(res.body.message).toMatch(/busy or unavailable/);
      expect(res.body.message).not.toMatch(/cannot reach/);
    } finally {
      await Promise.all(held.map((qr) => qr.release()));
    }
    await vault.http().get('/v1/me').set('Authorization', auditor.auth).expect(200);
  }, 30_000);
});

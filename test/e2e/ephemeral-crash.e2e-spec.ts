import { randomBytes } from 'node:crypto';
import request, { Response } from 'supertest';
import type { EphemeralCrashPoint } from '../../src/ephemeral/ephemeral-provisioner.service';
import { createTestDatabase, TestDatabase } from '../support/db';
import { actingAs } from '../support/http';
import { builtVaultEnv, freePort, requireBuild, spawnVault, VaultProcess, waitReady } from '../support/process';
import { REAL_TARGETS, RealTarget, RealTargetType } from '../support/targets/real';
import { sleep } from '../support/targets/run';
import { base32Decode, hotp } from '../support/totp';
import { ADMIN_PASSWORD, startTestVault, TEST_ENV } from '../support/vault';
import { holdSystemAccounts, releaseSystemAccounts } from '../support/system-accounts';

// SSH one-time accounts live in the machine's /etc/passwd: suites that create and remove them take turns
beforeAll(holdSystemAccounts, 900_000);
afterAll(releaseSystemAccounts);

/**
 * INVARIANT 11, the hard way: the built vault runs as a child process and SIGKILLs itself at each step of a vendor's
 * claim — after the intent row is committed, after the account was created on the target, inside the commit — and a
 * fresh process's reaper (at start-up and on its timer) must remove whatever the dead one left on the real target, so
 * that no account remains on any target that the vault does not know and will not remove.
 *
 * The cases go through the child's HTTP port with real time (so TOTP codes are real-time codes): one database,
 * one target of each type and one operator for the whole file; a fresh approver and vendor per case (each TOTP step
 * is accepted once per user, so reusing them would mean waiting for new steps). The admin's set-up (users, targets,
 * policies: each a step-up action) runs in-process on the test clock first, so it waits for no real time step.
 */
const CRASH_POINTS: EphemeralCrashPoint[] = ['ephemeral-after-intent', 'ephemeral-after-create', 'ephemeral-before-commit'];
const TYPES: RealTargetType[] = ['postgres', 'mysql', 'ssh'];
const FINAL = ['revoked', 'expired', 'denied'];
const STEP_MS = 30_000;

/** A user as their authenticator app and client hold them: real-time codes, each step used once. */
interface Person {
  id: string;
  username: string;
  auth: string;
  code(): Promise<string>;
}

/** Real-time TOTP codes (current or next step; the vault accepts ±1), never a step this user already burned. */
function authenticator(secret: string): () => Promise<string> {
  let last = 0;
  return async () => {
    for (;;) {
      const current = Math.floor(Date.now() / STEP_MS);
      const step = Math.max(last + 1, current);
      if (step <= current + 1) {
        last = step;
        return hotp(base32Decode(secret), step);
      }
      await sleep((step - 1) * STEP_MS - Date.now() + 100);
    }
  };
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const start = Date.now();
  while (Date.now() - start < timeoutMs) {
    if (await check()) return;
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Fails with the answer's body in the message, not just its status. */
function expectStatus(res: Response, status: number) {
  expect({ status: res.status, body: res.body }).toMatchObject({ status });
  return res.body;
}

/** The generated usernames' prefix for a vendor (EphemeralProvisioner's generateUsername): `v` + name ≤ 8 + `_`. */
const prefixOf = (vendorName: string) => `v${vendorName.toLowerCase().replace(/[^a-z0-9]/g, '').slice(0, 8)}_`;

describe('one-time accounts: crash matrix on real targets (built vault, SIGKILL)', () => {
  let db: TestDatabase;
  const real = {} as Record<RealTargetType, RealTarget>;
  const targetIds = {} as Record<RealTargetType, string>;
  const masterKey = randomBytes(32);
  const procs: VaultProcess[] = [];
  let admin: Person;
  let operator: Person | undefined;
  /** Users the set-up created (not enrolled yet), taken one per createUser by role and signed in through the process. */
  const pool: Record<string, Array<{ username: string; password: string }>> = { operator: [], approver: [], vendor: [] };
  /** Every vendor this file created: the only ones whose generated accounts it may find on a shared target. */
  const vendorPrefixes: string[] = [];
  /** The HTTP port of the vault process currently running. */
  let port = 0;

  const http = () => request(`http://127.0.0.1:${port}`);
  const post = async (who: Person, path: string, body: object = {}, mfa = false) => {
    const code = mfa ? await who.code() : undefined;
    const req = http().post(path).set('Authorization', who.auth);
    if (code) req.set('X-MFA-Code', code);
    return req.send(body);
  };

  /** Starts the built vault on the test database; resolves once it answers /health/ready. */
  const start = async (extra: Record<string, string>): Promise<VaultProcess> => {
    port = await freePort();
    const proc = spawnVault({
      ...builtVaultEnv({ databaseUrl: db.url, masterKey, port, adminPassword: ADMIN_PASSWORD, argon2: { memoryKib: TEST_ENV.VAULT_ARGON2_MEMORY_KIB, timeCost: TEST_ENV.VAULT_ARGON2_TIME_COST } }),
      // a dead claimant's claim lapses after a second
      VAULT_EPHEMERAL_CLAIM_SECONDS: '1',
      VAULT_ROTATION_SWEEP_MS: '3600000',
      VAULT_CHECKOUT_SWEEP_MS: '3600000',
      ...extra,
    });
    procs.push(proc);
    await waitReady(port, proc, 30_000);
    return proc;
  };
  const stop = async (proc: VaultProcess) => {
    if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill('SIGTERM');
    await proc.exited;
  };

  /** Logs in (first time: enrolls TOTP) through the running process. */
  const signIn = async (username: string, password: string): Promise<Person> => {
    const login = expectStatus(await http().post('/v1/auth/login').send({ username, password }), 200);
    const auth = `Bearer ${login.accessToken}`;
    expect(login.mfaEnrollmentRequired).toBe(true);
    const { secret } = expectStatus(await http().post('/v1/me/mfa/totp').set('Authorization', auth), 200);
    const code = authenticator(secret as string);
    // enrollment ends every earlier token and answers with a fresh one
    const confirmed = expectStatus(await http().post('/v1/me/mfa/totp/confirm').set('Authorization', auth).send({ code: await code() }), 200);
    const fresh = `Bearer ${confirmed.accessToken}`;
    const me = expectStatus(await http().get('/v1/me').set('Authorization', fresh), 200);
    return { id: me.id, username, auth: fresh, code };
  };
  const createUser = async (role: 'operator' | 'approver' | 'vendor'): Promise<Person> => {
    const made = pool[role].shift();
    if (!made) throw new Error(`the set-up made too few users with the ${role} role`);
    return signIn(made.username, made.password);
  };

  const row = async (id: string) =>
    (
      await db.query<{ status: string; username: string | null; end_reason: string | null; ended_by: string | null; claimed_at: Date | null }>(
        'SELECT status, username, end_reason, ended_by, claimed_at FROM ephemeral_accounts WHERE id = $1',
        [id],
      )
    )[0];

  /**
   * Accounts on the target that this file's vendors could have produced (on the file's own PostgreSQL cluster:
   * every role starting with `v`; the MariaDB and the sshd's users are the machine's, shared with other tests) which
   * the vault does not know or will not remove (its row is final): must be none.
   */
  const leftovers = async (type: RealTargetType): Promise<string[]> => {
    const admin = (real[type].body as { admin: { username: string } }).admin.username; // the cluster's own vault_admin
    const names = (type === 'postgres' ? await real.postgres.accountsStartingWith('v') : (await Promise.all(vendorPrefixes.map((p) => real[type].accountsStartingWith(p)))).flat()).filter((n) => n !== admin);
    const out: string[] = [];
    for (const name of names) {
      const [known] = await db.query<{ status: string }>('SELECT status FROM ephemeral_accounts WHERE username = $1 AND target_id = $2', [name, targetIds[type]]);
      if (!known || FINAL.includes(known.status)) out.push(`${name} (${known ? known.status : 'unknown to the vault'})`);
    }
    return out;
  };

  beforeAll(async () => {
    requireBuild();
    db = await createTestDatabase();
    const started = await Promise.all(TYPES.map((t) => REAL_TARGETS[t]()));
    TYPES.forEach((t, i) => (real[t] = started[i]));

    // set-up in-process, on the test clock (the admin's step-up codes wait for no real time step): the users every
    // case signs in as, one target of each type with its policy; the admin's token stays valid for the processes
    const setup = await startTestVault({ db, masterKey, env: { VAULT_EPHEMERAL_SWEEP_MS: '3600000' } });
    try {
      const a = await setup.admin();
      admin = { id: a.id, username: a.username, auth: a.auth, code: () => Promise.reject(new Error('the admin steps up in the set-up only')) };
      const cases = CRASH_POINTS.length * TYPES.length;
      for (const role of ['operator', ...Array(cases).fill('approver'), ...Array(cases).fill('vendor')] as const) {
        const u = await setup.createUser([role], { enroll: false });
        pool[role].push({ username: u.username, password: u.password });
      }
      const as = actingAs(setup, a);
      for (const t of TYPES) {
        targetIds[t] = (await as.post('/v1/targets', { name: `crash-${t}`, ...real[t].body }, true).expect(201)).body.id;
        await as.post(`/v1/targets/${targetIds[t]}/verify`, {}, true).expect(200);
        await as.put(`/v1/targets/${targetIds[t]}/ephemeral-policy`, { approvalsRequired: 1, maxTtlSeconds: 3600 }, true).expect(200);
      }
    } finally {
      await setup.close();
    }
  }, 90_000);

  afterAll(async () => {
    for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    // only when a case failed midway: nothing the vault generated may outlive the run
    if (db) {
      const rows = await db.query<{ username: string; target_id: string }>('SELECT username, target_id FROM ephemeral_accounts WHERE username IS NOT NULL').catch(() => []);
      for (const r of rows) {
        const t = TYPES.find((x) => targetIds[x] === r.target_id);
        if (t && (await real[t].accountExists(r.username))) await real[t].dropAccount(r.username);
      }
    }
    for (const t of TYPES) await real[t]?.stop();
    await db?.drop();
  });

  describe.each(CRASH_POINTS)('killed at %s', (point) => {
    it.each(TYPES)('on %s: after restart the reaper removes what the dead claim left; no account remains that the vault does not know', async (type) => {
      // the doomed process: its reaper runs only at start-up (nothing to do then)
      const doomed = await start({ VAULT_CRASH_POINT: point, VAULT_EPHEMERAL_SWEEP_MS: '3600000' });
      operator ??= await createUser('operator');
      const approver = await createUser('approver');
      const vendor = await createUser('vendor');
      vendorPrefixes.push(prefixOf(vendor.username));
      const e = expectStatus(
        await post(operator, '/v1/ephemeral-accounts', { targetId: targetIds[type], vendorUserId: vendor.id, ttlSeconds: 1800, justification: `crash test at ${point}` }),
        201,
      );
      expect(e.status).toBe('pending_approval');
      expect(expectStatus(await post(approver, `/v1/ephemeral-accounts/${e.id}/approve`, {}, true), 200).status).toBe('approved');

      // the claim kills the process: no answer at all
      const outcome = await post(vendor, `/v1/ephemeral-accounts/${e.id}/claim`, {}, true).then(
        (res) => `answered ${res.status} ${JSON.stringify(res.body)}`,
        (err: Error & { code?: string }) => `failed: ${err.code ?? ''} ${err.message}`,
      );
      expect(outcome).toMatch(/^failed: .*(socket hang up|ECONNRESET)/);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([doomed.exited, new Promise((r) => (timer = setTimeout(r, 10_000)))]);
      clearTimeout(timer);
      if (doomed.child.signalCode === null) throw new Error(`the vault never reached ${point}:\n${doomed.output().slice(-2000)}`);
      expect(doomed.child.signalCode).toBe('SIGKILL');

      // what it left: the intent (committed), with the generated name; the account only once the target was reached
      const left = await row(e.id);
      expect(left).toMatchObject({ status: 'creating', username: expect.stringMatching(new RegExp(`^${prefixOf(vendor.username)}[0-9a-f]{10}$`)), claimed_at: expect.any(Date) });
      const username = left.username!;
      expect(await real[type].accountExists(username)).toBe(point !== 'ephemeral-after-intent');
      const types = async () => (await db.query<{ type: string }>('SELECT type FROM audit_events WHERE subject_id = $1 ORDER BY id', [e.id])).map((x) => x.type);
      // the commit that would have made it active never happened
      expect(await types()).toEqual(['ephemeral.requested', 'ephemeral.approved', 'ephemeral.claimed']);

      // a fresh process: the reaper at start-up and every 500 ms
      const healthy = await start({ VAULT_EPHEMERAL_SWEEP_MS: '500' });
      await waitFor(`the reaper to remove ${username}`, async () => FINAL.includes((await row(e.id)).status));
      await stop(healthy);

      expect(await row(e.id)).toMatchObject({ status: 'revoked', end_reason: 'reaped', ended_by: 'system' });
      expect(await real[type].accountExists(username)).toBe(false);
      expect(await real[type].canLogin(username, `Any-${randomBytes(12).toString('hex')}!`)).toBe(false);
      expect(await types()).toEqual(['ephemeral.requested', 'ephemeral.approved', 'ephemeral.claimed', 'ephemeral.reaped', 'ephemeral.removed']);
      expect(await leftovers(type)).toEqual([]);
    }, 90_000);
  });

  it('in the end: every one-time account is final and no target holds an account the vault does not know; the audit chain is intact', async () => {
    expect(await db.query("SELECT id, status FROM ephemeral_accounts WHERE status NOT IN ('revoked', 'expired', 'denied')")).toEqual([]);
    const [{ n }] = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM ephemeral_accounts WHERE end_reason = 'reaped'");
    expect(n).toBe(CRASH_POINTS.length * TYPES.length);
    for (const t of TYPES) expect({ type: t, leftovers: await leftovers(t) }).toEqual({ type: t, leftovers: [] });
    const proc = await start({ VAULT_EPHEMERAL_SWEEP_MS: '3600000' });
    try {
      expect(expectStatus(await http().get('/v1/audit-events/verify').set('Authorization', admin.auth), 200)).toMatchObject({ ok: true });
    } finally {
      await stop(proc);
    }
  }, 60_000);
});

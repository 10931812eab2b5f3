import { randomBytes } from 'node:crypto';
import { createFakeTarget } from '../support/fake-target';
import { actingAs } from '../support/http';
import { startTestVault, TestUser, TestVault } from '../support/vault';

/**
 * One transaction per action: a checkout request's step-up code is burned by the first statements of the checkout's own
 * transaction (@RequiresMfa({ inTransaction: true }), MfaService.stepUp), on the real PostgreSQL. INVARIANT 5 still
 * holds — a code is burned atomically and never accepted twice — and a refused action still spends its code.
 */
describe('MFA step-up burned in the action\'s transaction (e2e)', () => {
  let vault: TestVault;
  let admin: TestUser;
  let operator: TestUser;
  let targetId: string;

  const as = (user: TestUser) => actingAs(vault, user);
  const newAccount = async () => {
    const res = await as(admin).post('/v1/accounts', { targetId, username: `mt_${randomBytes(4).toString('hex')}`, password: `Orig-${randomBytes(10).toString('hex')}`, policy: { rotateAfterCheckin: false } }, true).expect(201);
    return res.body.id as string;
  };
  /** A checkout request with exactly this code (not a fresh one). */
  const checkoutWith = (code: string, accountId: string) =>
    vault.http().post('/v1/checkouts').set('Authorization', operator.auth).set('X-MFA-Code', code).send({ accountId, justification: 'fix the disk' });
  const accountStatus = async (id: string) => (await vault.db.query<{ status: string }>('SELECT status FROM accounts WHERE id = $1', [id]))[0].status;
  const lastStep = async () => (await vault.db.query<{ s: string }>('SELECT mfa_last_step::text AS s FROM users WHERE id = $1', [operator.id]))[0].s;

  beforeAll(async () => {
    vault = await startTestVault();
    admin = await vault.admin();
    operator = await vault.createUser(['operator']);
    targetId = await createFakeTarget(vault, 'postgres');
  }, 60_000);
  afterAll(async () => {
    await vault?.close();
  });

  it('the burn, its mfa.verified event and the checkout commit in one transaction (the same xmin)', async () => {
    const accountId = await newAccount();
    const res = await checkoutWith(await operator.code(), accountId).expect(201);
    const rows = await vault.db.query<{ type: string; tx: string }>(
      `SELECT type, xmin::text AS tx FROM audit_events WHERE (type = 'mfa.verified' AND subject_id = $1 AND id = (SELECT max(id) FROM audit_events WHERE type = 'mfa.verified' AND subject_id = $1))
          OR (subject_id = $2 AND type LIKE 'checkout.%')`,
      [operator.id, res.body.id],
    );
    expect(rows.map((r) => r.type).sort()).toEqual(expect.arrayContaining(['mfa.verified', 'checkout.requested']));
    expect(new Set(rows.map((r) => r.tx)).size).toBe(1);
    const [checkoutTx] = await vault.db.query<{ tx: string }>('SELECT xmin::text AS tx FROM checkouts WHERE id = $1', [res.body.id]);
    expect(checkoutTx.tx).toBe(rows[0].tx);
    // the attempt's throttle reservation was given back in that transaction: a success counts nothing
    const [{ n }] = await vault.db.query<{ n: number }>("SELECT coalesce(sum(failures), 0)::int AS n FROM auth_throttle WHERE key LIKE '%mfa:' || $1 || '%'", [operator.id]);
    expect(n).toBe(0);
  });

  it('one code, two concurrent checkouts of two accounts: exactly one is taken; the other is MFA_REPLAYED and changed nothing', async () => {
    const [a, b] = [await newAccount(), await newAccount()];
    const code = await operator.code();
    const answers = await Promise.all([checkoutWith(code, a), checkoutWith(code, b)]);
    expect(answers.map((r) => r.status).sort()).toEqual([201, 401]);
    const refused = answers.find((r) => r.status === 401)!;
    expect(refused.body.code).toBe('MFA_REPLAYED');
    expect(typeof refused.body.nextCodeAt).toBe('string');
    const statuses = [await accountStatus(a), await accountStatus(b)].sort();
    expect(statuses).toEqual(['available', 'checked_out']);
    const [{ n }] = await vault.db.query<{ n: number }>('SELECT count(*)::int AS n FROM checkouts WHERE account_id = ANY($1::uuid[])', [[a, b]]);
    expect(n).toBe(1);
    // the replay was audited as a failure, and the throttle did not count it as a guess
    const [{ failed }] = await vault.db.query<{ failed: number }>(
      "SELECT count(*)::int AS failed FROM audit_events WHERE type = 'mfa.failed' AND subject_id = $1 AND details->>'reason' = 'MFA_REPLAYED'",
      [operator.id],
    );
    expect(failed).toBeGreaterThanOrEqual(1);
  });

  it('a refused action (the account is checked out already: 409) still spends its code: the same code is MFA_REPLAYED next', async () => {
    const taken = await newAccount();
    await checkoutWith(await operator.code(), taken).expect(201);
    const code = await operator.code();
    const before = await lastStep();
    const refused = await checkoutWith(code, taken);
    expect(refused.status).toBe(409);
    expect(await lastStep()).not.toBe(before);
    const free = await newAccount();
    const again = await checkoutWith(code, free);
    expect(again.status).toBe(401);
    expect(again.body.code).toBe('MFA_REPLAYED');
    expect(await accountStatus(free)).toBe('available');
  });

  it('a wrong code is refused before anything runs and keeps counting; a right one afterwards works', async () => {
    const accountId = await newAccount();
    const wrong = await checkoutWith('000000', accountId);
    expect([401]).toContain(wrong.status);
    expect(wrong.body.code).toBe('MFA_INVALID');
    expect(await accountStatus(accountId)).toBe('available');
    await checkoutWith(await operator.code(), accountId).expect(201);
  });

  it('a request the validation pipes refuse (400) burns nothing', async () => {
    const code = await operator.code();
    const before = await lastStep();
    const bad = await vault.http().post('/v1/checkouts').set('Authorization', operator.auth).set('X-MFA-Code', code).send({ accountId: 'not-a-uuid', justification: 'x' });
    expect(bad.status).toBe(400);
    expect(await lastStep()).toBe(before);
    await checkoutWith(code, await newAccount()).expect(201);
  });
});

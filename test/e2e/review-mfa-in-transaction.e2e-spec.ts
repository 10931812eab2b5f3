import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import type { Actor } from '../../src/common/actor';
import { UnitOfWork } from '../../src/database/unit-of-work';
import { MfaService } from '../../src/identity/mfa.service';
import { createFakeTarget } from '../support/fake-target';
import { actingAs } from '../support/http';
import { startTestVault, TestUser, TestVault } from '../support/vault';

/**
 * Adversarial review of 23ab9dc (@RequiresMfa({ inTransaction: true }), MfaService.stepUp, the unit-of-work `begin`
 * hook), on the real PostgreSQL. Tests named `FINDING Fn (fixed)` describe what was found and pass now that it is
 * fixed (F1: the burn now fails closed — a transaction that rolls back gives it back, no other unit of work may commit
 * while one holds it or after a replay; F2/F3: a reservation is given back whenever the attempt was no wrong code;
 * F5: the burn requires the seed the code was checked against). F4 is accepted and documented (README, MFA rules).
 * The others pass while the defence holds.
 */
describe('review: MFA step-up burned in the action\'s transaction (e2e)', () => {
  let vault: TestVault;
  let admin: TestUser;
  let targetId: string;

  const as = (user: TestUser) => actingAs(vault, user);
  const newAccount = async () => {
    const res = await as(admin)
      .post('/v1/accounts', { targetId, username: `rv_${randomBytes(4).toString('hex')}`, password: `Orig-${randomBytes(10).toString('hex')}`, policy: { rotateAfterCheckin: false } }, true)
      .expect(201);
    return res.body.id as string;
  };
  const checkoutWith = (user: TestUser, code: string, accountId: string) =>
    vault.http().post('/v1/checkouts').set('Authorization', user.auth).set('X-MFA-Code', code).send({ accountId, justification: 'review' });
  const accountStatus = async (id: string) => (await vault.db.query<{ status: string }>('SELECT status FROM accounts WHERE id = $1', [id]))[0].status;
  const lastStep = async (user: TestUser) => (await vault.db.query<{ s: string }>('SELECT mfa_last_step::text AS s FROM users WHERE id = $1', [user.id]))[0].s;
  /** What the user's own MFA throttle key counts in its window (every valid code gives its reservation back: 0). */
  const mfaCount = async (user: TestUser) =>
    (await vault.db.query<{ n: number }>("SELECT coalesce(sum(failures), 0)::int AS n FROM auth_throttle WHERE key = 'user:mfa:' || $1", [user.id]))[0].n;
  const events = async (user: TestUser, type: string, reason?: string) =>
    (
      await vault.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM audit_events WHERE type = $2 AND subject_id = $1 AND ($3::text IS NULL OR details->>'reason' = $3)`,
        [user.id, type, reason ?? null],
      )
    )[0].n;
  const actorOf = (user: TestUser): Actor => ({ id: user.id, kind: 'user', name: user.username, roles: ['operator'], mfaEnrolled: true });
  /** A second connection of our own, to hold locks the way a slow concurrent transaction would. */
  const holder = async () => {
    const c = new Client({ connectionString: vault.db.url });
    await c.connect();
    return c;
  };
  const lockWaiters = async () =>
    (await vault.db.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'", [vault.db.name]))[0].n;
  const waitForLockWaiters = async (n: number, ms = 5_000) => {
    const until = Date.now() + ms;
    while ((await lockWaiters()) < n) {
      if (Date.now() > until) throw new Error(`expected ${n} transactions waiting on a lock`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  beforeAll(async () => {
    vault = await startTestVault();
    admin = await vault.admin();
    targetId = await createFakeTarget(vault, 'postgres');
    await vault.db.query('CREATE TABLE review_effects (tag text NOT NULL)');
  }, 60_000);
  afterAll(async () => {
    await vault?.close();
  });

  it('six concurrent checkouts with one code: exactly one runs; five are MFA_REPLAYED (nextCodeAt), audited mfa.failed, and not counted as guesses', async () => {
    const op = await vault.createUser(['operator']);
    const accounts: string[] = [];
    for (let i = 0; i < 6; i++) accounts.push(await newAccount());
    const code = await op.code();
    const answers = await Promise.all(accounts.map((a) => checkoutWith(op, code, a)));
    expect(answers.map((r) => r.status).sort()).toEqual([201, 401, 401, 401, 401, 401]);
    for (const r of answers.filter((x) => x.status === 401)) {
      expect(r.body.code).toBe('MFA_REPLAYED');
      expect(Number.isNaN(Date.parse(r.body.nextCodeAt))).toBe(false);
    }
    const [{ n }] = await vault.db.query<{ n: number }>('SELECT count(*)::int AS n FROM checkouts WHERE account_id = ANY($1::uuid[])', [accounts]);
    expect(n).toBe(1);
    expect((await Promise.all(accounts.map(accountStatus))).filter((s) => s === 'checked_out')).toHaveLength(1);
    expect(await events(op, 'mfa.verified')).toBe(1);
    expect(await events(op, 'mfa.failed', 'MFA_REPLAYED')).toBe(5);
    expect(await mfaCount(op)).toBe(0);
  });

  it('wrong codes answer MFA_INVALID, are audited and keep counting; at the limit even the right code is 429 THROTTLED and nothing runs or burns', async () => {
    const op = await vault.createUser(['operator']);
    const accountId = await newAccount();
    const before = await lastStep(op);
    for (let i = 0; i < 10; i++) {
      const wrong = await checkoutWith(op, String(100000 + i * 7919).padStart(6, '0'), accountId);
      expect(wrong.status).toBe(401);
      expect(wrong.body.code).toBe('MFA_INVALID');
    }
    expect(await events(op, 'mfa.failed', 'MFA_INVALID')).toBe(10);
    const limited = await checkoutWith(op, await op.code(), accountId);
    expect(limited.status).toBe(429);
    expect(limited.body.code).toBe('THROTTLED');
    expect(limited.body.retryAfterSeconds).toBeGreaterThan(0);
    expect(await accountStatus(accountId)).toBe('available');
    expect(await lastStep(op)).toBe(before);
    expect(await events(op, 'mfa.verified')).toBe(0);
    expect(await mfaCount(op)).toBe(10);
  });

  it('no code is MFA_REQUIRED, a malformed one MFA_INVALID; a replayed code on a refused action answers MFA_REPLAYED (not the action\'s 409) and counts nothing', async () => {
    const op = await vault.createUser(['operator']);
    const taken = await newAccount();
    const used = await op.code();
    await checkoutWith(op, used, taken).expect(201);
    const none = await vault.http().post('/v1/checkouts').set('Authorization', op.auth).send({ accountId: taken, justification: 'review' });
    expect(none.status).toBe(401);
    expect(none.body.code).toBe('MFA_REQUIRED');
    const short = await checkoutWith(op, '12345', taken);
    expect(short.status).toBe(401);
    expect(short.body.code).toBe('MFA_INVALID');
    const replay = await checkoutWith(op, used, taken);
    expect(replay.status).toBe(401);
    expect(replay.body.code).toBe('MFA_REPLAYED');
    expect(Number.isNaN(Date.parse(replay.body.nextCodeAt))).toBe(false);
    expect(await events(op, 'mfa.failed', 'MFA_REPLAYED')).toBe(1);
    expect(await mfaCount(op)).toBe(0);
  });

  it('one code raced on a new checkout (burn in its transaction) and a reveal (burn before the handler): repeated, exactly one is accepted each time', async () => {
    const op = await vault.createUser(['operator']);
    const mine = await newAccount();
    const active = (await checkoutWith(op, await op.code(), mine).expect(201)).body.id as string;
    for (let round = 0; round < 5; round++) {
      const other = await newAccount();
      const code = await op.code();
      const [co, rv] = await Promise.all([
        checkoutWith(op, code, other),
        vault.http().post(`/v1/checkouts/${active}/reveal`).set('Authorization', op.auth).set('X-MFA-Code', code).send(),
      ]);
      const ok = [co, rv].filter((r) => r.status < 300);
      expect({ round, statuses: [co.status, rv.status], accepted: ok.length }).toEqual({ round, statuses: expect.anything(), accepted: 1 });
      const refused = [co, rv].find((r) => r.status >= 300)!;
      expect(refused.status).toBe(401);
      expect(refused.body.code).toBe('MFA_REPLAYED');
      expect(await accountStatus(other)).toBe(co.status === 201 ? 'checked_out' : 'available');
    }
    expect(await mfaCount(op)).toBe(0);
  });

  it('a refused checkout (409) burns its code on its own, with one mfa.verified, and gives its reservation back', async () => {
    const op = await vault.createUser(['operator']);
    const taken = await newAccount();
    await checkoutWith(op, await op.code(), taken).expect(201);
    const refused = await checkoutWith(op, await op.code(), taken);
    expect(refused.status).toBe(409);
    expect(await events(op, 'mfa.verified')).toBe(2);
    expect(await mfaCount(op)).toBe(0);
  });

  it('a replay waits for the winner\'s transaction and is rolled back before the checkout touched its account (winner held mid-transaction)', async () => {
    const op = await vault.createUser(['operator']);
    const [a, b] = [await newAccount(), await newAccount()];
    const code = await op.code();
    const h = await holder();
    try {
      // the winner (a) burns, then waits on a's row; the replay (b) waits for the burned users row
      await h.query('BEGIN');
      await h.query('SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE', [a]);
      const first = checkoutWith(op, code, a).then((r) => r);
      await waitForLockWaiters(1);
      const second = checkoutWith(op, code, b).then((r) => r);
      await sleep(300);
      await h.query('COMMIT');
      const [ra, rb] = await Promise.all([first, second]);
      expect(ra.status).toBe(201);
      expect(rb.status).toBe(401);
      expect(rb.body.code).toBe('MFA_REPLAYED');
      expect(await accountStatus(b)).toBe('available');
      expect(await mfaCount(op)).toBe(0);
    } finally {
      await h.end();
    }
  });

  it('FINDING F2 (fixed): a refused checkout that loses the burn to a concurrent request with its code leaks its throttle reservation (a valid code counted as a guess)', async () => {
    const op = await vault.createUser(['operator']);
    const taken = await newAccount();
    await checkoutWith(op, await op.code(), taken).expect(201);
    const free = await newAccount();
    const code = await op.code();
    const h = await holder();
    try {
      // a slow transaction holds the user's row: A (refused: its account is taken) queues first, B second
      await h.query('BEGIN');
      await h.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [op.id]);
      const a = checkoutWith(op, code, taken).then((r) => r);
      await waitForLockWaiters(1);
      const b = checkoutWith(op, code, free).then((r) => r);
      await waitForLockWaiters(2);
      await h.query('COMMIT');
      const [ra, rb] = await Promise.all([a, b]);
      // A burned, was refused and rolled back; B (queued on the row) then burned and won; A's burnAlone found the step
      // used and returned false — without giving the reservation back
      expect(ra.status).toBe(409);
      expect(rb.status).toBe(201);
      expect(await mfaCount(op)).toBe(0);
    } finally {
      await h.end();
    }
  });

  it('FINDING F5 (fixed): a code matched just before an admin MFA reset (seed removed, sessions revoked) is still burned after it, and the checkout is taken', async () => {
    const op = await vault.createUser(['operator']);
    const accountId = await newAccount();
    const code = await op.code();
    const h = await holder();
    try {
      await h.query('BEGIN');
      await h.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [op.id]);
      // the code was matched against the seed; the burn waits for the users row (any slow transaction, or a pool wait)
      const pending = checkoutWith(op, code, accountId).then((r) => r);
      await waitForLockWaiters(1);
      // meanwhile the admin resets the user's MFA (what MfaService.reset writes): no seed, every session ended
      await h.query('UPDATE users SET mfa_secret = NULL, mfa_pending_secret = NULL, mfa_enrolled_at = NULL WHERE id = $1', [op.id]);
      await h.query('UPDATE access_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL', [op.id]);
      await h.query('COMMIT');
      const res = await pending;
      expect(res.status).toBe(401);
      expect(await accountStatus(accountId)).toBe('available');
    } finally {
      await h.end().catch(() => undefined);
    }
  });

  describe('a DB error in the burn (a trigger refuses the users UPDATE)', () => {
    let op: TestUser;
    beforeAll(async () => {
      op = await vault.createUser(['operator']);
      await vault.db.query('CREATE TABLE review_fail_burn (user_id uuid PRIMARY KEY)');
      await vault.db.query(`CREATE FUNCTION review_fail_burn() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.mfa_last_step IS DISTINCT FROM OLD.mfa_last_step AND EXISTS (SELECT 1 FROM review_fail_burn WHERE user_id = NEW.id) THEN
            RAISE EXCEPTION 'injected burn failure';
          END IF;
          RETURN NEW;
        END $$`);
      await vault.db.query('CREATE TRIGGER review_fail_burn BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION review_fail_burn()');
    });
    afterAll(async () => {
      await vault.db.query('DROP TRIGGER IF EXISTS review_fail_burn ON users');
    });

    it('the checkout fails (5xx), nothing ran, nothing was burned or audited as verified; the code stays usable once the DB is well', async () => {
      const accountId = await newAccount();
      const code = await op.code();
      const before = await lastStep(op);
      await vault.db.query('INSERT INTO review_fail_burn VALUES ($1)', [op.id]);
      const res = await checkoutWith(op, code, accountId);
      await vault.db.query('DELETE FROM review_fail_burn');
      expect(res.status).toBeGreaterThanOrEqual(500);
      expect(JSON.stringify(res.body)).not.toContain('injected');
      expect(await accountStatus(accountId)).toBe('available');
      expect(await lastStep(op)).toBe(before);
      expect(await events(op, 'mfa.verified')).toBe(0);
      await checkoutWith(op, code, accountId).expect(201);
    });

    it('FINDING F3 (fixed): the failed burn keeps its throttle reservation: a DB error counts as a wrong code', async () => {
      // after the test above: one DB error, one success — neither is a guess
      expect(await mfaCount(op)).toBe(0);
    });
  });

  describe('MfaService.stepUp as a contract (what a handler may do inside the action)', () => {
    it('FINDING F1 (fixed): a first unit of work that rolls back (caught by the handler) spends the pending burn: a later unit of work commits WITHOUT a burn, and a concurrent request accepts the same code too', async () => {
      const op = await vault.createUser(['operator']);
      const mfa = vault.get(MfaService);
      const uow = vault.get(UnitOfWork);
      const actor = actorOf(op);
      const code = await op.code();
      let open!: () => void;
      const gate = new Promise<void>((r) => (open = r));
      let entered!: () => void;
      const inside = new Promise<void>((r) => (entered = r));
      const action = mfa
        .stepUp(actor, code, '10.1.1.1', 'POST /review', async () => {
          // e.g. a lookup or an optimistic attempt the handler catches (a conflict, a retry)
          await uow.run(async () => Promise.reject(new Error('first attempt refused'))).catch(() => undefined);
          entered();
          await gate;
          await uow.run(async ({ em }) => em.query("INSERT INTO review_effects VALUES ('action')"));
          return 'done';
        })
        .then(
          () => 'accepted',
          (e: { code?: string }) => e.code ?? 'error',
        );
      await inside;
      // meanwhile another request (any step-up route) comes with the same code
      const other = await mfa.verify(actor, code, '10.1.1.2', 'POST /other').then(
        () => 'accepted',
        (e: { code?: string }) => e.code ?? 'error',
      );
      open();
      const first = await action;
      const [{ n }] = await vault.db.query<{ n: number }>("SELECT count(*)::int AS n FROM review_effects WHERE tag = 'action'");
      // INVARIANT 5: one code, one accepted use — the concurrent request or the action, never both
      const acceptedUses = (other === 'accepted' ? 1 : 0) + (n > 0 ? 1 : 0);
      expect({ other, first, actionCommitted: n > 0, acceptedUses }).toEqual(expect.objectContaining({ acceptedUses: 1 }));
    });

    it('FINDING F1 (fixed, fail closed): a background unit of work started inside the action (fire-and-forget) takes the burn: the action\'s own transaction is refused, nothing commits without its burn', async () => {
      const op = await vault.createUser(['operator']);
      const mfa = vault.get(MfaService);
      const uow = vault.get(UnitOfWork);
      const actor = actorOf(op);
      const tag = `bg-${randomBytes(3).toString('hex')}`;
      const answer = await mfa
        .stepUp(actor, await op.code(), '10.1.1.3', 'POST /review', async () => {
          // a nudge, a metric flush, a cache refresh… anything that runs a unit of work in the request's async context
          void uow.run(async () => sleep(200)).catch(() => undefined);
          await sleep(20);
          await uow.run(async ({ em }) => em.query('INSERT INTO review_effects VALUES ($1)', [tag]));
        })
        .then(
          () => 'accepted',
          (e: { code?: string }) => e.code ?? 'error',
        );
      await sleep(300);
      const [effect] = await vault.db.query<{ tx: string }>('SELECT xmin::text AS tx FROM review_effects WHERE tag = $1', [tag]);
      const [verified] = await vault.db.query<{ tx: string }>(
        "SELECT xmin::text AS tx FROM audit_events WHERE type = 'mfa.verified' AND subject_id = $1 ORDER BY id DESC LIMIT 1",
        [op.id],
      );
      // was: the action committed and the answer was MFA_REPLAYED. Now a second unit of work while the first holds the
      // burn is refused (StepUpUnsettled): the action does not commit, the request fails, the code is burned once
      expect({ answer, actionCommitted: effect !== undefined }).toEqual({ answer: 'error', actionCommitted: false });
      expect(await events(op, 'mfa.verified')).toBe(1);
      expect(verified).toBeDefined();
    });

    it('FINDING F1 (fixed): a handler that catches its first unit of work\'s error (a retry, a fallback) runs its next unit of work with a REPLAYED code, and it commits', async () => {
      const op = await vault.createUser(['operator']);
      const mfa = vault.get(MfaService);
      const uow = vault.get(UnitOfWork);
      const actor = actorOf(op);
      const code = await op.code();
      await mfa.verify(actor, code, '10.1.1.5', 'POST /other'); // the code is used
      const tag = `replayed-${randomBytes(3).toString('hex')}`;
      const answer = await mfa
        .stepUp(actor, code, '10.1.1.5', 'POST /review', async () => {
          for (let attempt = 0; attempt < 2; attempt++) {
            try {
              return await uow.run(async ({ em }) => em.query('INSERT INTO review_effects VALUES ($1)', [tag]));
            } catch {
              // e.g. retried on a serialization failure or a deadlock
            }
          }
        })
        .then(
          () => 'accepted',
          (e: { code?: string }) => e.code ?? 'error',
        );
      const [{ n }] = await vault.db.query<{ n: number }>('SELECT count(*)::int AS n FROM review_effects WHERE tag = $1', [tag]);
      expect(answer).toBe('MFA_REPLAYED');
      // found: the retry's transaction saw state 'replayed', skipped the burn and committed the action
      expect(n).toBe(0);
    });

    it('work scheduled after the action committed (after-commit nudges, timers) inherits the context but never burns again or skips a later request\'s burn', async () => {
      const op = await vault.createUser(['operator']);
      const mfa = vault.get(MfaService);
      const uow = vault.get(UnitOfWork);
      const actor = actorOf(op);
      const late: Array<Promise<unknown>> = [];
      await mfa.stepUp(actor, await op.code(), '10.1.1.4', 'POST /review', async () => {
        await uow.run(async (tx) => {
          await tx.em.query("INSERT INTO review_effects VALUES ('first')");
          tx.afterCommit(() => void late.push(uow.run(async ({ em }) => em.query("INSERT INTO review_effects VALUES ('after-commit')"))));
        });
        late.push(new Promise((r) => setTimeout(r, 50)).then(() => uow.run(async ({ em }) => em.query("INSERT INTO review_effects VALUES ('timer')"))));
      });
      await Promise.all(late);
      await sleep(100);
      expect(await events(op, 'mfa.verified')).toBe(1);
      // a new request's code is burned in its own checkout's transaction
      const accountId = await newAccount();
      const res = await checkoutWith(op, await op.code(), accountId).expect(201);
      const [{ tx: checkoutTx }] = await vault.db.query<{ tx: string }>('SELECT xmin::text AS tx FROM checkouts WHERE id = $1', [res.body.id]);
      const [{ tx: burnTx }] = await vault.db.query<{ tx: string }>(
        "SELECT xmin::text AS tx FROM audit_events WHERE type = 'mfa.verified' AND subject_id = $1 ORDER BY id DESC LIMIT 1",
        [op.id],
      );
      expect(burnTx).toBe(checkoutTx);
      expect(await events(op, 'mfa.verified')).toBe(2);
    });
  });

  it('FINDING F4 (accepted, documented): while a checkout transaction waits (here on its account row), the same user\'s other MFA attempts wait for it (the burn holds the users row until the checkout commits, a row of that user only), and the wait ends with the transaction', async () => {
    const op = await vault.createUser(['operator']);
    const accountId = await newAccount();
    const mfa = vault.get(MfaService);
    const h = await holder();
    try {
      await h.query('BEGIN');
      await h.query('SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE', [accountId]);
      const stalled = checkoutWith(op, await op.code(), accountId).then((r) => r);
      await waitForLockWaiters(1);
      // a newer code for another step-up (another route, another address): independent of the stalled checkout
      const newer = await op.code();
      const other = mfa.verify(actorOf(op), newer, '10.2.2.2', 'POST /other').then(() => 'done', (e: { code?: string }) => e.code ?? 'error');
      const outcome = await Promise.race([other, sleep(1_500).then(() => 'still waiting')]);
      await h.query('COMMIT');
      await stalled;
      expect(outcome).toBe('still waiting');
      // it is decided once the checkout's transaction ended (MFA_REPLAYED when the helper's "newer" code was the same step)
      expect(['done', 'MFA_REPLAYED']).toContain(await other);
    } finally {
      await h.end();
    }
  });
});

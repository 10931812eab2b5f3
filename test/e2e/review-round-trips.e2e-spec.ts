/**
 * Adversarial review of issue 17's round-trip-lean core paths (f2b8331, 6e56d62, 22ae36e), on the real PostgreSQL:
 * the unit of work's hand-made BEGIN batch, the buffered audit events written by a before-commit hook, the throttle's
 * one-statement reservation refused by a deliberate division by zero, the sealer's longer nudge, the checkout
 * cleanup's one-statement settle. "No change without its audit event and no event without its change" is attacked at
 * every failure point (work throws, flush fails, COMMIT fails, backend killed, BEGIN batch fails half-way, savepoints);
 * connections must never go back to the pool inside a transaction (checked on a pool of ONE connection).
 * Tests named `FINDING n: … (fixed)` showed a defect and pass now that it is fixed; `holds: …` are defences that held.
 */
import { DataSource } from 'typeorm';
import { AuditQueryService } from '../../src/audit/audit-query.service';
import { AuditService } from '../../src/audit/audit.service';
import { dataSourceOptions } from '../../src/database/data-source';
import { Tx, TxParticipant, UnitOfWork } from '../../src/database/unit-of-work';
import { IdentityService } from '../../src/identity/identity.service';
import { ThrottleService, THROTTLE_RULES } from '../../src/identity/throttle.service';
import { randomBytes } from 'node:crypto';
import { createFakeTarget } from '../support/fake-target';
import { actingAs } from '../support/http';
import { buildModule, ModuleHarness } from '../support/module-harness';
import { startTestVault, TestUser, TestVault } from '../support/vault';

describe('review: round-trip-lean unit of work, audit buffering and throttle (real PostgreSQL)', () => {
  let h: ModuleHarness;
  /** A data source with a pool of ONE connection: whatever a failed unit of work leaves on it, the next one meets. */
  let one: DataSource;
  let uow1: UnitOfWork;

  const event = (tag: string, extra: Record<string, unknown> = {}) => ({ actor: null, type: 'review.round_trip', subjectType: 'review', subjectId: tag, details: { tag, ...extra } });
  const eventsOf = async (tag: string) => (await h.db.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_events WHERE subject_type = 'review' AND subject_id = $1", [tag]))[0].n;
  const effectsOf = async (tag: string) => (await h.db.query<{ n: number }>('SELECT count(*)::int AS n FROM review_effects WHERE tag = $1', [tag]))[0].n;
  const change = (tx: Tx, tag: string) => tx.em.query('INSERT INTO review_effects (tag) VALUES ($1)', [tag]);
  /** Sessions of our pool-of-one data source left inside a transaction (open or aborted). */
  const openTransactions = async () =>
    (await h.db.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'review-pool-1' AND state LIKE 'idle in transaction%'", [h.db.name]))[0].n;
  /** The one connection answers an autocommit statement outside any leftover transaction. */
  const cleanAfterwards = async () => {
    const [r] = await one.query('SELECT now() = statement_timestamp() AS fresh, txid_current_if_assigned() IS NULL AS unassigned');
    expect(r).toEqual({ fresh: true, unassigned: true });
    await expect(uow1.run(async (tx) => tx.audit(event('after')))).resolves.toMatch(/^\d+$/);
    expect(await openTransactions()).toBe(0);
  };
  const pool = (ds: DataSource) => (ds.driver as unknown as { master: { totalCount: number; idleCount: number; waitingCount: number } }).master;

  beforeAll(async () => {
    h = await buildModule();
    await h.db.query('CREATE TABLE review_effects (tag text NOT NULL)');
    // a constraint checked at COMMIT: an effect tagged poison… is refused then, after the audit flush
    await h.db.query(`CREATE FUNCTION review_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.tag LIKE 'poison%' THEN RAISE EXCEPTION 'refused at commit' USING ERRCODE = '23514'; END IF; RETURN NULL; END $$`);
    await h.db.query('CREATE CONSTRAINT TRIGGER review_refuse AFTER INSERT ON review_effects DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION review_refuse()');
    const o = dataSourceOptions(h.db.url, 1);
    one = new DataSource({ ...o, extra: { ...(o.extra as object), application_name: 'review-pool-1' } } as typeof o);
    await one.initialize();
    uow1 = new UnitOfWork(one);
    uow1.register(h.get(AuditService));
  }, 60_000);
  afterAll(async () => {
    if (one?.isInitialized) await one.destroy();
    await h?.close();
  });

  describe('no event without its change, no change without its event', () => {
    it('holds: work that throws after tx.audit leaves neither the change nor the event; afterRollback runs, afterCommit does not', async () => {
      const seen: string[] = [];
      await expect(
        uow1.run(async (tx) => {
          tx.afterCommit(() => seen.push('commit'));
          tx.afterRollback(() => seen.push('rollback'));
          await change(tx, 'throws');
          await tx.audit(event('throws'));
          throw new Error('refused');
        }),
      ).rejects.toThrow('refused');
      expect(seen).toEqual(['rollback']);
      expect(await eventsOf('throws')).toBe(0);
      expect(await effectsOf('throws')).toBe(0);
      await cleanAfterwards();
    });

    it('holds: an event that cannot be stored fails the flush before COMMIT: the change is rolled back and the unit of work throws', async () => {
      const seen: string[] = [];
      await expect(
        uow1.run(async (tx) => {
          tx.afterCommit(() => seen.push('commit'));
          tx.afterRollback(() => seen.push('rollback'));
          await change(tx, 'unstorable');
          await tx.audit(event('unstorable-ok'));
          // type is NOT NULL: the INSERT of the whole batch fails, at the flush
          await tx.audit({ ...event('unstorable'), type: null as unknown as string });
        }),
      ).rejects.toThrow(/null value/);
      expect(seen).toEqual(['rollback']);
      expect(await effectsOf('unstorable')).toBe(0);
      expect(await eventsOf('unstorable-ok')).toBe(0);
      await cleanAfterwards();
    });

    it('holds: the work swallowing a failed statement cannot commit its change without the events (aborted transaction: the flush fails)', async () => {
      await expect(
        uow1.run(async (tx) => {
          await change(tx, 'swallowed');
          await tx.audit(event('swallowed'));
          await tx.em.query('SELECT 1/0').catch(() => undefined);
        }),
      ).rejects.toThrow(/current transaction is aborted/);
      expect(await effectsOf('swallowed')).toBe(0);
      expect(await eventsOf('swallowed')).toBe(0);
      await cleanAfterwards();
    });

    it('holds: COMMIT refused (a deferred constraint) after the flush: neither events nor change, afterRollback runs, the connection is clean', async () => {
      const seen: string[] = [];
      await expect(
        uow1.run(async (tx) => {
          tx.afterCommit(() => seen.push('commit'));
          tx.afterRollback(() => seen.push('rollback'));
          await tx.audit(event('poison-commit'));
          await change(tx, 'poison-commit');
        }),
      ).rejects.toThrow('refused at commit');
      expect(seen).toEqual(['rollback']);
      expect(await eventsOf('poison-commit')).toBe(0);
      expect(await effectsOf('poison-commit')).toBe(0);
      await cleanAfterwards();
    });

    it('holds: the backend killed between BEGIN and COMMIT: nothing committed, the dead connection leaves the pool, the next unit of work runs', async () => {
      const seen: string[] = [];
      await expect(
        uow1.run(async (tx) => {
          tx.afterRollback(() => seen.push('rollback'));
          const [{ pid }] = await tx.em.query('SELECT pg_backend_pid() AS pid');
          await change(tx, 'killed');
          await tx.audit(event('killed'));
          await h.db.query('SELECT pg_terminate_backend($1)', [pid]);
        }),
      ).rejects.toThrow();
      expect(seen).toEqual(['rollback']);
      expect(await eventsOf('killed')).toBe(0);
      expect(await effectsOf('killed')).toBe(0);
      await cleanAfterwards();
    });

    it('holds: the backend killed while the pooled connection is idle: the BEGIN batch fails or reconnects, never runs in a leftover state', async () => {
      await uow1.run(async (tx) => tx.audit(event('warm')));
      const [{ pid }] = await h.db.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'review-pool-1'", [h.db.name]);
      await h.db.query('SELECT pg_terminate_backend($1)', [pid]);
      await uow1.run(async (tx) => tx.audit(event('idle-killed'))).catch(() => undefined);
      await cleanAfterwards();
    });

    const failingBegin = (sql: string, rows: () => void = () => undefined): TxParticipant => ({
      join: () => undefined,
      withBegin: { sql, rows },
    });
    const withParticipant = async (p: TxParticipant, fn: () => Promise<void>) => {
      uow1.register(p);
      try {
        await fn();
      } finally {
        const list = (uow1 as unknown as { participants: TxParticipant[] }).participants;
        list.splice(list.indexOf(p), 1);
      }
    };

    it('holds: the BEGIN batch failing half-way (a statement after START TRANSACTION): the connection goes back to the pool outside any transaction', async () => {
      await withParticipant(failingBegin('SELECT 1/0'), async () => {
        await expect(uow1.run(async (tx) => change(tx, 'begin-failed'))).rejects.toThrow(/division by zero/);
      });
      expect(await effectsOf('begin-failed')).toBe(0);
      await cleanAfterwards();
    });

    it('holds: a participant failing on the BEGIN batch\'s rows: the transaction is rolled back, nothing commits', async () => {
      await withParticipant(
        failingBegin('SELECT 1 AS x', () => {
          throw new Error('rows refused');
        }),
        async () => {
          await expect(uow1.run(async (tx) => change(tx, 'rows-failed'))).rejects.toThrow('rows refused');
        },
      );
      expect(await effectsOf('rows-failed')).toBe(0);
      await cleanAfterwards();
    });
  });

  describe('savepoints inside a unit of work', () => {
    it('FINDING 1: an event recorded with tx.audit inside a savepoint that rolls back is rolled back with it (it was buffered and written at COMMIT whatever the savepoint did) (fixed)', async () => {
      await uow1.run(async (tx) => {
        await change(tx, 'sp-outer');
        await tx.audit(event('sp-outer'));
        await tx.em
          .transaction(async (inner) => {
            await inner.query('INSERT INTO review_effects (tag) VALUES ($1)', ['sp-inner']);
            await tx.audit(event('sp-inner'));
            throw new Error('inner refused');
          })
          .catch(() => undefined);
      });
      expect(await effectsOf('sp-outer')).toBe(1);
      expect(await eventsOf('sp-outer')).toBe(1);
      expect(await effectsOf('sp-inner')).toBe(0);
      expect(await eventsOf('sp-inner')).toBe(0); // no event without its change
      await cleanAfterwards();
    });

    it('holds: an event recorded inside a savepoint that is released commits with the unit of work, and goes with it when the unit rolls back', async () => {
      await uow1.run(async (tx) => {
        await tx.em.transaction(async (inner) => {
          await inner.query('INSERT INTO review_effects (tag) VALUES ($1)', ['sp-kept']);
          await tx.audit(event('sp-kept'));
        });
      });
      expect(await eventsOf('sp-kept')).toBe(1);
      expect(await effectsOf('sp-kept')).toBe(1);
      await expect(
        uow1.run(async (tx) => {
          await tx.em.transaction(async (inner) => {
            await inner.query('INSERT INTO review_effects (tag) VALUES ($1)', ['sp-then-outer-fails']);
            await tx.audit(event('sp-then-outer-fails'));
          });
          throw new Error('outer refused');
        }),
      ).rejects.toThrow('outer refused');
      expect(await eventsOf('sp-then-outer-fails')).toBe(0);
      expect(await effectsOf('sp-then-outer-fails')).toBe(0);
      await cleanAfterwards();
    });
  });

  it('holds: 300 concurrent units of work (some failing, some with savepoints rolled back): every committed event sealed once, in one gapless chain that verifies', async () => {
    const uow = h.get(UnitOfWork);
    const outcomes = await Promise.allSettled(
      Array.from({ length: 300 }, (_, i) =>
        uow.run(async (tx) => {
          await change(tx, `c${i}`);
          for (let k = 0; k <= i % 6; k++) await tx.audit(event(`c${i}`, { k }));
          if (i % 5 === 0) {
            await tx.em
              .transaction(async () => {
                await tx.audit(event(`sp${i}`));
                throw new Error('savepoint refused');
              })
              .catch(() => undefined);
          }
          if (i % 11 === 0) throw new Error('refused');
        }),
      ),
    );
    const committed = outcomes.map((o, i) => (o.status === 'fulfilled' ? i : -1)).filter((i) => i >= 0);
    expect(committed.length).toBe(300 - Math.ceil(300 / 11));
    const verdict = await h.get(AuditQueryService).verify();
    expect(verdict).toMatchObject({ ok: true });
    const [counts] = await h.db.query<{ events: number; unsealed: number; maxseq: string; n: number }>(
      "SELECT count(*) FILTER (WHERE subject_type = 'review' AND subject_id ~ '^c[0-9]+$')::int AS events, count(*) FILTER (WHERE seq IS NULL)::int AS unsealed, max(seq)::text AS maxseq, count(*)::int AS n FROM audit_events",
    );
    expect(counts.events).toBe(committed.reduce((s, i) => s + (i % 6) + 1, 0));
    expect(counts.unsealed).toBe(0);
    expect(counts.maxseq).toBe(String(counts.n)); // seq 1..n, no gap, no duplicate (seq is UNIQUE)
    for (const i of [0, 11, 22]) expect(await eventsOf(`c${i}`)).toBe(0);
    expect((await h.db.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_events WHERE subject_type = 'review' AND subject_id ~ '^sp[0-9]+$'"))[0].n).toBe(0);
    for (const i of [1, 5, 299]) expect(await eventsOf(`c${i}`)).toBe((i % 6) + 1);
  }, 120_000);

  describe('throttle reservation in one statement', () => {
    const rows = async (like: string) => h.db.query<{ key: string; failures: number }>('SELECT key, failures FROM auth_throttle WHERE key LIKE $1 ORDER BY key', [like]);

    it('holds: 300 concurrent reservations from 300 addresses against a user whose key is full: all 429, no pair key counted or created', async () => {
      const subject = '11111111-2222-4333-8444-555555555555';
      await h.db.query('INSERT INTO auth_throttle (key, failures, window_start) VALUES ($1, $2, now())', [`user:mfa:${subject}`, THROTTLE_RULES.user.max]);
      const throttle = h.get(ThrottleService);
      const results = await Promise.allSettled(Array.from({ length: 300 }, (_, i) => throttle.reserve('mfa', { subject, address: `198.51.${i >> 8}.${i & 255}` })));
      expect(results.filter((r) => r.status === 'rejected' && (r.reason as { status?: number }).status === 429)).toHaveLength(300);
      expect(await rows(`pair:mfa:${subject}@%`)).toEqual([]);
      expect(await rows(`user:mfa:${subject}`)).toEqual([{ key: `user:mfa:${subject}`, failures: THROTTLE_RULES.user.max }]);
    }, 60_000);

    it('holds: 300 concurrent reservations across 20 users (one of them full, one window ended): each key counts exactly its limit, the full one nothing', async () => {
      const throttle = h.get(ThrottleService);
      const users = Array.from({ length: 20 }, (_, i) => `aaaaaaaa-0000-4000-8000-${String(i).padStart(12, '0')}`);
      const address = '203.0.113.9';
      await h.db.query('INSERT INTO auth_throttle (key, failures, window_start) VALUES ($1, $2, now())', [`pair:mfa:${users[0]}@${address}`, THROTTLE_RULES.pair.max]);
      // an ended window, full: counts again from 1
      await h.db.query("INSERT INTO auth_throttle (key, failures, window_start) VALUES ($1, $2, now() - interval '16 minutes')", [`pair:mfa:${users[1]}@${address}`, THROTTLE_RULES.pair.max]);
      const results = await Promise.allSettled(Array.from({ length: 300 }, (_, i) => throttle.reserve('mfa', { subject: users[i % 20], address })));
      const failedOtherwise = results.filter((r) => r.status === 'rejected' && (r.reason as { status?: number }).status !== 429);
      expect(failedOtherwise).toEqual([]);
      for (const [i, u] of users.entries()) {
        const ok = results.filter((r, j) => j % 20 === i && r.status === 'fulfilled').length;
        expect(ok).toBe(i === 0 ? 0 : THROTTLE_RULES.pair.max);
        const [pair] = await rows(`pair:mfa:${u}@${address}`);
        const [user] = await rows(`user:mfa:${u}`);
        expect(pair.failures).toBe(THROTTLE_RULES.pair.max);
        expect(user?.failures ?? 0).toBe(ok); // a refused attempt counted nowhere, the user key included
      }
    }, 60_000);

    it('holds: another error of the statement is never taken for "throttled" nor lets the attempt through, and leaves nothing counted', async () => {
      const throttle = h.get(ThrottleService);
      const subject = 'bbbbbbbb-0000-4000-8000-000000000001';
      await h.db.query(`CREATE FUNCTION review_throttle_fail() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.key LIKE 'user:mfa:bbbbbbbb%' THEN RAISE EXCEPTION 'storage failed' USING ERRCODE = '53100'; END IF; RETURN NEW; END $$`);
      await h.db.query('CREATE TRIGGER review_throttle_fail BEFORE INSERT OR UPDATE ON auth_throttle FOR EACH ROW EXECUTE FUNCTION review_throttle_fail()');
      try {
        const e = await throttle.reserve('mfa', { subject, address: '192.0.2.77' }).then(
          () => null,
          (err: unknown) => err as { status?: number; code?: string },
        );
        expect(e).not.toBeNull();
        expect(e?.status).not.toBe(429);
        expect(e?.code).toBe('53100');
        expect(await rows(`%${subject}%`)).toEqual([]);
      } finally {
        await h.db.query('DROP TRIGGER review_throttle_fail ON auth_throttle');
      }
    });

    /** A trigger on auth_throttle that fails the reservation statement with `sqlstate` for keys like `like`. */
    const failingThrottle = async (sqlstate: string, like: string, fn: () => Promise<void>) => {
      await h.db.query(`CREATE OR REPLACE FUNCTION review_throttle_state() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.key LIKE '${like}' THEN RAISE EXCEPTION 'reservation failed' USING ERRCODE = '${sqlstate}'; END IF; RETURN NEW; END $$`);
      await h.db.query('CREATE TRIGGER review_throttle_state BEFORE INSERT OR UPDATE ON auth_throttle FOR EACH ROW EXECUTE FUNCTION review_throttle_state()');
      try {
        await fn();
      } finally {
        await h.db.query('DROP TRIGGER review_throttle_state ON auth_throttle');
      }
    };

    it('holds: a reservation that fails (not throttled) lets no password be evaluated: the right password gets no token, nothing is counted', async () => {
      const identity = h.get(IdentityService);
      const sessions = async () => (await h.db.query<{ n: number }>('SELECT count(*)::int AS n FROM access_tokens'))[0].n;
      const before = await sessions();
      await failingThrottle('53100', 'pair:pw:%@192.0.2.88', async () => {
        const e = await identity.login({ username: 'admin', password: h.config.bootstrapAdminPassword as string } as never, '192.0.2.88').then(
          () => null,
          (err: unknown) => err as { status?: number; code?: string; message?: string },
        );
        expect(e).not.toBeNull();
        expect(e?.status).toBeUndefined(); // not a domain answer (the request is a 500), never a token
        expect(String(e?.message)).not.toContain(h.config.bootstrapAdminPassword as string);
      });
      expect(await sessions()).toBe(before);
      expect(await rows('%@192.0.2.88')).toEqual([]);
      // and a division by zero from elsewhere in the statement is "throttled": refused, never evaluated (fail closed)
      await failingThrottle('22012', 'pair:pw:%@192.0.2.89', async () => {
        await expect(identity.login({ username: 'admin', password: h.config.bootstrapAdminPassword as string } as never, '192.0.2.89')).rejects.toMatchObject({ status: 429 });
      });
      expect(await sessions()).toBe(before);
      expect(await rows('%@192.0.2.89')).toEqual([]);
      // the same login with a reservation that works is let in (what refused it above was the reservation alone)
      await expect(identity.login({ username: 'admin', password: h.config.bootstrapAdminPassword as string } as never, '192.0.2.90')).resolves.toMatchObject({ accessToken: expect.any(String) });
    });
  });

  it('holds: no connection or query runner is left checked out after all of the above', async () => {
    for (const ds of [h.dataSource, one]) {
      const p = pool(ds);
      expect(p.waitingCount).toBe(0);
      expect(p.idleCount).toBe(p.totalCount);
      expect((ds.driver as unknown as { connectedQueryRunners: unknown[] }).connectedQueryRunners).toHaveLength(0);
    }
  });
});

/**
 * The step-up burn, its `mfa.verified` event and the action are one transaction whose events are now written by the
 * before-commit flush in ONE INSERT with the action's events: a failure of that INSERT, or of COMMIT, must take the burn
 * back with the action (then the refused request spends its code in a transaction of its own, with its event).
 */
describe('review: MFA step-up with the buffered audit flush (e2e)', () => {
  let vault: TestVault;
  let admin: TestUser;
  let operator: TestUser;
  let targetId: string;
  const newAccount = async () => {
    const res = await actingAs(vault, admin)
      .post('/v1/accounts', { targetId, username: `rr_${randomBytes(4).toString('hex')}`, password: `Orig-${randomBytes(10).toString('hex')}`, policy: { rotateAfterCheckin: false } }, true)
      .expect(201);
    return res.body.id as string;
  };
  const checkoutWith = (code: string, accountId: string, justification: string) =>
    vault.http().post('/v1/checkouts').set('Authorization', operator.auth).set('X-MFA-Code', code).send({ accountId, justification });
  const lastStep = async () => (await vault.db.query<{ s: string }>('SELECT mfa_last_step::text AS s FROM users WHERE id = $1', [operator.id]))[0].s;
  const verified = async () => (await vault.db.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_events WHERE type = 'mfa.verified' AND subject_id = $1", [operator.id]))[0].n;
  const state = async (accountId: string) => ({
    checkouts: (await vault.db.query<{ n: number }>('SELECT count(*)::int AS n FROM checkouts WHERE account_id = $1', [accountId]))[0].n,
    status: (await vault.db.query<{ status: string }>('SELECT status FROM accounts WHERE id = $1', [accountId]))[0].status,
    events: (await vault.db.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_events WHERE details->>'accountId' = $1", [accountId]))[0].n,
  });
  /** Sessions of the vault left inside a transaction: a leaked one stays; the sealer's own pass ends within moments. */
  const openTransactions = async () => {
    const count = async () =>
      (await vault.db.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND state LIKE 'idle in transaction%'", [vault.db.name]))[0].n;
    for (let i = 0; i < 50 && (await count()) > 0; i++) await new Promise((r) => setTimeout(r, 100));
    return count();
  };

  beforeAll(async () => {
    vault = await startTestVault();
    admin = await vault.admin();
    operator = await vault.createUser(['operator']);
    targetId = await createFakeTarget(vault, 'postgres');
    // the flush INSERT refused (a checkout event whose justification says so), or COMMIT refused (deferred)
    await vault.db.query(`CREATE FUNCTION review_refuse_event() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.details->>'justification' = 'poison-' || TG_ARGV[0] THEN RAISE EXCEPTION 'event refused' USING ERRCODE = '23514'; END IF; RETURN NEW; END $$`);
    await vault.db.query("CREATE TRIGGER review_refuse_flush BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION review_refuse_event('flush')");
    await vault.db.query(
      "CREATE CONSTRAINT TRIGGER review_refuse_commit AFTER INSERT ON audit_events DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION review_refuse_event('commit')",
    );
  }, 60_000);
  afterAll(async () => {
    await vault?.close();
  });

  for (const where of ['flush', 'commit'] as const) {
    it(`holds: the action's audit ${where === 'flush' ? 'INSERT' : 'COMMIT'} refused: no checkout, no event of it, the code spent once with exactly one mfa.verified (its own transaction), replay refused`, async () => {
      const accountId = await newAccount();
      const code = await operator.code();
      const [stepBefore, verifiedBefore] = [await lastStep(), await verified()];
      const res = await checkoutWith(code, accountId, `poison-${where}`);
      expect(res.status).toBe(500);
      expect(JSON.stringify(res.body)).not.toMatch(/Orig-|credential|password/i);
      expect(await state(accountId)).toEqual({ checkouts: 0, status: 'available', events: 0 });
      // the refused request spent its code: burned once, with its event, in a transaction of its own
      expect(await lastStep()).not.toBe(stepBefore);
      expect(await verified()).toBe(verifiedBefore + 1);
      const [burn] = await vault.db.query<{ same: boolean }>(
        `SELECT (SELECT xmin FROM users WHERE id::text = $1)::text = (SELECT xmin FROM audit_events WHERE type = 'mfa.verified' AND subject_id = $1 ORDER BY id DESC LIMIT 1)::text AS same`,
        [operator.id],
      );
      if (!burn.same) {
        const events = await vault.db.query('SELECT id, type, xmin::text, details FROM audit_events WHERE subject_id = $1 ORDER BY id DESC LIMIT 4', [operator.id]);
        const user = await vault.db.query('SELECT xmin::text, mfa_last_step FROM users WHERE id::text = $1', [operator.id]);
        throw new Error(`the burn and its mfa.verified are not in one transaction: ${JSON.stringify({ events, user })}`);
      }
      const again = await checkoutWith(code, accountId, 'a fair reason');
      expect(again.status).toBe(401);
      expect(again.body.code).toBe('MFA_REPLAYED');
      expect(await verified()).toBe(verifiedBefore + 1);
      expect(await state(accountId)).toMatchObject({ checkouts: 0, status: 'available' });
      expect(await openTransactions()).toBe(0);
      // and a fresh code works: nothing was left locked or half-done
      await checkoutWith(await operator.code(), accountId, 'a fair reason').expect(201);
      expect(await verified()).toBe(verifiedBefore + 2);
    });
  }

  it('holds: 60 concurrent step-up checkouts (one code each, refused ones among them) and the chain verifies over HTTP', async () => {
    const auditor = await vault.createUser(['auditor']);
    const accounts: string[] = [];
    for (let i = 0; i < 30; i++) accounts.push(await newAccount());
    const code = await operator.code();
    const verifiedBefore = await verified();
    // one code for 60 requests on 30 accounts: exactly one is taken, every other one is refused (replay), nothing else
    const answers = await Promise.all([...accounts, ...accounts].map((a) => checkoutWith(code, a, 'a fair reason')));
    expect(answers.filter((r) => r.status === 201)).toHaveLength(1);
    // the others: the code was used (or, 60 at once against a pair limit of 10 in flight, throttled before evaluation)
    const others = answers.filter((r) => r.status !== 201).map((r) => `${r.status} ${r.body.code}`);
    expect(others.filter((o) => o !== '401 MFA_REPLAYED' && o !== '429 THROTTLED')).toEqual([]);
    expect(await verified()).toBe(verifiedBefore + 1);
    const [{ n }] = await vault.db.query<{ n: number }>('SELECT count(*)::int AS n FROM checkouts WHERE account_id = ANY($1::uuid[])', [accounts]);
    expect(n).toBe(1);
    const res = await actingAs(vault, auditor).get('/v1/audit-events/verify').expect(200);
    expect(res.body.ok).toBe(true);
    expect(await openTransactions()).toBe(0);
  }, 60_000);
});

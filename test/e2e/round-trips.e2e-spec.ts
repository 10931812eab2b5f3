/**
 * Issue 17's "one round-trip-lean transaction": what the hot paths send to the vault's database, statement by
 * statement, and that the leaner forms keep their guarantees.
 * - a unit of work's BEGIN carries the audit module's event ids (one simple-protocol message), and all its events are
 *   written in one INSERT right before COMMIT, so a unit of work costs one audit round trip whatever its number of
 *   events; more events than the ids taken still get unique ascending ids; a rollback leaves nothing and the
 *   connection is clean for the next unit of work; nested savepoints still work;
 * - a throttle reservation is one statement (no BEGIN/COMMIT) and still counts nowhere when one of its keys is full.
 */
import { Client } from 'pg';
import { AuditSealer } from '../../src/audit/audit-sealer.service';
import { AuditService } from '../../src/audit/audit.service';
import { UnitOfWork } from '../../src/database/unit-of-work';
import { ThrottleService, THROTTLE_RULES } from '../../src/identity/throttle.service';
import { buildModule, ModuleHarness } from '../support/module-harness';

describe('round trips of the hot paths (vault database, real PostgreSQL)', () => {
  let h: ModuleHarness;
  let sent: string[] | null = null;
  const proto = Client.prototype as unknown as { query: (...a: unknown[]) => unknown };
  const original = proto.query;

  beforeAll(async () => {
    h = await buildModule();
    proto.query = function (this: unknown, ...a: unknown[]) {
      const q = a[0];
      sent?.push((typeof q === 'string' ? q : ((q as { text?: string })?.text ?? '')).replace(/\s+/g, ' ').trim());
      return original.apply(this, a);
    };
  });
  afterAll(async () => {
    proto.query = original;
    await h?.close();
  });

  /** The statements `fn` sends (every pg client of this process; nothing else runs meanwhile). */
  const statementsOf = async (fn: () => Promise<unknown>): Promise<string[]> => {
    // the sealer's pass nudged by an earlier test's commit must not run meanwhile
    const sealer = h.get(AuditSealer) as unknown as { running: Promise<void> | null };
    while (sealer.running) await sealer.running;
    sent = [];
    try {
      await fn();
      return sent;
    } finally {
      sent = null;
    }
  };
  const event = (n: number) => ({ actor: null, type: 'test.round_trip', subjectType: 'test', subjectId: `s${n}`, details: { n } });

  it('a unit of work with one audit event is three round trips: BEGIN with the event ids, the INSERT, COMMIT', async () => {
    const uow = h.get(UnitOfWork);
    let id = '';
    const sql = await statementsOf(() => uow.run(async (tx) => void (id = await tx.audit(event(1)))));
    expect(sql).toHaveLength(3);
    expect(sql[0]).toMatch(/^START TRANSACTION; SELECT nextval\('audit_events_id_seq'\)/);
    expect(sql[1]).toMatch(/^INSERT INTO audit_events /);
    expect(sql[2]).toBe('COMMIT');
    const [row] = await h.db.query<{ type: string }>('SELECT type FROM audit_events WHERE id = $1', [id]);
    expect(row.type).toBe('test.round_trip');
  });

  it('several events, more than the ids taken with BEGIN: one more round trip for ids, one INSERT, ids unique and ascending in order', async () => {
    const uow = h.get(UnitOfWork);
    let ids: string[] = [];
    const sql = await statementsOf(() =>
      uow.run(async (tx) => {
        for (const n of [0, 1, 2, 3, 4, 5, 6]) ids.push(await tx.audit(event(n)));
      }),
    );
    expect(sql.filter((s) => s.includes("nextval('audit_events_id_seq')"))).toHaveLength(2); // BEGIN's, then the rest
    expect(sql.filter((s) => s.startsWith('INSERT INTO audit_events'))).toHaveLength(1);
    expect(sql).toHaveLength(4);
    expect(new Set(ids).size).toBe(7);
    expect([...ids].sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : 1))).toEqual(ids);
    const rows = await h.db.query<{ id: string; n: number }>("SELECT id::text AS id, (details->>'n')::int AS n FROM audit_events WHERE id = ANY($1::bigint[]) ORDER BY audit_events.id", [ids]);
    expect(rows.map((r) => r.n)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    // recordMany writes at once, in one INSERT, with ids beyond the BEGIN's
    ids = [];
    await uow.run(async (tx) => void (ids = await h.get(AuditService).recordMany(tx.em, [7, 8, 9, 10, 11].map(event))));
    expect(await h.db.query('SELECT 1 FROM audit_events WHERE id = ANY($1::bigint[])', [ids])).toHaveLength(5);
  });

  it('an event recorded by a before-commit hook added after the flush is still written', async () => {
    const uow = h.get(UnitOfWork);
    let late = '';
    await uow.run(async (tx) => {
      await tx.audit(event(12));
      tx.beforeCommit(async () => void (late = await tx.audit(event(13))));
    });
    expect(await h.db.query('SELECT 1 FROM audit_events WHERE id = $1', [late])).toHaveLength(1);
  });

  it('a unit of work that throws leaves nothing, and the next one (same pool) starts clean', async () => {
    const uow = h.get(UnitOfWork);
    let id = '';
    await expect(
      uow.run(async (tx) => {
        id = await tx.audit(event(7));
        throw new Error('refused');
      }),
    ).rejects.toThrow('refused');
    expect(await h.db.query('SELECT 1 FROM audit_events WHERE id = $1', [id])).toEqual([]);
    // a failed statement inside: the transaction is rolled back and the connection goes back usable
    await expect(uow.run((tx) => tx.em.query('SELECT 1/0'))).rejects.toThrow();
    const states = await Promise.all(Array.from({ length: 12 }, () => uow.run(async (tx) => (await tx.em.query("SELECT current_setting('transaction_isolation') AS iso, now() = statement_timestamp() AS fresh"))[0])));
    expect(states.every((s: { iso: string }) => s.iso === 'read committed')).toBe(true);
  });

  it('nested transactions inside a unit of work are savepoints of it', async () => {
    const uow = h.get(UnitOfWork);
    let kept = '';
    let undone = '';
    await uow.run(async (tx) => {
      kept = await tx.audit(event(8));
      await tx.em
        .transaction(async (inner) => {
          undone = await h.get(AuditService).record(inner, event(9));
          throw new Error('inner');
        })
        .catch(() => undefined);
    });
    expect(await h.db.query('SELECT 1 FROM audit_events WHERE id = $1', [kept])).toHaveLength(1);
    expect(await h.db.query('SELECT 1 FROM audit_events WHERE id = $1', [undone])).toEqual([]);
  });

  describe('throttle reservation', () => {
    const subject = '0b8c3a52-94c4-4c5e-9d61-2f3c4d5e6f70';

    it('is one statement, without BEGIN/COMMIT', async () => {
      const throttle = h.get(ThrottleService);
      const sql = await statementsOf(() => throttle.reserve('mfa', { subject, address: '192.0.2.10' }));
      expect(sql).toHaveLength(1);
      expect(sql[0]).toMatch(/^WITH counted AS \( INSERT INTO auth_throttle /);
    });

    it('counts nowhere when one key is full (the others are not counted either), and answers 429', async () => {
      const throttle = h.get(ThrottleService);
      const user = `user:mfa:${subject}`;
      const pair = `pair:mfa:${subject}@192.0.2.11`;
      await h.db.query("INSERT INTO auth_throttle (key, failures, window_start) VALUES ($1, $2, now()) ON CONFLICT (key) DO UPDATE SET failures = $2, window_start = now()", [user, THROTTLE_RULES.user.max]);
      await expect(throttle.reserve('mfa', { subject, address: '192.0.2.11' })).rejects.toMatchObject({ status: 429 });
      expect(await h.db.query('SELECT failures FROM auth_throttle WHERE key = $1', [pair])).toEqual([]);
      const [u] = await h.db.query<{ failures: number }>('SELECT failures FROM auth_throttle WHERE key = $1', [user]);
      expect(u.failures).toBe(THROTTLE_RULES.user.max);
      // a window that ended: the key counts again from 1, the pair with it
      await h.db.query("UPDATE auth_throttle SET window_start = now() - interval '2 hours' WHERE key = $1", [user]);
      const r = await throttle.reserve('mfa', { subject, address: '192.0.2.11' });
      expect(r.counts).toEqual([1, 1]);
    });

    it('300 reservations at once on one key: exactly the limit counted, the rest 429, nothing else fails', async () => {
      const throttle = h.get(ThrottleService);
      const s = { subject: '5e1b7c2d-0a3f-4b6e-8c9d-1e2f3a4b5c6d', address: '192.0.2.12' };
      const results = await Promise.allSettled(Array.from({ length: 300 }, () => throttle.reserve('mfa', s)));
      const ok = results.filter((r) => r.status === 'fulfilled').length;
      const refused = results.filter((r) => r.status === 'rejected' && (r.reason as { status?: number }).status === 429).length;
      expect(ok).toBe(THROTTLE_RULES.pair.max);
      expect(refused).toBe(300 - THROTTLE_RULES.pair.max);
      const [pair] = await h.db.query<{ failures: number }>('SELECT failures FROM auth_throttle WHERE key = $1', [`pair:mfa:${s.subject}@${s.address}`]);
      expect(pair.failures).toBe(THROTTLE_RULES.pair.max);
    });
  });
});

import { Logger } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { loadConfig } from '../../src/config/config';
import { ClaimedWork, INSTANCE_ID, SkipItem } from '../../src/database/claimed-work';
import { UnitOfWork } from '../../src/database/unit-of-work';
import { Clock } from '../../src/common/clock';
import { ConnectorRegistry } from '../../src/connectors/connector.registry';
import { TargetConnection } from '../../src/targets/target-connection';
import { TargetsService } from '../../src/targets/targets.service';
import { TargetsModule } from '../../src/targets/targets.module';
import { createTestDatabase, TestDatabase } from '../support/db';
import { buildModule, ModuleHarness } from '../support/module-harness';
import { createFakeTarget } from '../support/fake-target';

/** claimBatch / renew / drain on a scratch table of a fresh database (real PostgreSQL, several connections). */
describe('claimed work on a real database', () => {
  let db: TestDatabase;
  let ds: DataSource;
  const work = new ClaimedWork(loadConfig({}));

  beforeAll(async () => {
    db = await createTestDatabase();
    ds = new DataSource({ type: 'postgres', url: db.url, extra: { max: 10 } });
    await ds.initialize();
    await ds.query(`CREATE TABLE jobs (
      id text PRIMARY KEY, seq serial, status text NOT NULL DEFAULT 'pending', version int NOT NULL DEFAULT 0,
      claimed_by text, claimed_until timestamptz, done_by text)`);
    await ds.query(`CREATE TABLE chores (id text PRIMARY KEY, cleanup_claimed_by text, cleanup_claimed_until timestamptz)`);
  });
  afterAll(async () => {
    await ds?.destroy();
    await db?.drop();
  });
  beforeEach(async () => {
    await ds.query('TRUNCATE jobs, chores');
  });

  const addJobs = async (n: number, prefix = 'j') => {
    const ids = Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(3, '0')}`);
    await ds.query('INSERT INTO jobs (id) SELECT unnest($1::text[])', [ids]);
    return ids;
  };
  const claimable = "status = 'pending' AND (claimed_until IS NULL OR claimed_until < now())";
  const claim = (q: { query: DataSource['query'] }, limit: number) =>
    work.claimBatch<{ id: string }>(q, { table: 'jobs', where: claimable, orderBy: 'seq', limit, seconds: 60, returning: 'id' });

  it('claims in order, stamps the claim, honours params, extra assignments and an alias', async () => {
    await addJobs(5);
    await ds.query("UPDATE jobs SET status = 'done' WHERE id = 'j001'");
    const rows = await work.claimBatch<{ id: string; version: number }>(ds, {
      table: 'jobs j',
      where: `j.status = $1 AND (j.claimed_until IS NULL OR j.claimed_until < now())`,
      params: ['pending'],
      orderBy: 'j.seq',
      limit: 3,
      seconds: 60,
      set: 'version = version + 1',
      returning: 'id, version',
    });
    expect(rows).toEqual([
      { id: 'j000', version: 1 },
      { id: 'j002', version: 1 },
      { id: 'j003', version: 1 },
    ]);
    const [row] = await db.query<{ by: string; secs: number }>("SELECT claimed_by AS by, extract(epoch FROM claimed_until - now())::int AS secs FROM jobs WHERE id = 'j000'");
    expect(row.by).toBe(INSTANCE_ID);
    expect(row.secs).toBeGreaterThan(50);
    // claimed rows are not claimable again until their claim lapses
    expect(await claim(ds, 10)).toEqual([{ id: 'j004' }]);
    expect(await claim(ds, 10)).toEqual([]);
  });

  it('two claimants never get the same row: SKIP LOCKED passes over rows another transaction is claiming', async () => {
    await addJobs(10);
    // claimant A holds its transaction open; B neither waits for it nor gets its rows
    const a = ds.createQueryRunner();
    await a.connect();
    await a.startTransaction();
    try {
      const mine = await claim(a.manager, 4);
      const started = Date.now();
      const theirs = await claim(ds, 4);
      expect(Date.now() - started).toBeLessThan(2000);
      expect(mine.map((r) => r.id)).toEqual(['j000', 'j001', 'j002', 'j003']);
      expect(theirs.map((r) => r.id)).toEqual(['j004', 'j005', 'j006', 'j007']);
      await a.commitTransaction();
    } finally {
      await a.release();
    }
  });

  it('many claimants at once take every row exactly once', async () => {
    const ids = await addJobs(200);
    const claimant = async () => {
      const got: string[] = [];
      for (;;) {
        const rows = await ds.transaction((em) => claim(em, 3));
        if (rows.length === 0) return got;
        got.push(...rows.map((r) => r.id));
      }
    };
    const results = await Promise.all(Array.from({ length: 8 }, claimant));
    const all = results.flat();
    expect(all.length).toBe(ids.length);
    expect(new Set(all).size).toBe(ids.length);
    expect(results.filter((r) => r.length > 0).length).toBeGreaterThan(1);
  });

  it('renew extends only a claim this instance holds and that has not lapsed', async () => {
    await addJobs(1);
    await claim(ds, 1);
    const renew = (o: { where?: string; seconds?: number } = {}) => work.renew(ds, { table: 'jobs', id: 'j000', seconds: o.seconds ?? 120, where: o.where });
    expect(await renew()).toBe(true);
    const [{ secs }] = await db.query<{ secs: number }>("SELECT extract(epoch FROM claimed_until - now())::int AS secs FROM jobs WHERE id = 'j000'");
    expect(secs).toBeGreaterThan(100);
    expect(await renew({ where: "status = 'pending'" })).toBe(true);
    expect(await renew({ where: "status = 'done'" })).toBe(false);
    // lapsed
    await db.query("UPDATE jobs SET claimed_until = now() - interval '1 second' WHERE id = 'j000'");
    expect(await renew()).toBe(false);
    // taken over by another instance after it lapsed
    await db.query("UPDATE jobs SET claimed_by = 'other-host:1:deadbeef', claimed_until = now() + interval '1 minute' WHERE id = 'j000'");
    expect(await renew()).toBe(false);
    // unknown row
    expect(await work.renew(ds, { table: 'jobs', id: 'nope', seconds: 60 })).toBe(false);
  });

  it('claim columns other than claimed_by/claimed_until', async () => {
    await ds.query("INSERT INTO chores (id) VALUES ('c1'), ('c2')");
    const cols = { claimedBy: 'cleanup_claimed_by', claimedUntil: 'cleanup_claimed_until' };
    const rows = await work.claimBatch<{ id: string }>(ds, {
      table: 'chores',
      where: 'cleanup_claimed_until IS NULL OR cleanup_claimed_until < now()',
      orderBy: 'id',
      limit: 1,
      seconds: 30,
      returning: 'id',
      ...cols,
    });
    expect(rows).toEqual([{ id: 'c1' }]);
    expect(await work.renew(ds, { table: 'chores', id: 'c1', seconds: 30, ...cols })).toBe(true);
    expect(await work.renew(ds, { table: 'chores', id: 'c2', seconds: 30, ...cols })).toBe(false);
  });

  it('refuses a table or column that is not a plain name', async () => {
    await expect(work.renew(ds, { table: 'jobs; DROP TABLE jobs', id: 'x', seconds: 1 })).rejects.toThrow(/not an identifier/);
    await expect(work.renew(ds, { table: 'jobs', claimedBy: 'a=b', id: 'x', seconds: 1 })).rejects.toThrow(/not an identifier/);
  });

  it('drain: one poisoned item (its run throws) or one that cannot be taken does not stop the rest', async () => {
    const ids = await addJobs(9);
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const take = (skip: readonly string[]) =>
      ds.transaction(async (em) => {
        const [row] = await work.claimBatch<{ id: string }>(em, {
          table: 'jobs',
          where: `${claimable} AND NOT (id = ANY ($1::text[]))`,
          params: [[...skip]],
          orderBy: 'seq',
          limit: 1,
          seconds: 60,
          returning: 'id',
        });
        if (row?.id === 'j005') throw new SkipItem(row.id, new Error('cannot load'));
        return row?.id ?? null;
      });
    const n = await work.drain({
      name: 'test-jobs',
      key: (id) => id,
      batchSize: 2,
      limit: 50,
      take,
      run: async (id) => {
        if (id === 'j002') throw new Error('undecryptable');
        // a finished job is the claimant's, as a real sweep's commit checks
        await ds.query("UPDATE jobs SET status = 'done', done_by = $2 WHERE id = $1 AND claimed_by = $2", [id, INSTANCE_ID]);
      },
    });
    expect(n).toBe(8);
    const rows = await db.query<{ id: string; status: string }>('SELECT id, status FROM jobs ORDER BY seq');
    expect(rows.filter((r) => r.status === 'done').map((r) => r.id)).toEqual(ids.filter((id) => id !== 'j002' && id !== 'j005'));
    // the poisoned ones stay pending (the skipped take rolled back its claim; the failed run keeps its claim until it lapses)
    expect(rows.filter((r) => r.status === 'pending').map((r) => r.id)).toEqual(['j002', 'j005']);
    const [skipped] = await db.query<{ claimed_by: string | null }>("SELECT claimed_by FROM jobs WHERE id = 'j005'");
    expect(skipped.claimed_by).toBeNull();
    // logged by key and error type, never the error's message
    expect(warn.mock.calls.map((c) => c[0])).toEqual(
      expect.arrayContaining([
        { work: 'test-jobs', key: 'j002', err: { type: 'Error' } },
        { work: 'test-jobs', key: 'j005', err: { type: 'Error' } },
      ]),
    );
    expect(JSON.stringify(warn.mock.calls)).not.toMatch(/undecryptable|cannot load/);
    warn.mockRestore();
  });
});

describe('the module harness', () => {
  let h: ModuleHarness;
  beforeAll(async () => {
    h = await buildModule({ imports: [TargetsModule] });
  }, 60_000);
  afterAll(() => h?.close());

  it('builds feature modules on a migrated database: a change and its audit event commit together', async () => {
    await h.get(UnitOfWork).run(({ audit }) => audit({ type: 'test.happened', actor: null, subjectType: 'test', details: { n: 1 } }));
    const events = await h.db.query<{ type: string }>("SELECT type FROM audit_events WHERE type = 'test.happened'");
    expect(events).toHaveLength(1);
  });

  it('a target created through the service is reached through the fake connector of its type', async () => {
    const targets = h.get(TargetsService);
    const created = { id: await createFakeTarget(h, 'postgres', 'fake-pg') };
    const [row] = await h.db.query<{ id: string }>('SELECT id FROM targets WHERE id = $1', [created.id]);
    expect(row).toBeDefined();
    const pg = h.fake('postgres');
    pg.users.set('app', 'Old-Password-1');
    const conn = await targets.connectById(h.dataSource.manager, created.id);
    await conn.updatePassword({ username: 'app', password: 'New-Password-2' });
    await conn.login({ username: 'app', password: 'New-Password-2' });
    pg.fail('login', 'TARGET_UNREACHABLE');
    await expect(conn.login({ username: 'app', password: 'New-Password-2' })).rejects.toMatchObject({ connectorCode: 'TARGET_UNREACHABLE' });
    await expect(conn.login({ username: 'app', password: 'Old-Password-1' })).rejects.toMatchObject({ connectorCode: 'TARGET_AUTH_FAILED' });
    expect(pg.ops.map((c) => `${c.op} ${c.result}`)).toEqual(['updatePassword ok', 'login ok', 'login TARGET_UNREACHABLE', 'login TARGET_AUTH_FAILED']);
    expect(h.fake('ssh').ops).toEqual([]);
  });

  it('a hanging call ends at the caller deadline; the services read the test clock', async () => {
    const my = h.fake('mysql');
    my.users.set('app', 'Pw-1');
    my.hang('login');
    const conn = new TargetConnection(
      'scratch',
      { type: 'mysql', host: 'mysql.invalid', port: 3306, adminUsername: 'root', adminPassword: 'Admin-Pw-1', options: {} },
      h.get(ConnectorRegistry).get('mysql'),
    );
    const call = conn.login({ username: 'app', password: 'Pw-1' }, { timeoutMs: 100 });
    await expect(call).rejects.toMatchObject({ connectorCode: 'TARGET_TIMEOUT' });
    expect(my.hanging()).toBe(0);
    expect(my.ops).toEqual([{ op: 'login', username: 'app', result: 'TARGET_TIMEOUT' }]);
    const clock = h.get(Clock);
    expect(clock).toBe(h.clock);
    const before = clock.now().getTime();
    h.clock.advance(3_600_000);
    expect(clock.now().getTime() - before).toBeGreaterThanOrEqual(3_600_000);
  });
});

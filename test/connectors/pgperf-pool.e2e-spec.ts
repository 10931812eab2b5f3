import { randomBytes } from 'node:crypto';
import { statementsDuring } from './pgperf-support';
import { poolKeyOf } from '../../src/connectors/admin-pool';
import { ConnectorTarget } from '../../src/connectors/connector.interface';
import { PostgresConnector } from '../../src/connectors/postgres/postgres.connector';
import { PgAdmin, PgHandle, startScramPostgres } from '../support/targets/postgres';

/**
 * The PostgreSQL connector's one-time account work with fewer round trips and pooled connections to the target's other
 * databases (issue 17, bench/ephemeral), against a real PostgreSQL 18 over TLS with the least-privilege admin:
 * - a database other than the target's own is reached through a pooled connection of its own (same identity and
 *   fingerprint rules, keyed by database), which stays idle for a second only: DROP DATABASE without FORCE, run right
 *   after, still succeeds (it waits up to 5 s for other sessions to leave);
 * - a target that moves (here: its own database changes) has the pools of EVERY database of its old place closed at once;
 * - newUser and deleteUser send a handful of statements (checks batched per database, the account's creation and its
 *   removal each one transaction), and nothing is left on the target.
 * Waits are polls with generous deadlines; nothing asserts how long anything took.
 */

const name = (prefix: string) => `${prefix}_${randomBytes(4).toString('hex')}`;

async function until(what: string, probe: () => Promise<boolean> | boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('pgperf: pooled connections to other databases and batched one-time account work, PostgreSQL 18', () => {
  let pg: PgHandle;
  let admin: PgAdmin;
  let target: ConnectorTarget & { id: string };
  const db = name('pgperf_db');
  const reader = name('pgperf_reader');
  const connector = new PostgresConnector({ size: 4, idleMs: 60_000 });
  const adminBackendsIn = async (database: string) =>
    (await pg.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1 AND datname = $2', [admin.username, database])).rows[0].n;

  beforeAll(async () => {
    pg = await startScramPostgres({ version: 18, tls: true });
    admin = await pg.leastPrivilegeAdmin();
    await pg.query(`CREATE DATABASE ${db}`);
    await pg.query(`REVOKE CONNECT ON DATABASE ${db} FROM PUBLIC`);
    await pg.query(`GRANT CONNECT ON DATABASE ${db} TO ${admin.username} WITH GRANT OPTION`);
    await pg.query(`CREATE ROLE ${reader} NOLOGIN`);
    await pg.query(`GRANT ${reader} TO ${admin.username} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE`);
    target = {
      id: 'pgperf-target', type: 'postgres', host: pg.host, port: pg.port, adminUsername: admin.username, adminPassword: admin.password,
      options: { database: pg.database, tlsCa: pg.tls!.caPem },
    };
  }, 60_000);
  afterAll(async () => {
    await connector.closeAll();
    await pg?.stop();
  });

  it('creates and removes accounts with a handful of statements, reusing one pooled connection per database, and leaves nothing', async () => {
    const access = { database: db, grantRoles: [reader] };
    await connector.inspectAccess(target, { roles: [reader], databases: [db] }); // connections opened, server version known
    const first = name('vpgperf');
    const created = await statementsDuring(() => connector.newUser(target, { username: first, password: randomBytes(18).toString('base64url'), access }));
    // the checks and the snapshot where the admin connects (1), the checks and the snapshot in the granted database (1),
    // the snapshot in template1 (PUBLIC may connect there: 1), the account in one transaction (1)
    expect(created).toHaveLength(4);
    const removed = await statementsDuring(() => connector.deleteUser(target, { username: first }));
    // facts (1), locked down (1), sessions ended (1), default privileges read back in the three databases (3), dropped (1)
    expect(removed).toHaveLength(7);
    expect(await pg.roleExists(first)).toBe(false);
    // one pooled connection per database, reused: a second account opens nothing new
    const opened = await statementsDuring(async () => {
      const second = name('vpgperf');
      await connector.newUser(target, { username: second, password: randomBytes(18).toString('base64url'), access });
      await connector.deleteUser(target, { username: second });
      expect(await pg.roleExists(second)).toBe(false);
    });
    expect(opened.filter((s) => /current_setting\('server_version_num'\)/.test(s) && !/;/.test(s))).toEqual([]); // no new connection asked its version
    expect(await adminBackendsIn(db)).toBe(1);
    expect(connector.pool.stats(poolKeyOf(target, db).identity)).toMatchObject({ idle: 1, busy: 0 });
  }, 60_000);

  it('an idle connection to another database never stops DROP DATABASE (without FORCE) run right after', async () => {
    const other = name('pgperf_drop');
    await pg.query(`CREATE DATABASE ${other}`);
    await pg.query(`REVOKE CONNECT ON DATABASE ${other} FROM PUBLIC`);
    await pg.query(`GRANT CONNECT ON DATABASE ${other} TO ${admin.username} WITH GRANT OPTION`);
    expect(await connector.inspectAccess(target, { roles: [reader], databases: [other] })).toEqual([]);
    expect(await adminBackendsIn(other)).toBe(1); // pooled, idle
    await pg.query(`DROP DATABASE ${other}`); // waits (up to 5 s) for the vault's idle connection to close, and succeeds
    expect((await pg.query("SELECT 1 FROM pg_database WHERE datname = $1", [other])).rowCount).toBe(0);
  }, 60_000);

  it("a target whose own database changes has the pools of all its old place's databases closed at once", async () => {
    await connector.inspectAccess(target, { roles: [reader], databases: [db] });
    const otherKey = poolKeyOf(target, db).identity;
    expect(connector.pool.stats(otherKey).idle).toBe(1);
    const elsewhere = name('pgperf_home');
    await pg.query(`CREATE DATABASE ${elsewhere}`);
    await pg.query(`GRANT CONNECT ON DATABASE ${elsewhere} TO ${admin.username}`);
    const moved = { ...target, options: { ...target.options, database: elsewhere } };
    await connector.isAdmin(moved, admin.username);
    expect(connector.pool.stats(otherKey)).toMatchObject({ identities: 0 });
    expect(connector.pool.stats(poolKeyOf(target, pg.database).identity)).toMatchObject({ identities: 0 });
    await until('the old connections are closed on the server', async () => (await adminBackendsIn(pg.database)) + (await adminBackendsIn(db)) === 0);
  }, 60_000);
});

import { randomBytes } from 'node:crypto';
import { Client as PgClient } from 'pg';
import { statementsDuring } from './pgperf-support';
import { ConnectorTarget } from '../../src/connectors/connector.interface';
import { ConnectorRegistry } from '../../src/connectors/connector.registry';
import { PostgresConnector } from '../../src/connectors/postgres/postgres.connector';
import { failure } from '../support/connector-failure';
import { PgAdmin, PgHandle, startScramPostgres } from '../support/targets/postgres';
import { LiveSession, openPgSession } from '../support/targets/sessions';

/**
 * PostgresConnector.terminateSessions (check-in, expiry, revoke of a checkout) in ONE statement on the pooled admin
 * connection: the checks (the role exists, is not a superuser unless the admin is one, the admin holds pg_signal_backend
 * or the role's privileges, the role is not the admin's own) and the termination are decided in the same statement, and
 * every refusal still ends nothing and keeps its code. Real clusters (15 and 18), the least-privilege admin, over TLS.
 */

const name = (prefix = 'vt_pgperf') => `${prefix}_${randomBytes(4).toString('hex')}`;
const pw = () => randomBytes(18).toString('base64url');

describe.each([15, 18] as const)('pgperf: terminateSessions in one round trip, PostgreSQL %s', (version) => {
  let pg: PgHandle;
  let admin: PgAdmin;
  let target: ConnectorTarget;
  const safe = new ConnectorRegistry().get('postgres');
  const raw = new PostgresConnector();
  const sessions: LiveSession[] = [];
  const hold = async (user: string, password: string) => {
    const s = await openPgSession(pg.host, pg.port, user, password, pg.database);
    sessions.push(s);
    return s;
  };

  beforeAll(async () => {
    pg = await startScramPostgres({ version, tls: true });
    admin = await pg.leastPrivilegeAdmin();
    target = { type: 'postgres', host: pg.host, port: pg.port, adminUsername: admin.username, adminPassword: admin.password, options: { database: pg.database, tlsCa: pg.tls!.caPem } };
  }, 60_000);
  afterAll(async () => {
    for (const s of sessions) await s.close().catch(() => undefined);
    await raw.closeAll();
    await pg?.stop();
  });

  it('ends the role\'s sessions with a single statement on the pooled admin connection', async () => {
    const user = name();
    const password = pw();
    await pg.createRole(user, password);
    await raw.isAdmin(target, admin.username); // the pooled connection is open and its timeouts set: only the work is counted
    const a = await hold(user, password);
    const b = await hold(user, password);
    const sql = await statementsDuring(() => raw.terminateSessions(target, { username: user }));
    expect(sql).toHaveLength(1);
    expect(sql[0]).toContain('pg_terminate_backend');
    expect(await a.alive()).toBe(false);
    expect(await b.alive()).toBe(false);
    // no such role: nothing to end, still one statement, and it succeeds
    expect(await statementsDuring(() => raw.terminateSessions(target, { username: name('vt_gone') }))).toHaveLength(1);
  }, 30_000);

  it("a superuser role's sessions: TARGET_ERROR saying so, nothing ended", async () => {
    const sup = name('vt_pgperf_su');
    const password = pw();
    await pg.query(`CREATE ROLE ${sup} SUPERUSER LOGIN PASSWORD '${password}'`);
    const s = await hold(sup, password);
    const e = await failure(safe.terminateSessions(target, { username: sup }));
    expect(e.code).toBe('TARGET_ERROR');
    expect(e.message).toMatch(/superuser/);
    expect(await s.alive()).toBe(true);
  }, 30_000);

  it('an admin without pg_signal_backend: TARGET_ERROR saying what to grant, nothing ended', async () => {
    const bare = name('vt_pgperf_bare');
    const bpw = pw();
    await pg.query(`CREATE ROLE ${bare} LOGIN CREATEROLE PASSWORD '${bpw}'`);
    await pg.query(`GRANT pg_read_all_stats TO ${bare}`);
    await pg.query(`GRANT CONNECT ON DATABASE ${pg.database} TO ${bare}`);
    const user = name();
    const password = pw();
    await pg.createRole(user, password);
    const s = await hold(user, password);
    const e = await failure(safe.terminateSessions({ ...target, adminUsername: bare, adminPassword: bpw }, { username: user }));
    expect(e.code).toBe('TARGET_ERROR');
    expect(e.message).toContain(`GRANT pg_signal_backend TO "${bare}"`);
    expect(await s.alive()).toBe(true);
  }, 30_000);

  it("the admin's own sessions are never ended: refused by the safe wrapper and by the statement itself", async () => {
    const other = new PgClient({ host: pg.host, port: pg.port, user: admin.username, password: admin.password, database: pg.database });
    other.on('error', () => undefined);
    await other.connect();
    try {
      expect((await failure(safe.terminateSessions(target, { username: admin.username }))).code).toBe('TARGET_INVALID_NAME');
      // below the wrapper: the statement finds the role is the session's own and ends nothing
      expect((await failure(raw.terminateSessions(target, { username: admin.username }))).code).toBe('TARGET_INVALID_NAME');
      expect((await other.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    } finally {
      await other.end().catch(() => undefined);
    }
  }, 30_000);
});

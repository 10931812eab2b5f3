import { randomBytes } from 'node:crypto';
import { ConnectorTarget } from '../../src/connectors/connector.interface';
import { ConnectorRegistry } from '../../src/connectors/connector.registry';
import { PgAdmin, PgHandle, startScramPostgres } from '../support/targets/postgres';
import { openPgSession } from '../support/targets/sessions';

/**
 * One-time accounts created and removed concurrently on one PostgreSQL database, through the connector, as the
 * least-privilege admin over TLS. Every `GRANT CONNECT ON DATABASE` and every `DROP OWNED` rewrites that database's
 * ACL row, and PostgreSQL refuses the second of two concurrent rewrites with XX000 "tuple concurrently updated"
 * (bench/ephemeral found claims failing with 502 at 4 at a time): each such statement is retried.
 */
describe('PostgreSQL connector: concurrent one-time accounts on one database (e2e, real PostgreSQL)', () => {
  let pg: PgHandle;
  let admin: PgAdmin;
  let target: ConnectorTarget;
  const registry = new ConnectorRegistry();
  const connector = registry.get('postgres');
  const db = `vc_db_${randomBytes(3).toString('hex')}`;

  beforeAll(async () => {
    pg = await startScramPostgres({ tls: true });
    admin = await pg.leastPrivilegeAdmin();
    await pg.query(`CREATE DATABASE "${db}"`);
    await pg.query(`REVOKE CONNECT ON DATABASE "${db}" FROM PUBLIC`);
    await pg.query(`GRANT CONNECT ON DATABASE "${db}" TO "${admin.username}" WITH GRANT OPTION`);
    target = { type: 'postgres', host: pg.host, port: pg.port, adminUsername: admin.username, adminPassword: admin.password, options: { database: pg.database, tlsCa: pg.tls!.caPem } };
  }, 60_000);
  afterAll(async () => {
    await registry.closeAll();
    await pg?.stop();
  });

  it('16 accounts with CONNECT on one database created at once, then 8 removed while 8 more are created: every call succeeds, every account works until removed', async () => {
    const names = Array.from({ length: 24 }, (_, i) => `vc_${i}_${randomBytes(3).toString('hex')}`);
    const passwords = new Map(names.map((n) => [n, `Pw-${randomBytes(12).toString('hex')}`]));
    const create = (n: string) => connector.newUser(target, { username: n, password: passwords.get(n)!, access: { database: db } });
    await Promise.all(names.slice(0, 16).map(create));
    await Promise.all([...names.slice(0, 8).map((n) => connector.deleteUser(target, { username: n })), ...names.slice(16).map(create)]);
    for (const n of names.slice(8)) {
      const s = await openPgSession(pg.host, pg.port, n, passwords.get(n)!, db);
      await s.close();
    }
    for (const n of names.slice(0, 8)) expect(await pg.roleExists(n)).toBe(false);
    await Promise.all(names.slice(8).map((n) => connector.deleteUser(target, { username: n })));
    for (const n of names) expect(await pg.roleExists(n)).toBe(false);
    // nothing of theirs is left in the database's ACL
    const { rows } = await pg.query<{ acl: string }>('SELECT datacl::text AS acl FROM pg_database WHERE datname = $1', [db]);
    expect(rows[0].acl).not.toMatch(/vc_\d+_/);
  }, 120_000);

  it('accounts granted a role, removed while others with that role are claimed: no claim is refused because the admin briefly held the role', async () => {
    const group = `vc_grp_${randomBytes(3).toString('hex')}`;
    await pg.query(`CREATE ROLE "${group}" NOLOGIN`);
    // 16+: the admin may grant it (ADMIN OPTION) without holding its privileges (INHERIT FALSE, SET FALSE)
    await pg.query(`GRANT "${group}" TO "${admin.username}" WITH ADMIN OPTION, INHERIT FALSE, SET FALSE`);
    const names = Array.from({ length: 16 }, (_, i) => `vg_${i}_${randomBytes(3).toString('hex')}`);
    const create = (n: string) => connector.newUser(target, { username: n, password: `Pw-${randomBytes(12).toString('hex')}`, access: { grantRoles: [group] } });
    await Promise.all(names.slice(0, 8).map(create));
    const outcomes = await Promise.allSettled([...names.slice(0, 8).map((n) => connector.deleteUser(target, { username: n })), ...names.slice(8).map(create)]);
    const refused = outcomes.flatMap((o) => (o.status === 'rejected' ? [String((o.reason as Error).message)] : []));
    expect(refused).toEqual([]);
    await Promise.all(names.slice(8).map((n) => connector.deleteUser(target, { username: n })));
    for (const n of names) expect(await pg.roleExists(n)).toBe(false);
  }, 120_000);
});

import { randomBytes } from 'node:crypto';
import { Global, Module } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { Client } from 'pg';
import { PoolSettings } from '../../src/connectors/admin-pool';
import { CallOptions, Connector, ConnectorTarget } from '../../src/connectors/connector.interface';
import { ConnectorRegistry } from '../../src/connectors/connector.registry';
import { ConnectorsModule } from '../../src/connectors/connectors.module';
import { MysqlConnector } from '../../src/connectors/mysql/mysql.connector';
import { PostgresConnector } from '../../src/connectors/postgres/postgres.connector';
import { SafeConnector } from '../../src/connectors/safe-connector';
import { APP_CONFIG, loadConfig } from '../../src/config/config';
import { failure } from '../support/connector-failure';
import { connectTlsMariaDb, TlsMariaHandle } from '../support/targets/mariadb-tls';
import { PgAdmin, PgHandle, startScramPostgres } from '../support/targets/postgres';

/**
 * Pooled admin connections (issue 17) against real targets with least-privilege administrators: a throwaway scram
 * PostgreSQL 18 over verified TLS and the TLS MariaDB of jest's globalSetup. The vault's backends are counted on the
 * server (pg_stat_activity / PROCESSLIST by the admin's user name), never inferred from the pool alone.
 *
 * Waits are polls with generous deadlines (the machine is shared): nothing here asserts how long anything took.
 */

/** Polls `probe` until it returns true (or fails the test after `ms`). */
async function until(what: string, probe: () => Promise<boolean> | boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Runs `count` concurrent calls while sampling how many connections are open, on the server (`open`) and in the pool;
 * resolves to the most seen and the calls' results.
 */
async function mostOpenDuring<T>(count: number, open: () => Promise<number>, pool: { stats(): { idle: number; busy: number; opening: number } }, call: (i: number) => Promise<T>): Promise<{ most: number; results: T[] }> {
  let most = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      most = Math.max(most, await open());
      const s = pool.stats();
      most = Math.max(most, s.idle + s.busy + s.opening);
    }
  })();
  try {
    return { results: await Promise.all(Array.from({ length: count }, (_, i) => call(i))), most };
  } finally {
    sampling = false;
    await sampler;
  }
}

/** The private pooled admin path, for the tests that must run a work function the public API never would. */
type AdminPath = { asAdmin<T>(target: ConnectorTarget, opts: CallOptions | undefined, work: (c: Client) => Promise<T>): Promise<T> };

describe('pooled admin connections: PostgreSQL 18 over TLS, least-privilege admin', () => {
  let pg: PgHandle;
  let admin: PgAdmin;
  let target: ConnectorTarget;
  const made: PostgresConnector[] = [];

  const pooled = (settings: Partial<PoolSettings> = {}) => {
    const raw = new PostgresConnector({ size: 4, idleMs: 60_000, ...settings });
    made.push(raw);
    return { raw, connector: new SafeConnector(raw) as Connector };
  };
  /** The admin's client backends (pid list), as the superuser sees them. */
  const backends = async () =>
    (await pg.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE usename = $1 AND backend_type = 'client backend' ORDER BY pid", [admin.username])).rows.map((r) => r.pid);
  const setAdminPassword = async (pw: string) => {
    await pg.query(`ALTER ROLE ${admin.username} PASSWORD '${pw}'`); // hex: nothing to quote
  };

  beforeAll(async () => {
    pg = await startScramPostgres({ tls: true });
    admin = await pg.leastPrivilegeAdmin();
    target = { type: 'postgres', host: pg.host, port: pg.port, adminUsername: admin.username, adminPassword: admin.password, options: { database: pg.database, tlsCa: pg.tls!.caPem } };
  }, 120_000);
  afterEach(async () => {
    for (const c of made.splice(0)) await c.closeAll();
    await until('no backend of the admin is left', async () => (await backends()).length === 0);
  });
  afterAll(async () => {
    await pg?.stop();
  });

  it('repeated operations reuse one backend, and every one of them still runs as the admin over TLS', async () => {
    const { raw, connector } = pooled();
    const pids = new Set<number>();
    for (let i = 0; i < 12; i++) {
      const res = await connector.verify(target);
      expect(res.capabilities.find((c) => c.code === 'PG_TLS')).toMatchObject({ ok: true });
      expect(await connector.isAdmin(target, 'someone_else')).toBe(false);
      for (const pid of await backends()) pids.add(pid);
    }
    expect(pids.size).toBe(1);
    expect(raw.pool.stats()).toMatchObject({ identities: 1, idle: 1, busy: 0 });
  });

  it('a call with other per-call limits gets them on the same backend (SET only when they differ), and the admin keeps search_path = pg_catalog', async () => {
    const { raw } = pooled();
    const path = raw as unknown as AdminPath;
    const show = (timeoutMs: number) => path.asAdmin(target, { timeoutMs }, async (c) => {
      const { rows } = await c.query<{ st: string; lt: string; sp: string; pid: number }>(
        "SELECT current_setting('statement_timeout') AS st, current_setting('lock_timeout') AS lt, current_setting('search_path') AS sp, pg_backend_pid() AS pid");
      return rows[0];
    });
    const a = await show(15_000);
    const b = await show(30_000);
    const c = await show(15_000);
    expect([a.st, a.lt, b.st, b.lt, c.st, c.lt]).toEqual(['13s', '12s', '28s', '27s', '13s', '12s']);
    expect(new Set([a.pid, b.pid, c.pid]).size).toBe(1);
    expect([a.sp, b.sp, c.sp]).toEqual(['pg_catalog', 'pg_catalog', 'pg_catalog']);
  });

  it('a changed admin password moves the next operation to a fresh connection, the old backend is gone, and the old password no longer works through the pool', async () => {
    const { connector } = pooled();
    await connector.verify(target);
    const [old] = await backends();
    const newPassword = randomBytes(18).toString('hex');
    // rotated on the server (the pooled session stays logged in: PostgreSQL does not end it) and then in the vault
    await setAdminPassword(newPassword);
    const rotated = { ...target, adminPassword: newPassword };
    try {
      await connector.verify(rotated);
      const now = await backends();
      expect(now).toHaveLength(1);
      expect(now).not.toContain(old);
      // the previous credential: a fresh login, refused — never the pooled session opened with the new one
      const e = await failure(connector.verify(target));
      expect(e.code).toBe('TARGET_AUTH_FAILED');
      expect(e.message).not.toContain(admin.password);
      expect(e.message).not.toContain(newPassword);
      await until('the rotated connection was closed by the call with the other credential', async () => (await backends()).length === 0);
    } finally {
      await setAdminPassword(admin.password);
    }
  });

  it('an address the certificate does not name, or a changed pin, is never answered from the pool: a new connection verifies identity again and is refused', async () => {
    const { raw, connector } = pooled();
    await connector.verify(target);
    expect(await backends()).toHaveLength(1);
    // another name for the same server (an impostor answering there would be no different): a pool of its own, and TLS refuses it
    const renamed = await failure(connector.verify({ ...target, host: 'localhost' }));
    expect(renamed.code).toBe('TARGET_IDENTITY_UNVERIFIED');
    // the same address with another pin: the identity's idle connection is closed at once, the new one is refused
    const wrongPin = pg.tls!.certSha256.replace(/^../, pg.tls!.certSha256.startsWith('AA') ? 'BB' : 'AA');
    const pinned = await failure(connector.verify({ ...target, options: { ...target.options, tlsCertSha256: wrongPin } }));
    expect(pinned.code).toBe('TARGET_IDENTITY_UNVERIFIED');
    expect(raw.pool.stats()).toMatchObject({ idle: 0, busy: 0 });
    await until('the connection verified under the old pin is gone', async () => (await backends()).length === 0);
    // and the right pin works again, on a fresh connection
    await connector.verify({ ...target, options: { ...target.options, tlsCertSha256: pg.tls!.certSha256 } });
  });

  it('with the target id given, two targets at the same address never share a connection, and a target that moved has the connections to its old address closed at once', async () => {
    const { raw, connector } = pooled();
    const one: ConnectorTarget & { id: string } = { ...target, id: 'target-one' };
    const two: ConnectorTarget & { id: string } = { ...target, id: 'target-two' };
    await connector.verify(one);
    await connector.verify(two);
    expect(await backends()).toHaveLength(2);
    expect(raw.pool.stats()).toMatchObject({ identities: 2, idle: 2 });
    const [a, b] = await backends();
    // target-one's address is changed (here to a name its certificate does not carry: the new connection is refused)
    const moved = await failure(connector.verify({ ...one, host: 'localhost' }));
    expect(moved.code).toBe('TARGET_IDENTITY_UNVERIFIED');
    await until('the connection to the old address is closed', async () => (await backends()).length === 1);
    expect([a, b]).toContain((await backends())[0]);
    expect(raw.pool.stats()).toMatchObject({ idle: 1 });
  });

  it('an admin made NOLOGIN on the server stops working for the vault at the next reuse check, although its pooled session is still open', async () => {
    const { connector } = pooled({ checkAfterMs: 0 });
    await connector.verify(target);
    expect(await backends()).toHaveLength(1);
    await pg.query(`ALTER ROLE ${admin.username} NOLOGIN`);
    try {
      await new Promise((r) => setTimeout(r, 5));
      const e = await failure(connector.verify(target));
      expect(e.code).toBe('TARGET_AUTH_FAILED');
      await until('the revoked admin has no backend left', async () => (await backends()).length === 0);
    } finally {
      await pg.query(`ALTER ROLE ${admin.username} LOGIN`);
    }
  });

  it('the server ending the pooled backend (pg_terminate_backend) is survived by the next operation', async () => {
    const { raw, connector } = pooled();
    await connector.verify(target);
    const [old] = await backends();
    await pg.query('SELECT pg_terminate_backend($1, 5000)', [old]);
    // the client learns of it from the server's FATAL message and the socket's end, and leaves the pool
    await until('the pool noticed', () => raw.pool.stats().idle === 0);
    await connector.verify(target);
    const now = await backends();
    expect(now).toHaveLength(1);
    expect(now).not.toContain(old);
  });

  it('a restart of the server is survived: the next operation opens (and verifies) a new connection', async () => {
    const { raw, connector } = pooled();
    await connector.verify(target);
    const [old] = await backends();
    await pg.restart();
    await until('the pool noticed', () => raw.pool.stats().idle === 0);
    const res = await connector.verify(target);
    expect(res.ok).toBe(true);
    const now = await backends();
    expect(now).toHaveLength(1);
    expect(now).not.toContain(old);
  }, 120_000);

  it('an idle pool closes after its idle time: no backend of the admin is left and the pool forgets the target', async () => {
    const { raw, connector } = pooled({ idleMs: 300 });
    await Promise.all([connector.verify(target), connector.verify(target), connector.verify(target)]);
    expect((await backends()).length).toBeGreaterThan(0);
    await until('the idle connections are closed', async () => (await backends()).length === 0 && raw.pool.stats().identities === 0);
  });

  it('VAULT_TARGET_POOL_IDLE_MS reaches the pools through ConnectorRegistry: the idle connection closes after it', async () => {
    const config = loadConfig({ DATABASE_URL: 'postgres://unused@127.0.0.1/unused', VAULT_MASTER_KEY: randomBytes(32).toString('base64'), VAULT_TARGET_POOL_IDLE_MS: '200' });
    const registry = new ConnectorRegistry(config);
    try {
      await registry.get('postgres').verify(target);
      expect((await backends()).length).toBe(1);
      await until('the idle connection is closed by the setting', async () => (await backends()).length === 0);
    } finally {
      await registry.closeAll();
    }
  });

  it('64 concurrent operations never open more than the pool size', async () => {
    const { raw, connector } = pooled({ size: 3 });
    const { most, results } = await mostOpenDuring(64, async () => (await backends()).length, raw.pool, (i) => connector.listSessions(target, { username: `nobody_${i}` }));
    expect(results.every((r) => r.length === 0)).toBe(true);
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(3);
    expect((await backends()).length).toBeLessThanOrEqual(3);
  });

  it('callers beyond the size wait in order, and one that is aborted or reaches its deadline while waiting gives up without opening a connection', async () => {
    const { raw, connector } = pooled({ size: 1 });
    const path = raw as unknown as AdminPath;
    const release = { go: () => undefined as void };
    const held = path.asAdmin(target, undefined, async (c) => {
      await c.query('SELECT 1');
      await new Promise<void>((r) => (release.go = r));
    });
    await until('the only connection is busy', () => raw.pool.stats().busy === 1);
    const order: number[] = [];
    const queued = [0, 1, 2, 3].map((i) => path.asAdmin(target, undefined, async (c) => {
      order.push(i);
      await c.query('SELECT 1');
    }));
    const late = await failure(connector.verify(target, { timeoutMs: 300 }));
    expect(late.code).toBe('TARGET_TIMEOUT');
    const ac = new AbortController();
    const aborted = path.asAdmin(target, { signal: ac.signal }, async () => order.push(99));
    await until('five callers wait', () => raw.pool.stats().waiting === 5);
    ac.abort();
    await expect(aborted).rejects.toThrow(/aborted/);
    expect(await backends()).toHaveLength(1);
    release.go();
    await held;
    await Promise.all(queued);
    expect(order).toEqual([0, 1, 2, 3]);
    expect(await backends()).toHaveLength(1);
    expect(raw.pool.stats()).toMatchObject({ idle: 1, busy: 0, waiting: 0 });
  });

  it('a pooled backend that stopped answering (SIGSTOP) is given up after the bounded reuse check: the operation runs on a new connection, and closeAll does not hang on it', async () => {
    const { raw, connector } = pooled({ checkAfterMs: 0 });
    await connector.verify(target);
    const [stuck] = await backends();
    process.kill(stuck, 'SIGSTOP');
    try {
      await new Promise((r) => setTimeout(r, 5));
      await connector.verify(target);
      expect((await backends()).filter((p) => p !== stuck)).toHaveLength(1);
      // and shutdown does not wait on the stuck one
      await raw.closeAll();
    } finally {
      process.kill(stuck, 'SIGCONT');
    }
    await until('the stuck backend is gone', async () => !(await backends()).includes(stuck));
  });

  it('a work function that leaves a transaction open, or changes the search path (reported by PostgreSQL 18), never gives its connection back', async () => {
    const { raw } = pooled();
    const path = raw as unknown as AdminPath;
    const pid = (c: Client) => c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid').then((r) => r.rows[0].pid);
    const first = await path.asAdmin(target, { timeoutMs: 15_000 }, async (c) => {
      const p = await pid(c);
      await c.query('BEGIN');
      return p;
    });
    await until('the connection left in a transaction is closed', async () => !(await backends()).includes(first));
    const second = await path.asAdmin(target, { timeoutMs: 15_000 }, async (c) => {
      const p = await pid(c);
      // what a planted function could do in the admin's session: PostgreSQL 18 reports the change to the client
      await c.query("SELECT pg_catalog.set_config('search_path', 'public', false)");
      return p;
    });
    expect(second).not.toBe(first);
    await until('the connection with another search path is closed', async () => !(await backends()).includes(second));
    const third = await path.asAdmin(target, { timeoutMs: 15_000 }, (c) => pid(c));
    const fourth = await path.asAdmin(target, { timeoutMs: 15_000 }, async (c) => {
      const { rows } = await c.query<{ sp: string; cu: string; su: string }>("SELECT current_setting('search_path') AS sp, current_user AS cu, session_user AS su");
      expect(rows[0]).toEqual({ sp: 'pg_catalog', cu: admin.username, su: admin.username });
      return pid(c);
    });
    expect(fourth).toBe(third);
    expect(raw.pool.stats()).toMatchObject({ idle: 1, busy: 0 });
  });

  it('a session left under another role (SET ROLE) is caught by the reuse check and closed: the next operation runs as the admin itself', async () => {
    const { raw } = pooled({ checkAfterMs: 0 });
    const path = raw as unknown as AdminPath;
    const who = (c: Client) => c.query<{ cu: string; su: string; pid: number }>('SELECT current_user AS cu, session_user AS su, pg_backend_pid() AS pid').then((r) => r.rows[0]);
    const first = await path.asAdmin(target, { timeoutMs: 15_000 }, async (c) => {
      await c.query('SET ROLE pg_signal_backend'); // the admin holds it (with SET, the default): not reported to the client
      return who(c);
    });
    expect(first.cu).toBe('pg_signal_backend');
    await new Promise((r) => setTimeout(r, 5));
    const next = await path.asAdmin(target, { timeoutMs: 15_000 }, who);
    expect(next).toMatchObject({ cu: admin.username, su: admin.username });
    expect(next.pid).not.toBe(first.pid);
    await until('the session left under another role is closed', async () => !(await backends()).includes(first.pid));
  });

  it('a work that throws destroys its connection; an aborted call destroys the connection in use', async () => {
    const { raw } = pooled();
    const path = raw as unknown as AdminPath;
    const p1 = await path.asAdmin(target, undefined, async (c) => (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid);
    await expect(path.asAdmin(target, undefined, (c) => c.query('SELECT 1/0'))).rejects.toThrow(/division by zero/);
    await until('the connection whose work failed is closed', async () => !(await backends()).includes(p1));
    const ac = new AbortController();
    const sleeping = path.asAdmin(target, { signal: ac.signal }, (c) => c.query('SELECT pg_sleep(30)'));
    await until('the sleep runs', async () => (await backends()).length === 1 && raw.pool.stats().busy === 1);
    const [p2] = await backends();
    ac.abort();
    await expect(sleeping).rejects.toThrow();
    expect(raw.pool.stats()).toMatchObject({ idle: 0, busy: 0 });
    // the server ends the backend when it next writes to the closed socket: end it here so the test leaves nothing
    await pg.query('SELECT pg_terminate_backend($1)', [p2]);
  });

  it('app shutdown closes every pooled connection: no backend of the admin remains (ConnectorRegistry, VAULT_TARGET_POOL_* settings)', async () => {
    const config = loadConfig({ DATABASE_URL: 'postgres://unused@127.0.0.1/unused', VAULT_MASTER_KEY: randomBytes(32).toString('base64'), VAULT_TARGET_POOL_SIZE: '2', VAULT_TARGET_POOL_IDLE_MS: '600000' });
    expect(config.targetPool).toEqual({ size: 2, idleMs: 600_000 });
    @Global()
    @Module({ providers: [{ provide: APP_CONFIG, useValue: config }], exports: [APP_CONFIG] })
    class ConfigModule {}
    const module = await Test.createTestingModule({ imports: [ConfigModule, ConnectorsModule] }).compile();
    const app = module.createNestApplication();
    await app.init();
    const registry = app.get(ConnectorRegistry);
    const connector = registry.get('postgres');
    await Promise.all(Array.from({ length: 8 }, () => connector.listSessions(target, { username: 'nobody' })));
    const open = (await backends()).length;
    expect(open).toBeGreaterThan(0);
    expect(open).toBeLessThanOrEqual(2);
    await app.close();
    expect(await backends()).toEqual([]);
  });
});

describe('pooled admin connections: MariaDB over TLS, least-privilege admin', () => {
  let my: TlsMariaHandle;
  let target: ConnectorTarget;
  const made: MysqlConnector[] = [];

  const pooled = (settings: Partial<PoolSettings> = {}) => {
    const raw = new MysqlConnector({ size: 4, idleMs: 60_000, ...settings });
    made.push(raw);
    return { raw, connector: new SafeConnector(raw) as Connector };
  };
  const connections = async () => {
    const [rows] = await my.rootQuery('SELECT ID AS id FROM information_schema.PROCESSLIST WHERE USER = ? ORDER BY ID', [my.adminUsername]);
    return (rows as Array<{ id: number }>).map((r) => Number(r.id));
  };
  /** The handle's own admin connection is one of them: the vault's are the others. */
  let own: number;
  const vaults = async () => (await connections()).filter((id) => id !== own);

  beforeAll(async () => {
    my = await connectTlsMariaDb();
    target = { type: 'mysql', host: my.host, port: my.port, adminUsername: my.adminUsername, adminPassword: my.adminPassword, options: { tlsCa: my.tlsCa } };
    const [rows] = await my.query('SELECT CONNECTION_ID() AS id');
    own = Number((rows as Array<{ id: number }>)[0].id);
  }, 60_000);
  afterEach(async () => {
    for (const c of made.splice(0)) await c.closeAll();
    await until('no connection of the vault is left', async () => (await vaults()).length === 0);
  });
  afterAll(async () => {
    await my?.stop();
  });

  it('repeated operations reuse one connection', async () => {
    const { connector } = pooled();
    const ids = new Set<number>();
    for (let i = 0; i < 12; i++) {
      const res = await connector.verify(target);
      expect(res.capabilities.find((c) => c.code === 'MYSQL_TLS')).toMatchObject({ ok: true });
      expect(await connector.listSessions(target, { username: 'vt_nobody' })).toEqual([]);
      for (const id of await vaults()) ids.add(id);
    }
    expect(ids.size).toBe(1);
  });

  it('a changed admin password moves the next operation to a fresh connection, the old one is gone, the old password is refused', async () => {
    const { connector } = pooled();
    await connector.verify(target);
    const [old] = await vaults();
    const newPassword = randomBytes(18).toString('hex');
    await my.rootQuery("ALTER USER ?@'%' IDENTIFIED BY ?", [my.adminUsername, newPassword]);
    try {
      await connector.verify({ ...target, adminPassword: newPassword });
      const now = await vaults();
      expect(now).toHaveLength(1);
      expect(now).not.toContain(old);
      const e = await failure(connector.verify(target));
      expect(e.code).toBe('TARGET_AUTH_FAILED');
      expect(e.message).not.toContain(newPassword);
    } finally {
      await my.rootQuery("ALTER USER ?@'%' IDENTIFIED BY ?", [my.adminUsername, my.adminPassword]);
    }
  });

  it('a wrong pin is never answered from the pool: the idle connection is closed and the new one refused', async () => {
    const { raw, connector } = pooled();
    await connector.verify(target);
    const wrongPin = my.tlsCertSha256.replace(/^../, my.tlsCertSha256.startsWith('AA') ? 'BB' : 'AA');
    const e = await failure(connector.verify({ ...target, options: { ...target.options, tlsCertSha256: wrongPin } }));
    expect(e.code).toBe('TARGET_IDENTITY_UNVERIFIED');
    expect(raw.pool.stats()).toMatchObject({ idle: 0, busy: 0 });
    await until('the connection verified without the pin is gone', async () => (await vaults()).length === 0);
  });

  it('the server killing the pooled connection (KILL) is survived by the next operation', async () => {
    const { raw, connector } = pooled();
    await connector.verify(target);
    const [old] = await vaults();
    await my.rootQuery('KILL CONNECTION ?', [old]);
    await until('the pool noticed', () => raw.pool.stats().idle === 0);
    await connector.verify(target);
    const now = await vaults();
    expect(now).toHaveLength(1);
    expect(now).not.toContain(old);
  });

  it('an idle pool closes after its idle time', async () => {
    const { raw, connector } = pooled({ idleMs: 300 });
    await Promise.all([connector.verify(target), connector.verify(target)]);
    await until('the idle connections are closed', async () => (await vaults()).length === 0 && raw.pool.stats().identities === 0);
  });

  it('64 concurrent operations never open more than the pool size, and closeAll leaves no connection', async () => {
    const { raw, connector } = pooled({ size: 3 });
    const { most, results } = await mostOpenDuring(64, async () => (await vaults()).length, raw.pool, (i) => connector.listSessions(target, { username: `vt_nobody_${i}` }));
    expect(results.every((r) => r.length === 0)).toBe(true);
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(3);
    await raw.closeAll();
    await until('closeAll closed every connection', async () => (await vaults()).length === 0);
  });
});

import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer, Server } from 'node:net';
import { Client as PgClient } from 'pg';
import { ConnectorError } from '../../src/connectors/connector.errors';
import { Connector, ConnectorTarget } from '../../src/connectors/connector.interface';
import { ConnectorRegistry } from '../../src/connectors/connector.registry';
import { PasswordGenerator, TargetType } from '../../src/crypto/password-generator';
import { freePort } from '../support/process';
import { connectTlsMariaDb } from '../support/targets/mariadb-tls';
import { PgHandle, startScramPostgres } from '../support/targets/postgres';
import { run } from '../support/targets/run';
import { LiveSession, openMysqlSession, openPgSession, openSshSession } from '../support/targets/sessions';
import { startSshd } from '../support/targets/sshd';
import { holdSystemAccounts, releaseSystemAccounts } from '../support/system-accounts';

// SSH one-time accounts live in the machine's /etc/passwd: suites that create and remove them take turns
beforeAll(holdSystemAccounts, 900_000);
afterAll(releaseSystemAccounts);

/**
 * One conformance suite for every connector (like Vault's dbplugin/v5/testing), against real servers:
 * OpenSSH sshd, a PostgreSQL cluster with scram-sha-256, and the machine's MariaDB.
 */
interface Fixture {
  target: ConnectorTarget;
  /** Creates an account on the target the way an administrator would, outside the vault. */
  createAccount(name: string, password: string): Promise<void>;
  accountExists(name: string): Promise<boolean>;
  /** Opens a live session as the account; resolves to a function telling whether it is still alive. */
  openSession(name: string, password: string): Promise<LiveSession>;
  /** PostgreSQL only: the cluster, for statements as its admin. */
  pg?: PgHandle;
  stop(): Promise<void>;
}

const fixtures: Record<TargetType, () => Promise<Fixture>> = {
  ssh: async () => {
    const sshd = await startSshd();
    // a least-privilege admin: sudo with its password for exactly the commands the connector needs, never root
    const admin = await sshd.createSudoAdmin({ nopasswd: false });
    return {
      target: { type: 'ssh', host: sshd.host, port: sshd.port, adminUsername: admin.username, adminPassword: admin.password, options: { hostKeySha256: sshd.hostKeySha256, sudo: true } },
      createAccount: (n, p) => sshd.createUser(n, p),
      accountExists: (n) => sshd.userExists(n),
      openSession: (n, p) => openSshSession(sshd.host, sshd.port, n, p),
      stop: () => sshd.stop(),
    };
  },
  postgres: async () => {
    // PG_TEST_VERSION=15: PostgreSQL 15 (Debian's binaries) instead of 18 (embedded)
    // over TLS (the default for PostgreSQL targets), verified against the cluster's throwaway CA
    const pg = await startScramPostgres({ version: process.env.PG_TEST_VERSION === '15' ? 15 : 18, tls: true });
    // the vault logs in as a least-privilege admin (LOGIN CREATEROLE + pg_signal_backend); the superuser only sets up
    const admin = await pg.leastPrivilegeAdmin();
    return {
      target: { type: 'postgres', host: pg.host, port: pg.port, adminUsername: admin.username, adminPassword: admin.password, options: { database: pg.database, tlsCa: pg.tls!.caPem } },
      createAccount: (n, p) => pg.createRole(n, p),
      accountExists: (n) => pg.roleExists(n),
      openSession: (n, p) => openPgSession(pg.host, pg.port, n, p, pg.database),
      pg,
      stop: () => pg.stop(),
    };
  },
  mysql: async () => {
    // the TLS MariaDB of this jest run, with a least-privilege admin (CREATE USER, PROCESS, CONNECTION ADMIN), verified by its CA
    const my = await connectTlsMariaDb();
    return {
      target: { type: 'mysql', host: my.host, port: my.port, adminUsername: my.adminUsername, adminPassword: my.adminPassword, options: { tlsCa: my.tlsCa } },
      createAccount: (n, p) => my.createUser(n, p),
      accountExists: (n) => my.userExists(n),
      openSession: (n, p) => openMysqlSession(my.host, my.port, n, p),
      stop: () => my.stop(),
    };
  },
};

const DAY_MS = 86_400_000;

/** A local user's /etc/shadow and /etc/passwd entries (the SSH test server runs on this machine). */
async function shadowEntry(name: string): Promise<string[]> {
  return (await run('getent', ['shadow', name])).stdout.trim().split(':');
}
async function homeDirOf(name: string): Promise<string> {
  return (await run('getent', ['passwd', name])).stdout.trim().split(':')[5];
}

const HOSTILE = ["'; id; '", '$(touch /tmp/pwned)', '`id`', '-oProxyCommand=id', 'a\nb', 'a"b', "a'b", 'x'.repeat(200), 'root;rm', '../etc', ''];

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(ConnectorError);
    // an unexpected generic failure says why, so a flaky target can be told from a connector bug
    if ((e as ConnectorError).code === 'TARGET_ERROR') return `TARGET_ERROR (${(e as Error).message})`;
    return (e as ConnectorError).code;
  }
  throw new Error('expected the call to fail');
}

describe.each(['ssh', 'postgres', 'mysql'] as const)('%s connector conformance (real server)', (type) => {
  let fx: Fixture;
  let connector: Connector;
  const gen = new PasswordGenerator();
  const name = () => (type === 'ssh' ? `vt_${randomBytes(4).toString('hex')}` : `vt_${randomBytes(4).toString('hex')}`);
  const password = () => gen.generate(type, { length: 24, classes: ['lower', 'upper', 'digit', 'symbol'] });
  // what the vault asks (TargetConnection.newUser): validUntil only where the type has an account expiry
  const expiryFor = (validUntil: Date) => (connector.supports.accountExpiry === 'none' ? {} : { validUntil });

  beforeAll(async () => {
    fx = await fixtures[type]();
    connector = new ConnectorRegistry().get(type);
  }, 60_000);
  afterAll(() => fx?.stop());

  it('verifies with the admin credential and reports the server', async () => {
    const res = await connector.verify(fx.target);
    expect(res.ok).toBe(true);
    expect(res.serverVersion).toEqual(expect.any(String));
    if (type === 'ssh') expect(res.hostKeySha256).toBe(fx.target.options.hostKeySha256);
  });

  it('fails verify on bad admin credentials with TARGET_AUTH_FAILED, and the error holds no secret', async () => {
    const wrong = type === 'ssh' ? { adminPrivateKey: undefined, adminPassword: `wrong-${randomBytes(8).toString('hex')}` } : { adminPassword: `wrong-${randomBytes(8).toString('hex')}` };
    const target = { ...fx.target, ...wrong };
    try {
      await connector.verify(target);
      throw new Error('verify should fail');
    } catch (e) {
      expect((e as ConnectorError).code).toBe('TARGET_AUTH_FAILED');
      expect(JSON.stringify({ m: (e as Error).message, s: String(e) })).not.toContain(wrong.adminPassword);
    }
  });

  it('fails verify on an unreachable host with TARGET_UNREACHABLE', async () => {
    const port = await freePort();
    expect(await codeOf(connector.verify({ ...fx.target, port }))).toBe('TARGET_UNREACHABLE');
  });

  it('gives up on a target that never answers with TARGET_TIMEOUT', async () => {
    const silent: Server = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const port = (silent.address() as { port: number }).port;
      expect(await codeOf(connector.verify({ ...fx.target, port }, { timeoutMs: 800 }))).toBe('TARGET_TIMEOUT');
    } finally {
      silent.close();
    }
  });

  if (type === 'ssh') {
    it('refuses a changed host key with TARGET_HOST_KEY_MISMATCH', async () => {
      const target = { ...fx.target, options: { hostKeySha256: 'A'.repeat(43) } };
      expect(await codeOf(connector.verify(target))).toBe('TARGET_HOST_KEY_MISMATCH');
    });
  }

  it('rotates: the new password logs in, the old one stops working', async () => {
    const account = name();
    const oldPw = password();
    await fx.createAccount(account, oldPw);
    await connector.login(fx.target, { username: account, password: oldPw });
    const newPw = password();
    await connector.updatePassword(fx.target, { username: account, password: newPw });
    await connector.login(fx.target, { username: account, password: newPw });
    expect(await codeOf(connector.login(fx.target, { username: account, password: oldPw }))).toBe('TARGET_AUTH_FAILED');
  });

  it('keeps the new password out of the error when rotating an account that does not exist', async () => {
    const newPw = password();
    try {
      await connector.updatePassword(fx.target, { username: name(), password: newPw });
      throw new Error('rotate should fail');
    } catch (e) {
      expect(e).toBeInstanceOf(ConnectorError);
      expect((e as Error).message).not.toContain(newPw);
    }
  });

  it.each(HOSTILE)('refuses the hostile name %j before anything runs', async (hostile) => {
    // an unreachable port: a refusal by the name check answers TARGET_INVALID_NAME, anything that ran would not
    const offline = { ...fx.target, port: await freePort() };
    for (const call of [
      connector.updatePassword(offline, { username: hostile, password: password() }),
      connector.login(offline, { username: hostile, password: password() }),
      connector.newUser(offline, { username: hostile, password: password(), access: {} }),
      connector.deleteUser(offline, { username: hostile }),
      connector.terminateSessions(offline, { username: hostile }),
    ]) {
      expect(await codeOf(call)).toBe('TARGET_INVALID_NAME');
    }
  });

  it(`states its account expiry (${({ ssh: 'day', postgres: 'exact', mysql: 'none' } as const)[type]}) and refuses validUntil before anything runs when it has none`, async () => {
    expect(connector.supports.accountExpiry).toBe(({ ssh: 'day', postgres: 'exact', mysql: 'none' } as const)[type]);
    expect(connector.supports.hostKey).toBe(type === 'ssh');
    const offline = { ...fx.target, port: await freePort() };
    const asked = connector.newUser(offline, { username: name(), password: password(), access: {}, validUntil: new Date(Date.now() + DAY_MS) });
    // an unreachable port: MySQL refuses before anything runs (TARGET_UNSUPPORTED); the others go on and cannot reach it
    expect(await codeOf(asked)).toBe(type === 'mysql' ? 'TARGET_UNSUPPORTED' : 'TARGET_UNREACHABLE');
    if (type !== 'ssh') expect(await codeOf(connector.hostKey!(offline))).toBe('TARGET_UNSUPPORTED');
  });

  it("refuses to revoke the target's administrator (or root) before anything runs", async () => {
    // an unreachable port: a refusal answers TARGET_INVALID_NAME, anything that ran would not
    const offline = { ...fx.target, port: await freePort() };
    expect(await codeOf(connector.deleteUser(offline, { username: fx.target.adminUsername }))).toBe('TARGET_INVALID_NAME');
    if (type === 'ssh') expect(await codeOf(connector.deleteUser({ ...offline, adminUsername: 'vaultadm' }, { username: 'root' }))).toBe('TARGET_INVALID_NAME');
  });

  it('refuses hostile group, role or database names in ephemeral access', async () => {
    const offline = { ...fx.target, port: await freePort() };
    const badDates = [new Date(NaN), new Date(-DAY_MS), new Date(Date.UTC(10000, 0, 1)), '2030-01-01' as unknown as Date];
    for (const req of [{ access: { groups: ['wheel;id'] } }, { access: { grantRoles: ['"; DROP ROLE x; --'] } }, { access: { database: "a'b" } }, ...badDates.map((validUntil) => ({ access: {}, validUntil }))]) {
      expect(await codeOf(connector.newUser(offline, { username: name(), password: password(), ...req }))).toBe('TARGET_INVALID_NAME');
    }
  });

  it('creates a one-time account, ends its live sessions, and removes it (twice is fine)', async () => {
    const account = name();
    const pw = password();
    await connector.newUser(fx.target, { username: account, password: pw, access: {} });
    expect(await fx.accountExists(account)).toBe(true);
    await connector.login(fx.target, { username: account, password: pw });
    const session = await fx.openSession(account, pw);
    expect(await session.alive()).toBe(true);
    await connector.terminateSessions(fx.target, { username: account });
    expect(await session.alive()).toBe(false);
    await session.close();

    await connector.deleteUser(fx.target, { username: account });
    expect(await fx.accountExists(account)).toBe(false);
    expect(await codeOf(connector.login(fx.target, { username: account, password: pw }))).toBe('TARGET_AUTH_FAILED');
    await connector.deleteUser(fx.target, { username: account }); // already gone: still succeeds
  });

  it('revokes an account that still has a live session', async () => {
    const account = name();
    const pw = password();
    await connector.newUser(fx.target, { username: account, password: pw, access: {} });
    const session = await fx.openSession(account, pw);
    await connector.deleteUser(fx.target, { username: account });
    expect(await session.alive()).toBe(false);
    expect(await fx.accountExists(account)).toBe(false);
    await session.close();
  });

  it('creates a one-time account with validUntil: the target holds the backstop expiry (MySQL: none, asked without it)', async () => {
    const account = name();
    const pw = password();
    // a few days ahead, at an odd time of day with milliseconds
    const validUntil = new Date(Date.now() + 3 * DAY_MS + 12_345_678);
    const { expiresOnTarget } = await connector.newUser(fx.target, { username: account, password: pw, access: {}, ...expiryFor(validUntil) });
    try {
      expect(await fx.accountExists(account)).toBe(true);
      expect(expiresOnTarget).toEqual({ ssh: new Date((Math.floor(validUntil.getTime() / DAY_MS) + 1) * DAY_MS), postgres: validUntil, mysql: null }[type]);
      await connector.login(fx.target, { username: account, password: pw });
      if (type === 'ssh') {
        // shadow field 8: the day (since 1970-01-01, UTC) from whose start the account is expired: the day after validUntil
        expect(Number((await shadowEntry(account))[7])).toBe(Math.floor(validUntil.getTime() / DAY_MS) + 1);
      } else if (type === 'postgres') {
        const { rows } = await fx.pg!.query<{ v: Date }>('SELECT rolvaliduntil AS v FROM pg_roles WHERE rolname = $1', [account]);
        expect(rows[0].v).toBeInstanceOf(Date);
        expect(Math.floor(rows[0].v.getTime() / 1000)).toBe(Math.floor(validUntil.getTime() / 1000));
      }
    } finally {
      await connector.deleteUser(fx.target, { username: account });
    }
    expect(await fx.accountExists(account)).toBe(false);
  }, 30_000);

  it('an account whose validUntil has passed cannot log in, without the vault doing anything (MySQL: none, asked without it)', async () => {
    const account = name();
    const pw = password();
    // SSH: days back, so even its day granularity (the day after validUntil) is in the past; PostgreSQL: exact
    const validUntil = new Date(Date.now() - (type === 'ssh' ? 3 * DAY_MS : 60_000));
    await connector.newUser(fx.target, { username: account, password: pw, access: {}, ...expiryFor(validUntil) });
    try {
      expect(await fx.accountExists(account)).toBe(true);
      if (type === 'mysql') await connector.login(fx.target, { username: account, password: pw });
      else expect(await codeOf(connector.login(fx.target, { username: account, password: pw }))).toBe('TARGET_AUTH_FAILED');
    } finally {
      await connector.deleteUser(fx.target, { username: account });
    }
    expect(await fx.accountExists(account)).toBe(false);
  }, 30_000);

  if (type === 'ssh') {
    it('revoking removes the user and its home dir, even with a live session (twice is fine)', async () => {
      const account = name();
      const pw = password();
      await connector.newUser(fx.target, { username: account, password: pw, access: {} });
      const home = await homeDirOf(account);
      expect(home).toBe(`/home/${account}`);
      expect(existsSync(home)).toBe(true);
      const session = await fx.openSession(account, pw);
      try {
        await connector.deleteUser(fx.target, { username: account });
        expect(await session.alive()).toBe(false);
      } finally {
        await session.close();
      }
      expect((await run('getent', ['passwd', account], { okCodes: [0, 2] })).code).toBe(2);
      expect(existsSync(home)).toBe(false);
      await connector.deleteUser(fx.target, { username: account });
    });
  }

  if (type === 'postgres') {
    it('revokes a role that owns a table in a second database: the table is dropped (never handed to the admin) and the role is dropped', async () => {
      const pg = fx.pg!;
      const account = name();
      const pw = password();
      const db = `vt_db_${randomBytes(4).toString('hex')}`;
      const dbId = `"${db}"`;
      // what the account may do comes from a group role a policy grants (16+: the admin holds ADMIN OPTION on it)
      const grp = `vt_grp_${randomBytes(4).toString('hex')}`;
      const adminId = `"${fx.target.adminUsername}"`;
      await pg.query(`CREATE DATABASE ${dbId}`);
      await pg.query(`REVOKE CONNECT ON DATABASE ${dbId} FROM PUBLIC`); // else a policy naming it restricts nothing (refused)
      await pg.query(`CREATE ROLE "${grp}" NOLOGIN`);
      if (pg.version >= 16) await pg.query(`GRANT "${grp}" TO ${adminId} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE`);
      await pg.query(`GRANT CONNECT ON DATABASE ${dbId} TO ${adminId} WITH GRANT OPTION`);
      const clients: PgClient[] = [];
      const open = async (user: string, pass: string) => {
        const c = new PgClient({ host: pg.host, port: pg.port, user, password: pass, database: db });
        c.on('error', () => undefined);
        clients.push(c);
        await c.connect();
        return c;
      };
      try {
        await connector.newUser(fx.target, { username: account, password: pw, access: { database: db, grantRoles: [grp] } });
        const adminInDb = await open(pg.adminUsername, pg.adminPassword);
        await adminInDb.query(`GRANT ALL ON SCHEMA public TO "${grp}"`);
        // the role's own live session in the second database, where it creates a table (and keeps the session)
        const roleInDb = await open(account, pw);
        await roleInDb.query('CREATE TABLE vt_owned (x int)');
        const owner = () => adminInDb.query<{ owner: string }>("SELECT pg_get_userbyid(relowner) AS owner FROM pg_class WHERE relname = 'vt_owned'");
        expect((await owner()).rows).toEqual([{ owner: account }]);

        // without DROP OWNED in that database, DROP ROLE fails: "some objects depend on it"
        await connector.deleteUser(fx.target, { username: account });

        expect(await fx.accountExists(account)).toBe(false);
        expect(await roleInDb.query('SELECT 1').then(() => true, () => false)).toBe(false); // its session there was ended
        expect((await owner()).rows).toEqual([]);
        const { rows } = await pg.query<{ acl: string | null }>('SELECT datacl::text AS acl FROM pg_database WHERE datname = $1', [db]);
        expect(rows[0].acl ?? '').not.toContain(account);
        await connector.deleteUser(fx.target, { username: account }); // already gone: still succeeds
      } finally {
        for (const c of clients) await c.end().catch(() => undefined);
        await pg.query(`DROP DATABASE IF EXISTS ${dbId} WITH (FORCE)`);
        await pg.query(`DROP ROLE IF EXISTS "${account}"`).catch(() => undefined);
        await pg.query(`DROP ROLE IF EXISTS "${grp}"`).catch(() => undefined);
      }
    }, 30_000);
  }
});

import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client as PgClient } from 'pg';
import { ConnectorError } from '../../src/connectors/connector.errors';
import { Connector, ConnectorTarget } from '../../src/connectors/connector.interface';
import { ConnectorRegistry } from '../../src/connectors/connector.registry';
import { scramSha256Verifier } from '../../src/connectors/postgres/scram';
import { PasswordGenerator } from '../../src/crypto/password-generator';
import { FakeAuthMode, startFakePostgres } from '../support/targets/fake-postgres';
import { makeServerCertificate, makeTestCa, PgAdmin, PgHandle, startScramPostgres } from '../support/targets/postgres';
import { openPgSession } from '../support/targets/sessions';

/**
 * Target safety on PostgreSQL (issue 11), against real clusters — PostgreSQL 15 (Debian) and 18 (embedded) — with the
 * least-privilege administrator the README asks for (LOGIN CREATEROLE + pg_signal_backend, not a superuser), plus
 * impostor servers that ask for the password the unsafe ways, and a TLS cluster.
 */

const gen = new PasswordGenerator();
const password = () => gen.generate('postgres', { length: 24, classes: ['lower', 'upper', 'digit', 'symbol'] });
const name = (prefix = 'vt') => `${prefix}_${randomBytes(4).toString('hex')}`;
const q = (id: string) => `"${id.replace(/"/g, '""')}"`;

async function failure(p: Promise<unknown>): Promise<ConnectorError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(ConnectorError);
    return e as ConnectorError;
  }
  throw new Error('expected the call to fail');
}

/** A client as `user` on the cluster (test set-up and observation, outside the vault). */
async function session(pg: PgHandle, user: string, pass: string, database = pg.database): Promise<PgClient> {
  const c = new PgClient({ host: pg.host, port: pg.port, user, password: pass, database });
  c.on('error', () => undefined);
  await c.connect();
  return c;
}

describe.each([15, 18] as const)('PostgreSQL %s with a least-privilege administrator', (version) => {
  let pg: PgHandle;
  let admin: PgAdmin;
  let target: ConnectorTarget;
  let connector: Connector;
  const opened: PgClient[] = [];
  const open = async (user: string, pass: string, database?: string) => {
    const c = await session(pg, user, pass, database);
    opened.push(c);
    return c;
  };

  beforeAll(async () => {
    pg = await startScramPostgres({ version });
    expect(pg.version).toBe(version);
    admin = await pg.leastPrivilegeAdmin();
    target = { type: 'postgres', host: pg.host, port: pg.port, adminUsername: admin.username, adminPassword: admin.password, options: { database: pg.database } };
    connector = new ConnectorRegistry().get('postgres');
  }, 60_000);
  afterAll(async () => {
    for (const c of opened) await c.end().catch(() => undefined);
    await pg?.stop();
  });

  it('the administrator is not a superuser: CREATEROLE and pg_signal_backend only', async () => {
    const { rows } = await pg.query<{ rolsuper: boolean; rolcreaterole: boolean; signal: boolean }>(
      "SELECT rolsuper, rolcreaterole, pg_has_role(rolname, 'pg_signal_backend', 'MEMBER') AS signal FROM pg_roles WHERE rolname = $1",
      [admin.username],
    );
    expect(rows).toEqual([{ rolsuper: false, rolcreaterole: true, signal: true }]);
  });

  it('verify reports every capability; a bare login role gets every missing one at once, each saying what to grant', async () => {
    const res = await connector.verify(target);
    const codes = Object.fromEntries(res.capabilities.map((c) => [c.code, c.ok]));
    expect(codes).toMatchObject({ PG_CREATEROLE: true, PG_SIGNAL_BACKEND: true });
    expect('PG_TLS' in codes).toBe(false);
    if (version >= 16) expect(res.capabilities.find((c) => c.code === 'PG_ADMIN_OPTION')?.message).toContain(`TO "${admin.username}" WITH ADMIN OPTION`);
    else expect('PG_ADMIN_OPTION' in codes).toBe(false);

    const bare = name('vt_bare');
    const pw = password();
    await pg.query(`CREATE ROLE ${q(bare)} LOGIN PASSWORD '${pw}'`);
    const weak = await connector.verify({ ...target, adminUsername: bare, adminPassword: pw });
    const missing = weak.capabilities.filter((c) => !c.ok);
    expect(missing.map((c) => c.code).sort()).toEqual(['PG_CREATEROLE', 'PG_SIGNAL_BACKEND']);
    expect(missing.find((c) => c.code === 'PG_CREATEROLE')!.message).toContain(`ALTER ROLE ${q(bare)} CREATEROLE`);
    expect(missing.find((c) => c.code === 'PG_SIGNAL_BACKEND')!.message).toContain(`GRANT pg_signal_backend TO ${q(bare)}`);
  });

  it('rotates an existing account (16+: with ADMIN OPTION on it; without, the error says what to grant)', async () => {
    const account = name();
    await pg.createRole(account, password()); // 16+: granted to the admin WITH ADMIN OPTION by the handle
    const pw = password();
    await connector.rotate(target, { username: account, password: pw });
    await connector.login(target, { username: account, password: pw });

    if (version >= 16) {
      const unmanaged = name();
      await pg.query(`CREATE ROLE ${q(unmanaged)} LOGIN`);
      const secret = password();
      const e = await failure(connector.rotate(target, { username: unmanaged, password: secret }));
      expect(e.message).toContain(`GRANT ${q(unmanaged)} TO ${q(admin.username)} WITH ADMIN OPTION`);
      expect(e.message).not.toContain(secret);
    }
  });

  it('revoke drops everything the one-time role owned — a table, a SECURITY DEFINER function, its trigger on an admin-owned table — in every database; nothing runs as the admin afterwards', async () => {
    const vendor = name('vt_vendor');
    const pw = password();
    const db = name('vt_db');
    await pg.query(`CREATE DATABASE ${q(db)}`);
    try {
      // what a vendor could be allowed, through a group role a policy grants: create in the public schemas, a
      // trigger on a table the admin owns
      const grp = name('vt_work');
      await pg.query(`CREATE ROLE ${q(grp)} NOLOGIN`);
      if (version >= 16) await pg.query(`GRANT ${q(grp)} TO ${q(admin.username)} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE`);
      await pg.query(`GRANT CREATE ON SCHEMA public TO ${q(grp)}`);
      await pg.query('CREATE TABLE IF NOT EXISTS vt_admin_table (x int)');
      await pg.query(`ALTER TABLE vt_admin_table OWNER TO ${q(admin.username)}`);
      await pg.query(`GRANT SELECT, INSERT, TRIGGER ON vt_admin_table TO ${q(grp)}`);
      const inDb = await open(pg.adminUsername, pg.adminPassword, db);
      await inDb.query(`GRANT CREATE ON SCHEMA public TO ${q(grp)}`);
      await pg.query(`GRANT CONNECT ON DATABASE ${q(db)} TO ${q(admin.username)} WITH GRANT OPTION`);
      await connector.createEphemeral(target, { username: vendor, password: pw }, { grantRoles: [grp], database: db });

      const v = await open(vendor, pw);
      await v.query('CREATE TABLE vt_vendor_table (secret text)');
      await v.query(`CREATE FUNCTION vt_backdoor() RETURNS text LANGUAGE sql SECURITY DEFINER AS 'SELECT current_user::text'`);
      await v.query(`CREATE FUNCTION vt_trigger_fn() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN RAISE EXCEPTION 'vendor code ran as %', current_user; END $$`);
      await v.query('CREATE TRIGGER vt_trap BEFORE INSERT ON vt_admin_table FOR EACH ROW EXECUTE FUNCTION vt_trigger_fn()');
      const vInDb = await open(vendor, pw, db);
      await vInDb.query('CREATE TABLE vt_other_db_table (x int)');

      // before: the admin calling the vendor's function runs the vendor's code (as the vendor), the trigger fires
      const asAdmin = await open(admin.username, admin.password);
      expect((await asAdmin.query<{ u: string }>('SELECT public.vt_backdoor() AS u')).rows[0].u).toBe(vendor);
      await expect(asAdmin.query('INSERT INTO public.vt_admin_table VALUES (1)')).rejects.toThrow(/vendor code ran/);

      await connector.revokeEphemeral(target, vendor);

      expect(await pg.roleExists(vendor)).toBe(false);
      const left = await pg.query("SELECT proname FROM pg_proc WHERE proname IN ('vt_backdoor', 'vt_trigger_fn') UNION ALL SELECT tgname FROM pg_trigger WHERE tgname = 'vt_trap' UNION ALL SELECT relname FROM pg_class WHERE relname = 'vt_vendor_table'");
      expect(left.rows).toEqual([]);
      expect((await inDb.query("SELECT relname FROM pg_class WHERE relname = 'vt_other_db_table'")).rows).toEqual([]);
      // nothing of the vendor's runs as the admin: the function is gone, the admin's table takes inserts again
      await expect(asAdmin.query('SELECT public.vt_backdoor()')).rejects.toThrow(/does not exist/);
      await asAdmin.query('INSERT INTO public.vt_admin_table VALUES (2)');
      // the admin's table itself stays, and the admin is not left a member of the dropped role
      expect((await pg.query<{ owner: string }>("SELECT pg_get_userbyid(relowner) AS owner FROM pg_class WHERE relname = 'vt_admin_table'")).rows).toEqual([{ owner: admin.username }]);
      await connector.revokeEphemeral(target, vendor); // twice is fine
    } finally {
      await pg.query(`DROP DATABASE IF EXISTS ${q(db)} WITH (FORCE)`);
    }
  }, 30_000);

  it('terminateSessions ends only the role\'s client backends: a walsender of the same role survives', async () => {
    const repl = name('vt_repl');
    const pw = password();
    await pg.createRole(repl, pw);
    await pg.query(`ALTER ROLE ${q(repl)} REPLICATION`);
    const walsender = new PgClient({ host: pg.host, port: pg.port, user: repl, password: pw, database: pg.database, replication: 'database' } as never);
    walsender.on('error', () => undefined);
    opened.push(walsender);
    await walsender.connect();
    const normal = await openPgSession(pg.host, pg.port, repl, pw, pg.database);
    try {
      const kinds = async () => (await pg.query<{ t: string }>('SELECT backend_type AS t FROM pg_stat_activity WHERE usename = $1 ORDER BY 1', [repl])).rows.map((r) => r.t);
      expect(await kinds()).toEqual(['client backend', 'walsender']);
      await connector.terminateSessions(target, repl);
      expect(await normal.alive()).toBe(false);
      expect(await kinds()).toEqual(['walsender']);
    } finally {
      await normal.close();
    }
  });

  it("terminateSessions on a superuser's sessions fails loudly (a non-superuser cannot end them) and ends nothing", async () => {
    const sup = name('vt_super');
    const pw = password();
    await pg.query(`CREATE ROLE ${q(sup)} SUPERUSER LOGIN PASSWORD '${pw}'`);
    const s = await openPgSession(pg.host, pg.port, sup, pw, pg.database);
    try {
      const e = await failure(connector.terminateSessions(target, sup));
      expect(e.code).toBe('TARGET_ERROR');
      expect(e.message).toMatch(/superuser/);
      expect(await s.alive()).toBe(true);
    } finally {
      await s.close();
    }
  });

  it('revokes a one-time account with a live session using only CREATEROLE + pg_signal_backend', async () => {
    const vendor = name();
    const pw = password();
    await connector.createEphemeral(target, { username: vendor, password: pw }, { database: pg.database });
    const s = await openPgSession(pg.host, pg.port, vendor, pw, pg.database);
    await connector.revokeEphemeral(target, vendor);
    expect(await s.alive()).toBe(false);
    await s.close();
    expect(await pg.roleExists(vendor)).toBe(false);
    // the admin's membership in it (given to itself for DROP OWNED) went with it
    const { rows } = await pg.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = $1 AND NOT EXISTS (SELECT 1 FROM pg_roles g WHERE g.oid = m.roleid)', [admin.username]);
    expect(rows[0].n).toBe(0);
  });

  it('revoke of an account another role granted privileges to directly: a clear error, yet it cannot log in, its sessions ended, and the admin keeps no privileges of it', async () => {
    const vendor = name();
    const pw = password();
    await connector.createEphemeral(target, { username: vendor, password: pw }, {});
    await pg.query('CREATE TABLE IF NOT EXISTS vt_third_party (x int)');
    await pg.query(`GRANT SELECT ON vt_third_party TO ${q(vendor)}`); // granted by the table's owner, not the admin
    const s = await openPgSession(pg.host, pg.port, vendor, pw, pg.database);
    try {
      const e = await failure(connector.revokeEphemeral(target, vendor));
      expect(e.code).toBe('TARGET_ERROR');
      expect(e.message).toMatch(/granted by other roles/);
      expect(e.message).toContain('vt_third_party');
      expect(await s.alive()).toBe(false);
      expect((await failure(connector.login(target, { username: vendor, password: pw }))).code).toBe('TARGET_AUTH_FAILED');
      const { rows } = await pg.query<{ usage: boolean }>("SELECT pg_has_role($1, $2, 'USAGE') AS usage", [admin.username, vendor]);
      expect(rows[0].usage).toBe(false);
      // once the grantor takes its grant back, revoking completes
      await pg.query(`REVOKE SELECT ON vt_third_party FROM ${q(vendor)}`);
      await connector.revokeEphemeral(target, vendor);
      expect(await pg.roleExists(vendor)).toBe(false);
    } finally {
      await s.close();
    }
  });

  describe('inspectAccess: the allow-list against the catalog', () => {
    const grp = name('vt_grp');
    const roles: Record<string, string> = {};
    beforeAll(async () => {
      const mk = async (key: string, attrs = 'NOLOGIN') => {
        roles[key] = name(`vt_${key}`);
        await pg.query(`CREATE ROLE ${q(roles[key])} ${attrs}`);
        if (version >= 16) await pg.query(`GRANT ${q(roles[key])} TO ${q(admin.username)} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE`);
        return roles[key];
      };
      await pg.query(`CREATE ROLE ${q(grp)} NOLOGIN`);
      if (version >= 16) await pg.query(`GRANT ${q(grp)} TO ${q(admin.username)} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE`);
      await mk('login', 'LOGIN');
      await mk('ops_admin', 'NOLOGIN CREATEROLE');
      await mk('app_admin');
      await pg.query(`GRANT ${q(roles.ops_admin)} TO ${q(roles.app_admin)}`);
      await mk('super_member');
      await pg.query(`CREATE ROLE ${q(roles.super_member + '_su')} SUPERUSER NOLOGIN`);
      await pg.query(`GRANT ${q(roles.super_member + '_su')} TO ${q(roles.super_member)}`);
      await mk('bypass', 'NOLOGIN BYPASSRLS');
      roles.in_admin = name('vt_in_admin'); // (16+: not granted to the admin, which would make a cycle)
      await pg.query(`CREATE ROLE ${q(roles.in_admin)} NOLOGIN`);
      await pg.query(`GRANT ${q(admin.username)} TO ${q(roles.in_admin)}`);
      await mk('admin_holds');
      await pg.query(`GRANT ${q(roles.admin_holds)} TO ${q(admin.username)}${version >= 16 ? ' WITH INHERIT TRUE' : ''}`);
      await mk('granter');
      await pg.query(`GRANT ${q(grp)} TO ${q(roles.granter)} WITH ADMIN OPTION`);
      await mk('owner');
      await pg.query(`CREATE TABLE vt_owned_by_group (x int)`);
      await pg.query(`ALTER TABLE vt_owned_by_group OWNER TO ${q(roles.owner)}`);
      await mk('owner_member');
      await pg.query(`GRANT ${q(roles.owner)} TO ${q(roles.owner_member)}`);
      await mk('files');
      await pg.query(`GRANT pg_write_server_files TO ${q(roles.files)}`);
      await pg.query('CREATE DATABASE vt_noconn ALLOW_CONNECTIONS false');
      await pg.query('CREATE DATABASE vt_granted');
      await pg.query('CREATE DATABASE vt_nogrant');
      await pg.query(`GRANT CONNECT ON DATABASE vt_granted TO ${q(admin.username)} WITH GRANT OPTION`);
    });

    it('allows a plain NOLOGIN group role and a database the admin can grant CONNECT on', async () => {
      expect(await connector.inspectAccess(target, { roles: [grp], databases: ['vt_granted'] })).toEqual([]);
    });

    it('refuses every problem at once, one readable line each', async () => {
      const lines = await connector.inspectAccess(target, {
        roles: [roles.owner, roles.owner_member, roles.login, roles.app_admin, roles.super_member, roles.bypass, roles.in_admin, roles.admin_holds, roles.granter, roles.files, admin.username, 'pg_read_all_data', 'vt_missing_role'],
        databases: ['template1', 'vt_noconn', 'vt_missing_db', 'vt_nogrant'],
      });
      const expected = [
        `role ${roles.owner}: owns 1 object(s)`,
        `role ${roles.owner_member}: member of a role that owns objects (${roles.owner})`,
        `role ${roles.login}: is a login role`,
        `role ${roles.app_admin}: member of a role with CREATEROLE (${roles.ops_admin})`,
        `role ${roles.super_member}: member of a role with SUPERUSER (${roles.super_member}_su)`,
        `role ${roles.bypass}: has BYPASSRLS`,
        `role ${roles.in_admin}: member of the target's administrator (${admin.username})`,
        `role ${roles.admin_holds}: the target's administrator holds its privileges`,
        `role ${roles.granter}: holds ADMIN OPTION on ${grp}`,
        `role ${roles.files}: member of a predefined role (pg_write_server_files)`,
        `role ${admin.username}: is the target's administrator`,
        `role ${admin.username}: has CREATEROLE`,
        'role pg_read_all_data: is a predefined role',
        'role vt_missing_role: does not exist',
        'database template1: is a template',
        'database vt_noconn: does not allow connections',
        'database vt_missing_db: does not exist',
        `database vt_nogrant: the administrator cannot grant CONNECT on it (GRANT CONNECT ON DATABASE "vt_nogrant" TO "${admin.username}" WITH GRANT OPTION)`,
      ];
      for (const line of expected) expect(lines.filter((l) => l.startsWith(line))).toHaveLength(1);
      if (version >= 16) expect(lines).toContain(`role pg_read_all_data: the administrator cannot grant it (PostgreSQL 16+: GRANT "pg_read_all_data" TO "${admin.username}" WITH ADMIN OPTION, INHERIT FALSE, SET FALSE)`);
    });

    it('createEphemeral checks the allow-list again and creates nothing when a role is refused', async () => {
      const vendor = name();
      const e = await failure(connector.createEphemeral(target, { username: vendor, password: password() }, { grantRoles: [grp, roles.app_admin] }));
      expect(e.code).toBe('TARGET_INVALID_NAME');
      expect(e.message).toContain(`member of a role with CREATEROLE (${roles.ops_admin})`);
      expect(await pg.roleExists(vendor)).toBe(false);
    });

    it(`grants a role to a one-time account ${version >= 16 ? 'WITH INHERIT TRUE, SET FALSE: its privileges, but no SET ROLE to create objects owned by it' : '(PostgreSQL 15 has no SET option: SET ROLE stays possible)'}`, async () => {
      await pg.query('CREATE TABLE IF NOT EXISTS vt_group_data (x int)');
      await pg.query(`GRANT SELECT ON vt_group_data TO ${q(grp)}`);
      const vendor = name();
      const pw = password();
      await connector.createEphemeral(target, { username: vendor, password: pw }, { grantRoles: [grp] });
      try {
        const v = await open(vendor, pw);
        await v.query('SELECT * FROM public.vt_group_data'); // inherited
        if (version >= 16) await expect(v.query(`SET ROLE ${q(grp)}`)).rejects.toThrow(/permission denied/);
        else await v.query(`SET ROLE ${q(grp)}`);
        await v.end();
      } finally {
        await connector.revokeEphemeral(target, vendor);
      }
    });
  });

  it('isAdmin: the administrator\'s own name (case-sensitive), nothing else', async () => {
    expect(await connector.isAdmin(target, admin.username)).toBe(true);
    expect(await connector.isAdmin(target, 'Vault_Admin')).toBe(false);
    expect(await connector.isAdmin(target, pg.adminUsername)).toBe(false);
  });
});

describe('PostgreSQL impostors: SCRAM-SHA-256 only, nothing sent otherwise', () => {
  const connector = new ConnectorRegistry().get('postgres');
  const adminPassword = `admin-${randomBytes(12).toString('hex')}`;
  const account = { username: 'vt_account', password: password() };

  describe.each(['cleartext', 'md5', 'ok'] as FakeAuthMode[])('a server answering %s', (mode) => {
    it('every call (verify, rotate, login, revokeEphemeral, …) fails with TARGET_IDENTITY_UNVERIFIED; no password message reaches it', async () => {
      const fake = await startFakePostgres(mode);
      try {
        const target: ConnectorTarget = { type: 'postgres', host: fake.host, port: fake.port, adminUsername: 'vault_admin', adminPassword, options: { database: 'postgres' } };
        // one after the other: a rejection is never left unobserved while an earlier call is awaited
        const calls = [
          () => connector.verify(target),
          () => connector.rotate(target, account),
          () => connector.login(target, account),
          () => connector.revokeEphemeral(target, 'vt_vendor'),
          () => connector.terminateSessions(target, 'vt_vendor'),
          () => connector.inspectAccess(target, { roles: ['r'] }),
          () => connector.isAdmin(target, 'vt_vendor'),
          () => connector.createEphemeral(target, { username: 'vt_vendor', password: password() }, {}),
        ];
        for (const call of calls) {
          const e = await failure(call());
          expect(e.code).toBe('TARGET_IDENTITY_UNVERIFIED');
          expect(e.message).not.toContain(adminPassword);
        }
        expect(fake.startups()).toBe(calls.length);
        const types = fake.messageTypes();
        expect(types.filter((t) => t !== 'X')).toEqual([]); // at most Terminate: no password ('p'), no statement ('Q'/'P')
        const bytes = fake.received().toString('latin1');
        for (const secret of [adminPassword, account.password]) expect(bytes).not.toContain(secret);
        expect(bytes).not.toContain('SCRAM-SHA-256$');
      } finally {
        await fake.stop();
      }
    });
  });

  it('a server running SCRAM without holding the verifier: the exchange fails on its signature, no statement (the new password\'s verifier) reaches it', async () => {
    const fake = await startFakePostgres('scram-bogus');
    try {
      const target: ConnectorTarget = { type: 'postgres', host: fake.host, port: fake.port, adminUsername: 'vault_admin', adminPassword, options: { database: 'postgres' } };
      const next = { username: 'vt_account', password: password() };
      for (const call of [() => connector.rotate(target, next), () => connector.login(target, account), () => connector.verify(target)]) {
        const e = await failure(call());
        expect(e.code).toBe('TARGET_IDENTITY_UNVERIFIED');
        expect(e.message).toMatch(/SCRAM/);
      }
      // only SCRAM messages (no password in them) and Terminate: no statement
      expect(new Set(fake.messageTypes().filter((t) => t !== 'X'))).toEqual(new Set(['p']));
      const bytes = fake.received().toString('latin1');
      for (const secret of [adminPassword, account.password, next.password]) expect(bytes).not.toContain(secret);
      expect(bytes).not.toContain('SCRAM-SHA-256$');
    } finally {
      await fake.stop();
    }
  });

  it('over TLS, a server offering SCRAM without channel binding is refused before any SASL response', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vault-fake-pg-'));
    const cert = await makeServerCertificate(dir);
    const fake = await startFakePostgres('sasl-no-plus', { tls: { key: readFileSync(cert.keyFile, 'utf8'), cert: readFileSync(cert.certFile, 'utf8') } });
    try {
      const target: ConnectorTarget = { type: 'postgres', host: fake.host, port: fake.port, adminUsername: 'vault_admin', adminPassword, options: { tls: true, tlsCa: cert.caPem } };
      const e = await failure(connector.verify(target));
      expect(e.code).toBe('TARGET_IDENTITY_UNVERIFIED');
      expect(e.message).toMatch(/channel binding/);
      expect(fake.startups()).toBe(1);
      expect(fake.messageTypes().filter((t) => t !== 'X')).toEqual([]);
    } finally {
      await fake.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the verifier the vault would send is never the password itself (sanity of the fake check)', () => {
    expect(scramSha256Verifier(account.password)).toMatch(/^SCRAM-SHA-256\$4096:/);
  });
});

describe.each([15, 18] as const)('PostgreSQL %s over TLS: verified certificate, pin, channel binding', (version) => {
  let pg: PgHandle;
  let plain: PgHandle;
  let admin: PgAdmin;
  let target: ConnectorTarget;
  const connector = new ConnectorRegistry().get('postgres');

  beforeAll(async () => {
    pg = await startScramPostgres({ version, tls: true });
    admin = await pg.leastPrivilegeAdmin();
    target = {
      type: 'postgres', host: pg.host, port: pg.port, adminUsername: admin.username, adminPassword: admin.password,
      options: { database: pg.database, tls: true, tlsCa: pg.tls!.caPem },
    };
  }, 60_000);
  afterAll(async () => {
    await pg?.stop();
    await plain?.stop();
  });

  it('with the right CA: verify reports PG_TLS, and a login with channel binding succeeds', async () => {
    const res = await connector.verify(target);
    const tls = res.capabilities.find((c) => c.code === 'PG_TLS');
    expect(tls).toMatchObject({ ok: true });
    expect(tls!.message).toMatch(/TLSv1\.[23]/);
    const account = name();
    const pw = password();
    await connector.createEphemeral(target, { username: account, password: pw }, {});
    await connector.login(target, { username: account, password: pw }); // SCRAM-SHA-256-PLUS is required over TLS
    await connector.revokeEphemeral(target, account);
  });

  it('with the right pin: works; with a wrong pin: TARGET_IDENTITY_UNVERIFIED', async () => {
    await connector.verify({ ...target, options: { ...target.options, tlsCertSha256: pg.tls!.certSha256 } });
    const wrong = pg.tls!.certSha256.replace(/^../, pg.tls!.certSha256.startsWith('AA') ? 'BB' : 'AA');
    const e = await failure(connector.verify({ ...target, options: { ...target.options, tlsCertSha256: wrong } }));
    expect(e.code).toBe('TARGET_IDENTITY_UNVERIFIED');
    expect(e.message).toMatch(/pinned/);
  });

  it('with a wrong CA, or a host name the certificate does not name: TARGET_IDENTITY_UNVERIFIED', async () => {
    const other = await makeTestCa(join(pg.dir, 'other-ca'), 'other');
    const e = await failure(connector.verify({ ...target, options: { ...target.options, tlsCa: other.caPem } }));
    expect(e.code).toBe('TARGET_IDENTITY_UNVERIFIED');
    const byName = await failure(connector.verify({ ...target, host: 'localhost' }));
    expect(byName.code).toBe('TARGET_IDENTITY_UNVERIFIED');
  });

  it('a server without TLS, when the target requires it: TARGET_IDENTITY_UNVERIFIED', async () => {
    plain = await startScramPostgres({ version });
    const e = await failure(connector.verify({ ...target, port: plain.port, adminUsername: plain.adminUsername, adminPassword: plain.adminPassword }));
    expect(e.code).toBe('TARGET_IDENTITY_UNVERIFIED');
    expect(e.message).toMatch(/does not offer TLS/);
  }, 30_000);
});

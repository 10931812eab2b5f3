import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client as PgClient } from 'pg';
import { Connector, ConnectorTarget } from '../../src/connectors/connector.interface';
import { ConnectorRegistry } from '../../src/connectors/connector.registry';
import { scramSha256Verifier } from '../../src/connectors/postgres/scram';
import { PasswordGenerator } from '../../src/crypto/password-generator';
import { FakeAuthMode, startFakePostgres } from '../support/targets/fake-postgres';
import { makeServerCertificate, makeTestCa, PgAdmin, PgHandle, startScramPostgres } from '../support/targets/postgres';
import { openPgSession } from '../support/targets/sessions';
import { failure } from '../support/connector-failure';

/**
 * Target safety on PostgreSQL (issue 11), against real clusters — PostgreSQL 15 (Debian) and 18 (embedded) — with the
 * least-privilege administrator the README asks for (LOGIN CREATEROLE + pg_signal_backend, not a superuser), plus
 * impostor servers that ask for the password the unsafe ways, and a TLS cluster.
 */

const gen = new PasswordGenerator();
const password = () => gen.generate('postgres', { length: 24, classes: ['lower', 'upper', 'digit', 'symbol'] });
const name = (prefix = 'vt') => `${prefix}_${randomBytes(4).toString('hex')}`;
const q = (id: string) => `"${id.replace(/"/g, '""')}"`;


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
    // TLS, verified against the cluster's CA: the default for PostgreSQL targets (the tests' own clients use plain TCP)
    pg = await startScramPostgres({ version, tls: true });
    expect(pg.version).toBe(version);
    admin = await pg.leastPrivilegeAdmin();
    target = { type: 'postgres', host: pg.host, port: pg.port, adminUsername: admin.username, adminPassword: admin.password, options: { database: pg.database, tlsCa: pg.tls!.caPem } };
    connector = new ConnectorRegistry().get('postgres');
  }, 60_000);
  afterAll(async () => {
    for (const c of opened) await c.end().catch(() => undefined);
    await pg?.stop();
  });

  it('the administrator is not a superuser: CREATEROLE, pg_signal_backend and pg_read_all_stats only', async () => {
    const { rows } = await pg.query<{ rolsuper: boolean; rolcreaterole: boolean; signal: boolean }>(
      "SELECT rolsuper, rolcreaterole, pg_has_role(rolname, 'pg_signal_backend', 'MEMBER') AS signal FROM pg_roles WHERE rolname = $1",
      [admin.username],
    );
    expect(rows).toEqual([{ rolsuper: false, rolcreaterole: true, signal: true }]);
  });

  it('verify reports every capability; a bare login role gets every missing one at once, each saying what to grant', async () => {
    const res = await connector.verify(target);
    const codes = Object.fromEntries(res.capabilities.map((c) => [c.code, c.ok]));
    expect(codes).toMatchObject({ PG_CREATEROLE: true, PG_SIGNAL_BACKEND: true, PG_READ_ALL_STATS: true, PG_TLS: true });
    if (version >= 16) expect(res.capabilities.find((c) => c.code === 'PG_ADMIN_OPTION')?.message).toContain(`TO "${admin.username}" WITH ADMIN OPTION`);
    else expect('PG_ADMIN_OPTION' in codes).toBe(false);

    const bare = name('vt_bare');
    const pw = password();
    await pg.query(`CREATE ROLE ${q(bare)} LOGIN PASSWORD '${pw}'`);
    const weak = await connector.verify({ ...target, adminUsername: bare, adminPassword: pw });
    const missing = weak.capabilities.filter((c) => !c.ok);
    expect(missing.map((c) => c.code).sort()).toEqual(['PG_CREATEROLE', 'PG_READ_ALL_STATS', 'PG_SIGNAL_BACKEND']);
    expect(missing.find((c) => c.code === 'PG_READ_ALL_STATS')!.message).toContain(`GRANT pg_read_all_stats TO ${q(bare)}`);
    expect(missing.find((c) => c.code === 'PG_CREATEROLE')!.message).toContain(`ALTER ROLE ${q(bare)} CREATEROLE`);
    expect(missing.find((c) => c.code === 'PG_SIGNAL_BACKEND')!.message).toContain(`GRANT pg_signal_backend TO ${q(bare)}`);
  });

  it('rotates an existing account (16+: with ADMIN OPTION on it; without, the error says what to grant)', async () => {
    const account = name();
    await pg.createRole(account, password()); // 16+: granted to the admin WITH ADMIN OPTION by the handle
    const pw = password();
    await connector.updatePassword(target, { username: account, password: pw });
    await connector.login(target, { username: account, password: pw });

    if (version >= 16) {
      const unmanaged = name();
      await pg.query(`CREATE ROLE ${q(unmanaged)} LOGIN`);
      const secret = password();
      const e = await failure(connector.updatePassword(target, { username: unmanaged, password: secret }));
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
      await pg.query('CREATE TABLE IF NOT EXISTS vt_admin_table (x int)');
      await pg.query(`ALTER TABLE vt_admin_table OWNER TO ${q(admin.username)}`);
      await pg.query(`GRANT SELECT, INSERT, TRIGGER ON vt_admin_table TO ${q(grp)}`);
      const inDb = await open(pg.adminUsername, pg.adminPassword, db);
      await pg.query(`REVOKE CONNECT ON DATABASE ${q(db)} FROM PUBLIC`); // else the policy's database restricts nothing (refused)
      await pg.query(`GRANT CONNECT ON DATABASE ${q(db)} TO ${q(admin.username)} WITH GRANT OPTION`);
      await connector.newUser(target, { username: vendor, password: pw, access: { grantRoles: [grp], database: db } });
      // granted after the claim (on 15 the allow-list refuses a role with CREATE on a schema: SET ROLE reaches it)
      await pg.query(`GRANT CREATE ON SCHEMA public TO ${q(grp)}`);
      await inDb.query(`GRANT CREATE ON SCHEMA public TO ${q(grp)}`);

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

      await connector.deleteUser(target, { username: vendor });

      expect(await pg.roleExists(vendor)).toBe(false);
      const left = await pg.query("SELECT proname FROM pg_proc WHERE proname IN ('vt_backdoor', 'vt_trigger_fn') UNION ALL SELECT tgname FROM pg_trigger WHERE tgname = 'vt_trap' UNION ALL SELECT relname FROM pg_class WHERE relname = 'vt_vendor_table'");
      expect(left.rows).toEqual([]);
      expect((await inDb.query("SELECT relname FROM pg_class WHERE relname = 'vt_other_db_table'")).rows).toEqual([]);
      // nothing of the vendor's runs as the admin: the function is gone, the admin's table takes inserts again
      await expect(asAdmin.query('SELECT public.vt_backdoor()')).rejects.toThrow(/does not exist/);
      await asAdmin.query('INSERT INTO public.vt_admin_table VALUES (2)');
      // the admin's table itself stays, and the admin is not left a member of the dropped role
      expect((await pg.query<{ owner: string }>("SELECT pg_get_userbyid(relowner) AS owner FROM pg_class WHERE relname = 'vt_admin_table'")).rows).toEqual([{ owner: admin.username }]);
      await connector.deleteUser(target, { username: vendor }); // twice is fine
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
      await connector.terminateSessions(target, { username: repl });
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
      const e = await failure(connector.terminateSessions(target, { username: sup }));
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
    await connector.newUser(target, { username: vendor, password: pw, access: {} }); // PUBLIC holds CONNECT on pg.database here
    const s = await openPgSession(pg.host, pg.port, vendor, pw, pg.database);
    await connector.deleteUser(target, { username: vendor });
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
    await connector.newUser(target, { username: vendor, password: pw, access: {} });
    await pg.query('CREATE TABLE IF NOT EXISTS vt_third_party (x int)');
    await pg.query(`GRANT SELECT ON vt_third_party TO ${q(vendor)}`); // granted by the table's owner, not the admin
    const s = await openPgSession(pg.host, pg.port, vendor, pw, pg.database);
    try {
      const e = await failure(connector.deleteUser(target, { username: vendor }));
      expect(e.code).toBe('TARGET_ERROR');
      expect(e.message).toMatch(/granted by other roles/);
      expect(e.message).toContain('vt_third_party');
      expect(await s.alive()).toBe(false);
      expect((await failure(connector.login(target, { username: vendor, password: pw }))).code).toBe('TARGET_AUTH_FAILED');
      const { rows } = await pg.query<{ usage: boolean }>("SELECT pg_has_role($1, $2, 'USAGE') AS usage", [admin.username, vendor]);
      expect(rows[0].usage).toBe(false);
      // once the grantor takes its grant back, revoking completes
      await pg.query(`REVOKE SELECT ON vt_third_party FROM ${q(vendor)}`);
      await connector.deleteUser(target, { username: vendor });
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
      await pg.query('REVOKE CONNECT ON DATABASE vt_granted FROM PUBLIC');
      await pg.query('CREATE DATABASE vt_nogrant');
      await pg.query('CREATE DATABASE vt_public'); // PUBLIC keeps CONNECT (the default)
      await pg.query(`GRANT CONNECT ON DATABASE vt_granted TO ${q(admin.username)} WITH GRANT OPTION`);
      await pg.query(`GRANT CONNECT ON DATABASE vt_public TO ${q(admin.username)} WITH GRANT OPTION`);
    });

    it('allows a plain NOLOGIN group role and a database the admin can grant CONNECT on', async () => {
      expect(await connector.inspectAccess(target, { roles: [grp], databases: ['vt_granted'] })).toEqual([]);
    });

    it('refuses every problem at once, one readable line each', async () => {
      const lines = await connector.inspectAccess(target, {
        roles: [roles.owner, roles.owner_member, roles.login, roles.app_admin, roles.super_member, roles.bypass, roles.in_admin, roles.admin_holds, roles.granter, roles.files, admin.username, 'pg_read_all_data', 'vt_missing_role'],
        databases: ['template1', 'vt_noconn', 'vt_missing_db', 'vt_nogrant', 'vt_public'],
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
        'database vt_public: PUBLIC holds CONNECT on it, so allowing it restricts nothing (REVOKE CONNECT ON DATABASE "vt_public" FROM PUBLIC)',
      ];
      for (const line of expected) expect(lines.filter((l) => l.startsWith(line))).toHaveLength(1);
      if (version >= 16) expect(lines).toContain(`role pg_read_all_data: the administrator cannot grant it (PostgreSQL 16+: GRANT "pg_read_all_data" TO "${admin.username}" WITH ADMIN OPTION, INHERIT FALSE, SET FALSE)`);
    });

    it('newUser checks the allow-list again and creates nothing when a role is refused', async () => {
      const vendor = name();
      const e = await failure(connector.newUser(target, { username: vendor, password: password(), access: { grantRoles: [grp, roles.app_admin] } }));
      expect(e.code).toBe('TARGET_INVALID_NAME');
      expect(e.message).toContain(`member of a role with CREATEROLE (${roles.ops_admin})`);
      expect(await pg.roleExists(vendor)).toBe(false);
    });

    it(`grants a role to a one-time account ${version >= 16 ? 'WITH INHERIT TRUE, SET FALSE: its privileges, but no SET ROLE to create objects owned by it' : '(PostgreSQL 15 has no SET option: SET ROLE stays possible)'}`, async () => {
      await pg.query('CREATE TABLE IF NOT EXISTS vt_group_data (x int)');
      await pg.query(`GRANT SELECT ON vt_group_data TO ${q(grp)}`);
      const vendor = name();
      const pw = password();
      await connector.newUser(target, { username: vendor, password: pw, access: { grantRoles: [grp] } });
      try {
        const v = await open(vendor, pw);
        await v.query('SELECT * FROM public.vt_group_data'); // inherited
        if (version >= 16) await expect(v.query(`SET ROLE ${q(grp)}`)).rejects.toThrow(/permission denied/);
        else await v.query(`SET ROLE ${q(grp)}`);
        await v.end();
      } finally {
        await connector.deleteUser(target, { username: vendor });
      }
    });
  });

  describe('what a group role could hand out or leave behind (grant options, default privileges, 15: CREATE)', () => {
    /** A NOLOGIN group role the admin may grant (16+: ADMIN OPTION). */
    const group = async (prefix: string) => {
      const r = name(prefix);
      await pg.query(`CREATE ROLE ${q(r)} NOLOGIN`);
      if (version >= 16) await pg.query(`GRANT ${q(r)} TO ${q(admin.username)} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE`);
      return r;
    };
    const policyDb = name('vt_pdb');
    beforeAll(async () => {
      await pg.query(`CREATE DATABASE ${q(policyDb)}`);
      await pg.query(`REVOKE CONNECT ON DATABASE ${q(policyDb)} FROM PUBLIC`);
      await pg.query(`GRANT CONNECT ON DATABASE ${q(policyDb)} TO ${q(admin.username)} WITH GRANT OPTION`);
      await pg.query('CREATE TABLE IF NOT EXISTS vt_secrets (x text)');
      await pg.query("INSERT INTO vt_secrets VALUES ('s3cr3t')");
      await pg.query(`CREATE ROLE vt_bystander LOGIN PASSWORD 'bystander-pw-1'`).catch(() => undefined);
    });

    it('refuses a role holding a grant option — itself or through a role it belongs to, on a table, a column, a schema, in the admin\'s database or the policy\'s — and the claim creates nothing', async () => {
      const onTable = await group('vt_go_tbl');
      await pg.query(`GRANT SELECT ON vt_secrets TO ${q(onTable)} WITH GRANT OPTION`);
      const member = await group('vt_go_member');
      await pg.query(`GRANT ${q(onTable)} TO ${q(member)}`);
      const onColumnElsewhere = await group('vt_go_col');
      const inPolicyDb = await open(pg.adminUsername, pg.adminPassword, policyDb);
      await inPolicyDb.query('CREATE TABLE vt_elsewhere (a int, b int)');
      await inPolicyDb.query(`GRANT SELECT (b) ON vt_elsewhere TO ${q(onColumnElsewhere)} WITH GRANT OPTION`);
      const onSchema = await group('vt_go_nsp');
      await pg.query(`GRANT USAGE ON SCHEMA public TO ${q(onSchema)} WITH GRANT OPTION`);
      const clean = await group('vt_go_clean');
      await pg.query(`GRANT SELECT ON vt_secrets TO ${q(clean)}`); // no grant option: fine

      const lines = await connector.inspectAccess(target, { roles: [onTable, member, onColumnElsewhere, onSchema, clean], databases: [policyDb] });
      expect(lines.filter((l) => l.startsWith(`role ${onTable}: holds grant options in database postgres`) && l.includes('relation public.vt_secrets'))).toHaveLength(1);
      expect(lines.filter((l) => l.startsWith(`role ${member}: member of a role holding grant options in database postgres (${onTable})`))).toHaveLength(1);
      expect(lines.filter((l) => l.startsWith(`role ${onColumnElsewhere}: holds grant options in database ${policyDb}`) && l.includes('column public.vt_elsewhere.b'))).toHaveLength(1);
      expect(lines.filter((l) => l.startsWith(`role ${onSchema}: holds grant options in database postgres`) && l.includes('schema public'))).toHaveLength(1);
      expect(lines.filter((l) => l.startsWith(`role ${clean}:`))).toEqual([]);
      // without the policy's database, the column grant option there is not looked at; with it, it is
      expect((await connector.inspectAccess(target, { roles: [onColumnElsewhere] })).filter((l) => l.includes('grant options'))).toEqual([]);

      // the claim checks again: the repro's role is refused, so no vendor ever gets to GRANT … TO bystander / PUBLIC
      const vendor = name('vt_vendor');
      const e = await failure(connector.newUser(target, { username: vendor, password: password(), access: { grantRoles: [onTable] } }));
      expect(e.code).toBe('TARGET_INVALID_NAME');
      expect(e.message).toContain('grant options');
      expect(await pg.roleExists(vendor)).toBe(false);
    });

    it('revoke undoes the default privileges a vendor gave through its group role (ALTER DEFAULT PRIVILEGES FOR ROLE grp … TO PUBLIC / a bystander), in every database it reached', async () => {
      const grp = await group('vt_dp');
      const schema = name('vt_app');
      await pg.query(`CREATE SCHEMA ${q(schema)}`);
      await pg.query(`GRANT USAGE ON SCHEMA ${q(schema)} TO ${q(grp)}`);
      // (a role with default privileges already is refused at claim: pg_default_acl entries count as objects it owns)
      await pg.query(`ALTER DEFAULT PRIVILEGES FOR ROLE ${q(grp)} IN SCHEMA ${q(schema)} GRANT SELECT ON TABLES TO vt_bystander`);
      expect((await connector.inspectAccess(target, { roles: [grp] }))[0]).toMatch(/owns 1 object/);
      await pg.query(`ALTER DEFAULT PRIVILEGES FOR ROLE ${q(grp)} IN SCHEMA ${q(schema)} REVOKE SELECT ON TABLES FROM vt_bystander`);
      const snapshot = async (c: PgClient) => (await c.query<{ e: string }>(
        `SELECT defaclnamespace::regnamespace::text || ' ' || defaclobjtype::text || ' ' || defaclacl::text AS e FROM pg_default_acl WHERE defaclrole = $1::regrole ORDER BY 1`, [grp],
      )).rows.map((r) => r.e);
      const template1 = await open(pg.adminUsername, pg.adminPassword, 'template1');
      const asSuper = await open(pg.adminUsername, pg.adminPassword);
      const before = { postgres: await snapshot(asSuper), template1: await snapshot(template1), policyDb: await snapshot(await open(pg.adminUsername, pg.adminPassword, policyDb)) };
      expect(before).toEqual({ postgres: [], template1: [], policyDb: [] });

      const vendor = name('vt_vendor');
      const pw = password();
      await connector.newUser(target, { username: vendor, password: pw, access: { grantRoles: [grp], database: policyDb } });
      try {
        const attacks = [
          `ALTER DEFAULT PRIVILEGES FOR ROLE ${q(grp)} GRANT ALL ON TABLES TO PUBLIC`,
          `ALTER DEFAULT PRIVILEGES FOR ROLE ${q(grp)} GRANT ALL ON SEQUENCES TO vt_bystander WITH GRANT OPTION`,
          `ALTER DEFAULT PRIVILEGES FOR ROLE ${q(grp)} IN SCHEMA ${q(schema)} GRANT ALL ON FUNCTIONS TO vt_bystander`,
          `ALTER DEFAULT PRIVILEGES FOR ROLE ${q(grp)} GRANT USAGE ON TYPES TO vt_bystander`,
        ];
        const v = await open(vendor, pw);
        for (const sql of attacks) await v.query(sql);
        // the recorded default privileges sit where the vendor cannot change them
        await expect(v.query(`COMMENT ON ROLE ${q(vendor)} IS 'nothing to restore'`)).rejects.toThrow(/permission denied|must have/);
        // also where PUBLIC lets it connect (template1: what new databases start from) and in the policy's database
        const vt1 = await open(vendor, pw, 'template1');
        await vt1.query(`ALTER DEFAULT PRIVILEGES FOR ROLE ${q(grp)} GRANT ALL ON TABLES TO PUBLIC`);
        const vdb = await open(vendor, pw, policyDb);
        await vdb.query(`ALTER DEFAULT PRIVILEGES FOR ROLE ${q(grp)} GRANT ALL ON FUNCTIONS TO vt_bystander`);
        expect(await snapshot(asSuper)).not.toEqual(before.postgres);
        expect(await snapshot(template1)).not.toEqual(before.template1);
      } finally {
        await connector.deleteUser(target, { username: vendor });
      }
      expect(await pg.roleExists(vendor)).toBe(false);
      expect(await snapshot(asSuper)).toEqual(before.postgres);
      expect(await snapshot(template1)).toEqual(before.template1);
      expect(await snapshot(await open(pg.adminUsername, pg.adminPassword, policyDb))).toEqual(before.policyDb);
      // the admin kept nothing of the group role: no privileges of it (16+: still ADMIN OPTION, as set up)
      const { rows } = await pg.query<{ usage: boolean }>("SELECT pg_has_role($1, $2, 'USAGE') AS usage", [admin.username, grp]);
      expect(rows[0].usage).toBe(false);
      if (version >= 16) expect((await pg.query<{ a: boolean }>("SELECT pg_has_role($1, $2, 'MEMBER WITH ADMIN OPTION') AS a", [admin.username, grp])).rows[0].a).toBe(true);
      // what the group role creates from now on is not handed to PUBLIC or the bystander
      await pg.query(`GRANT CREATE ON SCHEMA ${q(schema)} TO ${q(grp)}`);
      await pg.query(`SET ROLE ${q(grp)}`);
      try {
        await pg.query(`CREATE TABLE ${q(schema)}.vt_later (x int)`);
      } finally {
        await pg.query('RESET ROLE');
      }
      const acl = (await pg.query<{ acl: string | null }>(`SELECT relacl::text AS acl FROM pg_class WHERE oid = '${q(schema)}.vt_later'::regclass`)).rows[0].acl ?? '';
      expect(acl).not.toMatch(/(^|[{,])=/); // nothing for PUBLIC
      expect(acl).not.toContain('vt_bystander');
      await pg.query(`DROP TABLE ${q(schema)}.vt_later`);
      await pg.query(`REVOKE CREATE ON SCHEMA ${q(schema)} FROM ${q(grp)}`);
      // and the group role is as grantable as before: nothing of the vendor's is left that it "owns"
      expect(await connector.inspectAccess(target, { roles: [grp], databases: [policyDb] })).toEqual([]);
    }, 60_000);

    it(`PostgreSQL ${version}: a role with CREATE on a schema or a database ${version >= 16 ? 'is allowed (SET FALSE: no SET ROLE to it)' : 'is refused (every member can SET ROLE to it)'}`, async () => {
      const creator = await group('vt_creator');
      await pg.query(`GRANT CREATE ON SCHEMA public TO ${q(creator)}`);
      const dbCreator = await group('vt_dbcreator');
      await pg.query(`GRANT CREATE ON DATABASE ${q(policyDb)} TO ${q(dbCreator)}`);
      const member = await group('vt_creator_member');
      await pg.query(`GRANT ${q(creator)} TO ${q(member)}`);
      const lines = await connector.inspectAccess(target, { roles: [creator, dbCreator, member] });
      if (version >= 16) {
        expect(lines).toEqual([]);
      } else {
        expect(lines.filter((l) => l.startsWith(`role ${creator}: has CREATE on schema public`))).toHaveLength(1);
        expect(lines.filter((l) => l.startsWith(`role ${dbCreator}: has CREATE on database ${policyDb}`))).toHaveLength(1);
        expect(lines.filter((l) => l.startsWith(`role ${member}: member of a role with CREATE on schema public (${creator}`))).toHaveLength(1);
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

  let certDir: string;
  let cert: { caPem: string; key: string; cert: string };
  beforeAll(async () => {
    certDir = mkdtempSync(join(tmpdir(), 'vault-fake-pg-'));
    const made = await makeServerCertificate(certDir);
    cert = { caPem: made.caPem, key: readFileSync(made.keyFile, 'utf8'), cert: readFileSync(made.certFile, 'utf8') };
  });
  afterAll(() => rmSync(certDir, { recursive: true, force: true }));

  // over plain TCP (a target with tls: false) and over TLS whose certificate verifies (the impostor holds it): SCRAM-only either way
  describe.each([
    ...(['cleartext', 'md5', 'ok'] as FakeAuthMode[]).map((mode) => [mode, 'plain TCP (tls: false)'] as const),
    ...(['cleartext', 'md5', 'ok'] as FakeAuthMode[]).map((mode) => [mode, 'TLS'] as const),
  ])('a server answering %s over %s', (mode, transport) => {
    it('every call (verify, updatePassword, login, deleteUser, …) fails with TARGET_IDENTITY_UNVERIFIED; no password message reaches it', async () => {
      const tls = transport === 'TLS';
      const fake = await startFakePostgres(mode, tls ? { tls: { key: cert.key, cert: cert.cert } } : {});
      try {
        const target: ConnectorTarget = {
          type: 'postgres', host: fake.host, port: fake.port, adminUsername: 'vault_admin', adminPassword,
          options: tls ? { database: 'postgres', tlsCa: cert.caPem } : { database: 'postgres', tls: false },
        };
        // one after the other: a rejection is never left unobserved while an earlier call is awaited
        const calls = [
          () => connector.verify(target),
          () => connector.updatePassword(target, account),
          () => connector.login(target, account),
          () => connector.deleteUser(target, { username: 'vt_vendor' }),
          () => connector.terminateSessions(target, { username: 'vt_vendor' }),
          () => connector.inspectAccess(target, { roles: ['r'] }),
          () => connector.isAdmin(target, 'vt_vendor'),
          () => connector.newUser(target, { username: 'vt_vendor', password: password(), access: {} }),
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
      const target: ConnectorTarget = { type: 'postgres', host: fake.host, port: fake.port, adminUsername: 'vault_admin', adminPassword, options: { database: 'postgres', tls: false } };
      const next = { username: 'vt_account', password: password() };
      for (const call of [() => connector.updatePassword(target, next), () => connector.login(target, account), () => connector.verify(target)]) {
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

  it('a SCRAM challenge asking for fewer than 4096 iterations is refused before the proof is sent', async () => {
    const fake = await startFakePostgres('scram-low-iterations');
    try {
      const target: ConnectorTarget = { type: 'postgres', host: fake.host, port: fake.port, adminUsername: 'vault_admin', adminPassword, options: { database: 'postgres', tls: false } };
      const calls = [() => connector.verify(target), () => connector.login(target, account), () => connector.updatePassword(target, { username: 'vt_account', password: password() })];
      for (const call of calls) {
        const e = await failure(call());
        expect(e.code).toBe('TARGET_IDENTITY_UNVERIFIED');
        expect(e.message).toMatch(/1024 iterations \(at least 4096/);
      }
      // one SASLInitialResponse per connection (no password in it), never the SASLResponse carrying the proof, no statement
      expect(fake.startups()).toBe(calls.length);
      expect(fake.messageTypes().filter((t) => t !== 'X')).toEqual(calls.map(() => 'p'));
      expect(fake.received().toString('latin1')).not.toMatch(/p=/);
    } finally {
      await fake.stop();
    }
  });

  it('TLS is the default: a target without a tls option, at a server without TLS, gets nothing (not even a startup message)', async () => {
    const fake = await startFakePostgres('scram-bogus');
    try {
      const target: ConnectorTarget = { type: 'postgres', host: fake.host, port: fake.port, adminUsername: 'vault_admin', adminPassword, options: { database: 'postgres' } };
      for (const call of [() => connector.verify(target), () => connector.login(target, account)]) {
        const e = await failure(call());
        expect(e.code).toBe('TARGET_IDENTITY_UNVERIFIED');
        expect(e.message).toMatch(/does not offer TLS/);
      }
      expect(fake.startups()).toBe(0);
      expect(fake.received().length).toBe(0);
    } finally {
      await fake.stop();
    }
  });

  it('over TLS, a server offering SCRAM without channel binding is refused before any SASL response', async () => {
    const fake = await startFakePostgres('sasl-no-plus', { tls: { key: cert.key, cert: cert.cert } });
    try {
      const target: ConnectorTarget = { type: 'postgres', host: fake.host, port: fake.port, adminUsername: 'vault_admin', adminPassword, options: { tlsCa: cert.caPem } };
      const e = await failure(connector.verify(target));
      expect(e.code).toBe('TARGET_IDENTITY_UNVERIFIED');
      expect(e.message).toMatch(/channel binding/);
      expect(fake.startups()).toBe(1);
      expect(fake.messageTypes().filter((t) => t !== 'X')).toEqual([]);
    } finally {
      await fake.stop();
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
    await connector.newUser(target, { username: account, password: pw, access: {} });
    await connector.login(target, { username: account, password: pw }); // SCRAM-SHA-256-PLUS is required over TLS
    await connector.deleteUser(target, { username: account });
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

  it('a server without TLS, when the target requires it (tls: true, or no tls option: the default): TARGET_IDENTITY_UNVERIFIED', async () => {
    plain = await startScramPostgres({ version });
    const e = await failure(connector.verify({ ...target, port: plain.port, adminUsername: plain.adminUsername, adminPassword: plain.adminPassword }));
    expect(e.code).toBe('TARGET_IDENTITY_UNVERIFIED');
    expect(e.message).toMatch(/does not offer TLS/);
    const byDefault = await failure(connector.verify({ ...target, port: plain.port, adminUsername: plain.adminUsername, adminPassword: plain.adminPassword, options: { database: plain.database } }));
    expect(byDefault.code).toBe('TARGET_IDENTITY_UNVERIFIED');
  }, 30_000);

  it('tls: false (explicitly) works over plain TCP, but verify reports PG_TLS as missing: a listener could take over rotated accounts', async () => {
    const res = await connector.verify({ ...target, options: { database: pg.database, tls: false } });
    const tls = res.capabilities.find((c) => c.code === 'PG_TLS');
    expect(tls).toMatchObject({ ok: false });
    expect(tls!.message).toMatch(/listener on the network .* can take over every account the vault rotates/);
    expect(res.capabilities.filter((c) => !c.ok).map((c) => c.code)).toEqual(['PG_TLS']);
  });
});

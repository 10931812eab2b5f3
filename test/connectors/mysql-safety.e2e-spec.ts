import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createConnection } from 'mysql2/promise';
import { Connector, ConnectorTarget } from '../../src/connectors/connector.interface';
import { ConnectorRegistry } from '../../src/connectors/connector.registry';
import { guardedAuthPlugins } from '../../src/connectors/mysql/mysql-identity';
import { MysqlConnector } from '../../src/connectors/mysql/mysql.connector';
import { PasswordGenerator } from '../../src/crypto/password-generator';
import { freePort } from '../support/process';
import { startFakeMysql, SwitchPlugin } from '../support/targets/fake-mysql';
import { connectTlsMariaDb, TEST_DATABASES, TlsMariaHandle } from '../support/targets/mariadb-tls';
import { run } from '../support/targets/run';
import { LiveSession, openMysqlSession } from '../support/targets/sessions';
import { failure } from '../support/connector-failure';

/**
 * Target safety of the MySQL connector (issue 11), against the TLS MariaDB the jest globalSetup starts and impostor
 * servers (test/support/targets/fake-mysql.ts):
 * - identity (INVARIANT 19): credentials only over TLS with a verified certificate (CA, host, pin), nothing to a
 *   server without TLS, no password-revealing auth switch on an unverified connection;
 * - least privilege: verify reports every missing capability at once; ending sessions works with the least
 *   privileged admin and fails loudly without PROCESS / CONNECTION ADMIN;
 * - allow-list (INVARIANT 20): inspectAccess and newUser refuse global, system-schema, unlisted and
 *   non-existent grants.
 */

const gen = new PasswordGenerator();
const password = () => gen.generate('mysql', { length: 24, classes: ['lower', 'upper', 'digit', 'symbol'] });
const name = () => `vt_${randomBytes(4).toString('hex')}`;


describe('MySQL connector: target safety (TLS MariaDB, least-privilege admin)', () => {
  let my: TlsMariaHandle;
  let target: ConnectorTarget;
  const connector: Connector = new ConnectorRegistry().get('mysql');
  const handles: TlsMariaHandle[] = [];
  const sessions: LiveSession[] = [];

  const targetOf = (h: TlsMariaHandle): ConnectorTarget => ({
    type: 'mysql',
    host: h.host,
    port: h.port,
    adminUsername: h.adminUsername,
    adminPassword: h.adminPassword,
    options: { tlsCa: h.tlsCa },
  });
  const otherAdmin = async (globalPrivileges: string[]) => {
    const h = await connectTlsMariaDb({ globalPrivileges });
    handles.push(h);
    return h;
  };

  beforeAll(async () => {
    my = await connectTlsMariaDb();
    handles.push(my);
    target = targetOf(my);
  }, 60_000);
  afterEach(async () => {
    for (const s of sessions.splice(0)) await s.close();
  });
  afterAll(async () => {
    for (const h of handles) await h.stop();
  });

  describe('server identity (INVARIANT 19)', () => {
    it('refuses a server that offers no TLS before anything is sent: the impostor receives no handshake response, no user, no password', async () => {
      const fake = await startFakeMysql();
      try {
        const impostor = { ...target, port: fake.port };
        const pw = password();
        for (const call of [() => connector.verify(impostor), () => connector.login(impostor, { username: 'vt_victim', password: pw })]) {
          const e = await failure(call());
          expect(e.code).toBe('TARGET_IDENTITY_UNVERIFIED');
          expect(e.message).toMatch(/offers no TLS/);
          expect(e.message).not.toContain(my.adminPassword);
          expect(e.message).not.toContain(pw);
        }
        expect(fake.packets()).toEqual([]);
        expect(fake.received().length).toBe(0);
      } finally {
        await fake.close();
      }
    });

    it('control: a plain mysql2 client hands the same impostor its handshake response (user name and password token)', async () => {
      const fake = await startFakeMysql();
      try {
        await createConnection({ host: fake.host, port: fake.port, user: 'vt_victim', password: 'x' }).then((c) => c.destroy(), () => undefined);
        expect(fake.received().includes(Buffer.from('vt_victim'))).toBe(true);
      } finally {
        await fake.close();
      }
    });

    it('refuses an impostor that would ask for mysql_clear_password: nothing is sent (it offers no TLS)', async () => {
      const fake = await startFakeMysql({ switchTo: 'mysql_clear_password' });
      try {
        const e = await failure(connector.verify({ ...target, port: fake.port }));
        expect(e.code).toBe('TARGET_IDENTITY_UNVERIFIED');
        expect(fake.received().length).toBe(0);
      } finally {
        await fake.close();
      }
    });

    it.each(['mysql_clear_password', 'sha256_password'] as SwitchPlugin[])(
      'the auth plugins refuse a switch to %s on a connection without verified TLS (and a client without them gives the impostor the password)',
      async (plugin) => {
        const pw = password();
        const guarded = await startFakeMysql({ switchTo: plugin });
        const open = await startFakeMysql({ switchTo: plugin });
        try {
          // the connector's auth plugins on a connection that is not TLS at all (what they guard against if TLS were ever off)
          const err = await createConnection({ host: guarded.host, port: guarded.port, user: 'vt_victim', password: pw, authPlugins: guardedAuthPlugins() as never }).then(
            (c) => {
              c.destroy();
              throw new Error('the guarded client should refuse the auth switch');
            },
            (e: Error) => e,
          );
          expect(err.message).toMatch(new RegExp(`asked for ${plugin} authentication.*not verified`));
          expect(err.message).not.toContain(pw);
          expect(guarded.answeredSwitch()).toBe(false);
          expect(guarded.recoveredPasswords()).toEqual([]);
          expect(guarded.received().includes(Buffer.from(pw))).toBe(false);

          // control: mysql2's own plugins (clear text when enabled; sha256_password encrypts to the impostor's RSA key)
          await createConnection({ host: open.host, port: open.port, user: 'vt_victim', password: pw, enableCleartextPlugin: true }).then((c) => c.destroy(), () => undefined);
          expect(open.recoveredPasswords()).toEqual([pw]);
        } finally {
          await guarded.close();
          await open.close();
        }
      },
    );

    it('verifies over TLS against the configured CA, and reports it', async () => {
      const res = await connector.verify(target);
      const tls = res.capabilities.find((c) => c.code === 'MYSQL_TLS');
      expect(tls).toMatchObject({ ok: true, message: expect.stringMatching(/TLSv1\.[23].*configured CA.*names 127\.0\.0\.1/) });
    });

    it('refuses a real TLS server whose certificate is signed by another CA, or unknown to the system CAs', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'vault-otherca-'));
      try {
        await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'k'), '-out', join(dir, 'ca.pem'), '-days', '1', '-subj', '/CN=other CA']);
        const otherCa = readFileSync(join(dir, 'ca.pem'), 'utf8');
        for (const options of [{ tlsCa: otherCa }, {}]) {
          const e = await failure(connector.verify({ ...target, options }));
          expect(e.code).toBe('TARGET_IDENTITY_UNVERIFIED');
          expect(e.message).toMatch(/certificate could not be verified.*no credential was sent/);
          expect(e.message).not.toContain(my.adminPassword);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('checks the certificate pin: a wrong pin is refused, the right one accepted', async () => {
      const wrong = my.tlsCertSha256.replace(/^../, my.tlsCertSha256.startsWith('00') ? '01' : '00');
      const e = await failure(connector.verify({ ...target, options: { tlsCa: my.tlsCa, tlsCertSha256: wrong } }));
      expect(e.code).toBe('TARGET_IDENTITY_UNVERIFIED');
      expect(e.message).toMatch(/not the pinned one.*no credential was sent/);
      const ok = await connector.verify({ ...target, options: { tlsCa: my.tlsCa, tlsCertSha256: my.tlsCertSha256 } });
      expect(ok.capabilities.find((c) => c.code === 'MYSQL_TLS')?.message).toMatch(/matches the pin/);
    });

    it('refuses a certificate that does not name the host connected to', async () => {
      // the certificate names IP 127.0.0.1 only
      const e = await failure(connector.verify({ ...target, host: 'localhost' }));
      expect(e.code).toBe('TARGET_IDENTITY_UNVERIFIED');
      expect(e.message).toMatch(/localhost/);
    });
  });

  describe('least-privilege administrator', () => {
    it('runs with CREATE USER, PROCESS, CONNECTION ADMIN on *.* and the allowed privileges WITH GRANT OPTION on the test databases only; verify finds them all', async () => {
      const [grants] = await my.query('SHOW GRANTS FOR CURRENT_USER()');
      const text = JSON.stringify(grants);
      expect(text).not.toMatch(/ALL PRIVILEGES/);
      expect(text).toMatch(/GRANT PROCESS, CREATE USER, CONNECTION ADMIN ON \*\.\*/);
      expect(text).toContain(`ON \`vt\\\\_%\`.* TO`); // the allowed privileges WITH GRANT OPTION on the test databases only
      const res = await connector.verify(target);
      expect(res.capabilities.map((c) => [c.code, c.ok])).toEqual([
        ['MYSQL_TLS', true],
        ['MYSQL_CREATE_USER', true],
        ['MYSQL_PROCESS', true],
        ['MYSQL_CONNECTION_ADMIN', true],
        ['MYSQL_GRANT_OPTION', true],
      ]);
      for (const pattern of TEST_DATABASES) expect(res.capabilities.find((c) => c.code === 'MYSQL_GRANT_OPTION')?.message).toContain(pattern);
    });

    it('reports every missing capability at once, each with what to grant', async () => {
      const bare = await otherAdmin([]);
      const res = await connector.verify(targetOf(bare));
      const byCode = Object.fromEntries(res.capabilities.map((c) => [c.code, c]));
      const who = `'${bare.adminUsername}'@'%'`;
      expect(byCode.MYSQL_CREATE_USER).toMatchObject({ ok: false, message: expect.stringContaining(`GRANT CREATE USER ON *.* TO ${who}`) });
      expect(byCode.MYSQL_PROCESS).toMatchObject({ ok: false, message: expect.stringContaining(`GRANT PROCESS ON *.* TO ${who}`) });
      expect(byCode.MYSQL_CONNECTION_ADMIN).toMatchObject({ ok: false, message: expect.stringContaining(`GRANT CONNECTION ADMIN ON *.* TO ${who}`) });
      expect(byCode.MYSQL_TLS.ok).toBe(true);
      expect(byCode.MYSQL_GRANT_OPTION.ok).toBe(true);
      expect(JSON.stringify(res)).not.toContain(bare.adminPassword);
    });

    it("ends a one-time account's session, and only its client sessions: the admin's and another account's stay", async () => {
      const account = name();
      const other = name();
      const pw = password();
      const pw2 = password();
      await connector.newUser(target, { username: account, password: pw, access: {} });
      await my.createUser(other, pw2);
      try {
        const victim = await openMysqlSession(my.host, my.port, account, pw);
        const bystander = await openMysqlSession(my.host, my.port, other, pw2);
        sessions.push(victim, bystander);
        expect(await victim.alive()).toBe(true);
        await connector.terminateSessions(target, { username: account });
        expect(await victim.alive()).toBe(false);
        expect(await bystander.alive()).toBe(true);
        const [adminRows] = await my.query('SELECT 1 AS one');
        expect(adminRows).toEqual([{ one: 1 }]); // the handle's own admin connection survived
      } finally {
        await connector.deleteUser(target, { username: account });
      }
      expect(await my.userExists(account)).toBe(false);
    });

    it('matches the account name exactly: ending `app`\'s sessions leaves `APP` (another account) alone, and the admin\'s name in upper case is not the admin', async () => {
      const lower = name();
      const upper = lower.toUpperCase();
      const [pw, pw2] = [password(), password()];
      await my.createUser(lower, pw);
      await my.query("CREATE USER ?@'%' IDENTIFIED BY ?", [upper, pw2]); // (the handle's helper takes lower-case names only)
      try {
        const mine = await openMysqlSession(my.host, my.port, lower, pw);
        const theirs = await openMysqlSession(my.host, my.port, upper, pw2);
        sessions.push(mine, theirs);
        await connector.terminateSessions(target, { username: lower });
        expect(await mine.alive()).toBe(false);
        expect(await theirs.alive()).toBe(true);
        // an account named like the admin in another case is another account: its (no) sessions end, the admin's stay
        await connector.terminateSessions(target, { username: my.adminUsername.toUpperCase() });
        expect(await my.query('SELECT 1 AS one').then(([r]) => r)).toEqual([{ one: 1 }]);
      } finally {
        await my.query("DROP USER IF EXISTS ?@'%'", [upper]);
      }
    });

    it('fails loudly, not silently, when the admin may not KILL (no CONNECTION ADMIN): the session stays and the error says what to grant', async () => {
      const weak = await otherAdmin(['CREATE USER', 'PROCESS']);
      const weakTarget = targetOf(weak);
      const account = name();
      const pw = password();
      await connector.newUser(weakTarget, { username: account, password: pw, access: {} });
      try {
        const session = await openMysqlSession(weak.host, weak.port, account, pw);
        sessions.push(session);
        const e = await failure(connector.terminateSessions(weakTarget, { username: account }));
        expect(e.code).toBe('TARGET_ERROR');
        expect(e.message).toContain(`GRANT CONNECTION ADMIN ON *.* TO '${weak.adminUsername}'@'%'`);
        expect(await session.alive()).toBe(true);
        // revoking cannot end the session either: it fails too rather than reporting a clean removal
        expect((await failure(connector.deleteUser(weakTarget, { username: account }))).message).toContain('CONNECTION ADMIN');
      } finally {
        await weak.dropUser(account);
      }
    });

    it('fails loudly when the admin cannot see the sessions at all (no PROCESS)', async () => {
      const blind = await otherAdmin(['CREATE USER', 'CONNECTION ADMIN']);
      const blindTarget = targetOf(blind);
      const account = name();
      const pw = password();
      await connector.newUser(blindTarget, { username: account, password: pw, access: {} });
      try {
        const session = await openMysqlSession(blind.host, blind.port, account, pw);
        sessions.push(session);
        const e = await failure(connector.terminateSessions(blindTarget, { username: account }));
        expect(e.message).toContain(`GRANT PROCESS ON *.* TO '${blind.adminUsername}'@'%'`);
        expect(await session.alive()).toBe(true);
      } finally {
        await blind.dropUser(account);
      }
    });

    it('isAdmin: the user part of CURRENT_USER() is the name asked about', async () => {
      const inner = new MysqlConnector();
      expect(await inner.isAdmin(target, my.adminUsername)).toBe(true);
      expect(await connector.isAdmin(target, 'vt_someone')).toBe(false);
    });
  });

  describe('allow-list of grants (INVARIANT 20)', () => {
    let table: string;
    beforeAll(async () => {
      table = `t_${randomBytes(3).toString('hex')}`;
      await my.query(`CREATE TABLE \`${my.database}\`.\`${table}\` (id INT PRIMARY KEY)`);
    });

    it('allows the listed privileges on an existing database or table', async () => {
      expect(
        await connector.inspectAccess(target, {
          grants: [
            { privileges: ['SELECT', 'insert', 'UPDATE', 'DELETE', 'LOCK TABLES'], on: `${my.database}.*` },
            { privileges: ['SELECT'], on: `${my.database}.${table}` },
          ],
        }),
      ).toEqual([]);
    });

    it('refuses what would outlive the account, one line per problem, all at once', async () => {
      const refusals = await connector.inspectAccess(target, {
        grants: [
          { privileges: ['SELECT', 'INSERT'], on: '*.*' }, // the vendor's policy from the issue
          { privileges: ['SELECT'], on: 'mysql.user' },
          { privileges: ['SELECT'], on: 'MySQL.*' },
          { privileges: ['SELECT'], on: 'performance_schema.*' },
          { privileges: ['ALL', 'GRANT OPTION', 'CREATE ROUTINE', 'TRIGGER', 'CREATE VIEW', 'SUPER'], on: `${my.database}.*` },
          { privileges: ['SELECT'], on: 'vault_no_such_db.*' },
          { privileges: ['SELECT'], on: `${my.database}.no_such_table` },
          { privileges: ['LOCK TABLES'], on: `${my.database}.${table}` },
          { privileges: [], on: `${my.database}.*` },
        ],
      });
      expect(refusals).toEqual([
        '*.*: a global grant (*.*) is never given to a one-time account; name a database',
        'mysql.user: nothing is granted on the system schema mysql',
        'MySQL.*: nothing is granted on the system schema MySQL',
        'performance_schema.*: nothing is granted on the system schema performance_schema',
        ...['ALL', 'GRANT OPTION', 'CREATE ROUTINE', 'TRIGGER', 'CREATE VIEW', 'SUPER'].map((p) => expect.stringContaining(`${my.database}.*: the privilege "${p}" is not allowed for one-time accounts`)),
        `${my.database}.${table}: LOCK TABLES can only be granted on a whole database (${my.database}.*)`,
        `${my.database}.*: the grant names no privilege`,
      ]);
      // once the static problems are gone, the catalog is asked
      expect(
        await connector.inspectAccess(target, {
          grants: [
            { privileges: ['SELECT'], on: 'vault_no_such_db.*' },
            { privileges: ['SELECT'], on: `${my.database}.no_such_table` },
          ],
        }),
      ).toEqual([
        'vault_no_such_db.*: the database vault_no_such_db does not exist on the target (or its administrator holds no privilege on it)',
        `${my.database}.no_such_table: the table no_such_table does not exist in ${my.database} on the target`,
      ]);
    });

    it('newUser refuses the same before touching the target (defence in depth)', async () => {
      const offline = { ...target, port: await freePort() };
      for (const grants of [[{ privileges: ['SELECT', 'INSERT'], on: '*.*' }], [{ privileges: ['SELECT'], on: 'mysql.user' }], [{ privileges: ['ALL'], on: `${my.database}.*` }]]) {
        expect((await failure(connector.newUser(offline, { username: name(), password: password(), access: { grants } }))).code).toBe('TARGET_INVALID_NAME');
      }
      const account = name();
      const e = await failure(connector.newUser(target, { username: account, password: password(), access: { grants: [{ privileges: ['SELECT'], on: 'vault_no_such_db.*' }] } }));
      expect(e.code).toBe('TARGET_INVALID_NAME');
      expect(await my.userExists(account)).toBe(false);
    });

    it('a one-time account cannot create definer objects; the tables it created stay as data after revocation, the account is gone', async () => {
      const account = name();
      const pw = password();
      await connector.newUser(target, { username: account, password: pw, access: { grants: [{ privileges: ['SELECT', 'INSERT', 'CREATE', 'DROP'], on: `${my.database}.*` }] } });
      const c = await createConnection({ host: my.host, port: my.port, user: account, password: pw, database: my.database });
      c.on('error', () => undefined);
      try {
        await c.query('CREATE TABLE made_by_vendor (x INT)');
        await c.query('INSERT INTO made_by_vendor VALUES (1)');
        await expect(c.query('CREATE VIEW v_vendor AS SELECT x FROM made_by_vendor')).rejects.toMatchObject({ code: 'ER_TABLEACCESS_DENIED_ERROR' });
        await expect(c.query('CREATE PROCEDURE p_vendor() SELECT 1')).rejects.toMatchObject({ code: 'ER_DBACCESS_DENIED_ERROR' });
        await expect(c.query('CREATE TRIGGER tr_vendor BEFORE INSERT ON made_by_vendor FOR EACH ROW SET @x = 1')).rejects.toMatchObject({ code: 'ER_TABLEACCESS_DENIED_ERROR' });
        await expect(c.query('SELECT * FROM mysql.user')).rejects.toMatchObject({ code: 'ER_TABLEACCESS_DENIED_ERROR' });
      } finally {
        await c.end().catch(() => undefined);
      }
      await connector.deleteUser(target, { username: account });
      expect(await my.userExists(account)).toBe(false);
      const [rows] = await my.query(`SELECT x FROM \`${my.database}\`.made_by_vendor`);
      expect(rows).toEqual([{ x: 1 }]);
      const [definers] = await my.rootQuery(
        'SELECT COUNT(*) AS n FROM (SELECT DEFINER FROM information_schema.VIEWS UNION ALL SELECT DEFINER FROM information_schema.ROUTINES UNION ALL SELECT DEFINER FROM information_schema.TRIGGERS UNION ALL SELECT DEFINER FROM information_schema.EVENTS) d WHERE DEFINER LIKE ?',
        [`${account}@%`],
      );
      expect(definers).toEqual([{ n: 0 }]);
    });
  });
});

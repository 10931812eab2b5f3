import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { Client as PgClient } from 'pg';
import { createConnection } from 'mysql2/promise';
import { Client as SshClient, ConnectConfig } from 'ssh2';
import { freePort } from '../process';
import { connectMariaDb } from './mariadb';
import { startScramPostgres } from './postgres';
import { fingerprintSha256, processGone, startSshd } from './sshd';

/**
 * Self-tests of the real target servers the connector conformance suite runs against: each one starts,
 * accepts the admin credential, checks passwords for real (right one in, wrong one out), and leaves
 * nothing behind when stopped (no process, no data dir, no account).
 */

const name = () => `vt_${randomBytes(4).toString('hex')}`;
const password = () => `${randomBytes(12).toString('base64url')}:=+@%^~,.`;

/** Connects with ssh2, runs one command, resolves to its stdout (or rejects with the connection error). */
function sshExec(config: ConnectConfig, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const conn = new SshClient();
    conn
      .on('ready', () =>
        conn.exec(command, (err, stream) => {
          if (err) {
            conn.end();
            return reject(err);
          }
          let out = '';
          stream.on('data', (d: Buffer) => (out += d)).on('close', () => {
            conn.end();
            resolve(out.trim());
          });
          stream.stderr.resume();
        }),
      )
      .on('error', reject)
      .connect({ readyTimeout: 10_000, ...config });
  });
}

const alive = (pid: number) => !processGone(pid);

describe.each([true, false])('test target: OpenSSH sshd (UsePAM %s)', (usePam) => {
  it('starts fast, pins its host key, logs in root by key and users by password, and cleans up', async () => {
    const t0 = Date.now();
    const sshd = await startSshd({ usePam });
    const startMs = Date.now() - t0;
    const user = name();
    const pw = password();
    const sessionPids: number[] = [];
    let wrongMs = 0;
    try {
      expect(sshd.host).toBe('127.0.0.1');
      expect(sshd.adminUsername).toBe('root');
      expect(sshd.adminPrivateKey).toContain('BEGIN OPENSSH PRIVATE KEY');
      expect(sshd.hostKeySha256).toMatch(/^[A-Za-z0-9+/]{43}$/);
      // fingerprintSha256 agrees with OpenSSH's own `ssh-keygen -lf` (same computation as hostKeySha256)
      const keygen = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', '-'], { input: sshd.adminPublicKey, encoding: 'utf8' });
      expect(keygen).toContain(`SHA256:${fingerprintSha256(sshd.adminPublicKey)} `);

      // root by key; the key the server presents hashes to hostKeySha256 (what a connector pins)
      let presented = '';
      const uid = await sshExec(
        {
          host: sshd.host,
          port: sshd.port,
          username: 'root',
          privateKey: sshd.adminPrivateKey,
          hostVerifier: (key: Buffer) => {
            presented = createHash('sha256').update(key).digest('base64').replace(/=+$/, '');
            return presented === sshd.hostKeySha256;
          },
        },
        'id -u',
      );
      expect(uid).toBe('0');
      expect(presented).toBe(sshd.hostKeySha256);

      // root has no password login (prohibit-password)
      await expect(sshExec({ host: sshd.host, port: sshd.port, username: 'root', password: 'anything' }, 'true')).rejects.toThrow(
        /authentication methods failed/,
      );

      // a user by password (through PAM), and a wrong password is refused
      await sshd.createUser(user, pw);
      expect(await sshd.userExists(user)).toBe(true);
      expect(await sshExec({ host: sshd.host, port: sshd.port, username: user, password: pw }, 'whoami')).toBe(user);
      const t2 = Date.now();
      await expect(sshExec({ host: sshd.host, port: sshd.port, username: user, password: `${pw}x` }, 'whoami')).rejects.toThrow(
        /authentication methods failed/,
      );
      wrongMs = Date.now() - t2;

      // a live session must not survive stop()
      const conn = new SshClient();
      await new Promise<void>((resolve, reject) => {
        conn.on('ready', () => resolve()).on('error', () => undefined).once('error', reject);
        conn.connect({ host: sshd.host, port: sshd.port, username: user, password: pw });
      });
      await new Promise<void>((resolve, reject) => conn.exec('sleep 600', (err) => (err ? reject(err) : resolve())));
      await new Promise((r) => setTimeout(r, 300));
      sessionPids.push(...execFileSync('pgrep', ['-u', user], { encoding: 'utf8' }).trim().split('\n').map(Number));
      expect(sessionPids.length).toBeGreaterThan(0);
    } finally {
      const t1 = Date.now();
      await sshd.stop();
      // eslint-disable-next-line no-console
      console.log(`sshd (UsePAM ${usePam}): start ${startMs} ms, stop ${Date.now() - t1} ms, a wrong password is refused after ${wrongMs} ms`);
    }
    expect(alive(sshd.pid)).toBe(false);
    expect(sessionPids.filter(alive)).toEqual([]);
    expect(await sshd.userExists(user)).toBe(false);
    expect(existsSync(`/home/${user}`)).toBe(false);
    expect(existsSync(sshd.dir)).toBe(false);
    await sshd.stop(); // idempotent
  });

  it('deleteUser removes a user and ignores a missing one', async () => {
    const sshd = await startSshd({ usePam });
    try {
      const user = name();
      await sshd.createUser(user, password());
      await sshd.deleteUser(user);
      expect(await sshd.userExists(user)).toBe(false);
      await sshd.deleteUser(user);
      await expect(sshd.createUser('Bad;Name', 'x')).rejects.toThrow(/invalid test account name/);
    } finally {
      await sshd.stop();
    }
  });
});

describe('test target: PostgreSQL with scram-sha-256', () => {
  it('starts fast, admits the admin and a created role by password only, and cleans up', async () => {
    const t0 = Date.now();
    const pg = await startScramPostgres();
    const startMs = Date.now() - t0;
    const role = name();
    const pw = password();
    const connect = async (user: string, password: string) => {
      const c = new PgClient({ host: pg.host, port: pg.port, user, password, database: pg.database, connectionTimeoutMillis: 5000 });
      c.on('error', () => undefined);
      await c.connect();
      return c;
    };
    let backendPid: number | undefined;
    try {
      expect(pg.adminUsername).toBe('postgres');
      const admin = await connect(pg.adminUsername, pg.adminPassword);
      const { rows } = await admin.query<{ method: string }>("SELECT current_setting('password_encryption') AS method");
      expect(rows[0].method).toBe('scram-sha-256');
      await admin.end();

      const hba = await pg.query<{ auth_method: string }>('SELECT DISTINCT auth_method FROM pg_hba_file_rules');
      expect(hba.rows.map((r) => r.auth_method)).toEqual(['scram-sha-256']);
      const backend = await pg.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      backendPid = backend.rows[0].pid;

      await pg.createRole(role, pw);
      expect(await pg.roleExists(role)).toBe(true);
      expect(await pg.roleExists(name())).toBe(false);
      const asRole = await connect(role, pw);
      expect((await asRole.query('SELECT current_user AS u')).rows[0].u).toBe(role);
      await asRole.end();

      await expect(connect(role, `${pw}x`)).rejects.toMatchObject({ code: '28P01' });
      await expect(connect(pg.adminUsername, 'wrong')).rejects.toMatchObject({ code: '28P01' });
    } finally {
      const t1 = Date.now();
      await pg.stop();
      // eslint-disable-next-line no-console
      console.log(`postgres: start ${startMs} ms, stop ${Date.now() - t1} ms`);
    }
    expect(alive(pg.pid)).toBe(false);
    expect(alive(backendPid!)).toBe(false);
    expect(existsSync(pg.dir)).toBe(false);
    await expect(connect(pg.adminUsername, pg.adminPassword)).rejects.toThrow();
    await pg.stop(); // idempotent
  });
});

describe('test target: MariaDB', () => {
  it('creates a non-root admin, admits created users by password only, and drops them all', async () => {
    const t0 = Date.now();
    const my = await connectMariaDb();
    const startMs = Date.now() - t0;
    const user = name();
    const pw = password();
    const connect = (u: string, p: string) => createConnection({ host: my.host, port: my.port, user: u, password: p, connectTimeout: 5000 });
    try {
      expect(my.adminUsername).toMatch(/^vault_admin_[0-9a-f]{10}$/);
      const admin = await connect(my.adminUsername, my.adminPassword);
      const [grants] = await admin.query('SHOW GRANTS');
      expect(JSON.stringify(grants)).toMatch(/GRANT ALL PRIVILEGES ON \*\.\* TO .*WITH GRANT OPTION/);
      await admin.end();

      await my.createUser(user, pw);
      expect(await my.userExists(user)).toBe(true);
      const asUser = await connect(user, pw);
      const [rows] = await asUser.query('SELECT CURRENT_USER() AS u');
      expect((rows as Array<{ u: string }>)[0].u).toBe(`${user}@%`);
      await asUser.end();

      await expect(connect(user, `${pw}x`)).rejects.toMatchObject({ code: 'ER_ACCESS_DENIED_ERROR' });
      const [viaHandle] = await my.query('SELECT ? AS v', [42]);
      expect((viaHandle as Array<{ v: number }>)[0].v).toBe(42);
    } finally {
      const t1 = Date.now();
      await my.stop();
      // eslint-disable-next-line no-console
      console.log(`mariadb: connect ${startMs} ms, stop ${Date.now() - t1} ms`);
    }
    const root = await createConnection({ host: '127.0.0.1', port: 3306, user: 'root', password: '' });
    try {
      const [left] = await root.query('SELECT User FROM mysql.user WHERE User IN (?, ?)', [user, my.adminUsername]);
      expect(left).toEqual([]);
    } finally {
      await root.end();
    }
    await my.stop(); // idempotent
  });

  it('fails (never skips) with a clear message when MariaDB is not reachable', async () => {
    const port = await freePort(); // nothing listens there
    const saved = process.env.TEST_MARIADB_ROOT_URL;
    process.env.TEST_MARIADB_ROOT_URL = `mysql://root@127.0.0.1:${port}`;
    try {
      await expect(connectMariaDb()).rejects.toThrow(new RegExp(`need the machine's MariaDB at 127\\.0\\.0\\.1:${port} .*not reachable`));
    } finally {
      if (saved === undefined) delete process.env.TEST_MARIADB_ROOT_URL;
      else process.env.TEST_MARIADB_ROOT_URL = saved;
    }
  });
});

import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { AddressInfo } from 'node:net';
import { Client, ConnectConfig, Server, utils } from 'ssh2';
import { newEd25519Pair } from '../../src/common/ssh-keys';
import { ConnectorError } from '../../src/connectors/connector.errors';
import { Connector, ConnectorTarget } from '../../src/connectors/connector.interface';
import { ConnectorRegistry } from '../../src/connectors/connector.registry';
import { UID_MARK_PREFIX } from '../../src/connectors/ssh/ssh-remote';
import { canLoginSsh } from '../support/targets/sessions';
import { run, runRaw } from '../support/targets/run';
import { connectorCodeOf, fingerprintSha256, processGone, SSH_ADMIN_COMMANDS, sshConnect, SshdHandle, sshExecHold, sshExecOut, startSshd, SudoAdmin } from '../support/targets/sshd';
import { holdSystemAccounts, releaseSystemAccounts } from '../support/system-accounts';

// SSH one-time accounts live in the machine's /etc/passwd: suites that create and remove them take turns
beforeAll(holdSystemAccounts, 900_000);
afterAll(releaseSystemAccounts);

/**
 * Target safety of the SSH connector (issue 11), against a real OpenSSH sshd (UsePAM yes, as a stock Debian server: PAM
 * sessions with pam_loginuid audit sessions) and least-privilege sudo admins, never root:
 * ending sessions never kills every process of an account (root included), one-time accounts never get a recycled uid,
 * the admin password never reaches a command's stdin, nothing is sent to a host whose key is not pinned, and verify
 * reports every missing capability.
 */

const hex = () => randomBytes(4).toString('hex');
const pw = () => `Pw-${randomBytes(12).toString('base64url')}`;

const codeOf = connectorCodeOf;

const connect = sshConnect;
const execOut = sshExecOut;
const execHold = sshExecHold;

/** A login session that holds a `sleep` (in its subtree) and has left a daemonized `sleep` behind (out of its subtree, same audit session). */
async function sessionWithLeftover(config: ConnectConfig, marker: number): Promise<{ conn: Client; leftover: number; closed: () => boolean }> {
  const conn = await connect(config);
  let closed = false;
  conn.on('close', () => (closed = true)).on('error', () => undefined);
  const leftover = Number((await execOut(conn, `setsid sleep ${marker + 1} </dev/null >/dev/null 2>&1 & echo $!`)).trim());
  expect(leftover).toBeGreaterThan(1);
  await execHold(conn, `sleep ${marker}`);
  await new Promise((r) => setTimeout(r, 200));
  return { conn, leftover, closed: () => closed };
}

/** A process started on this machine outside any sshd session (as a daemon or cron job would be), as `uid`. */
function outsider(seconds: number, uid = 0, gid = 0): ChildProcess {
  const child = spawn('sleep', [String(seconds)], { uid, gid, stdio: 'ignore', detached: true });
  child.unref();
  return child;
}

const alive = (pid: number) => !processGone(pid);
const waitGone = async (pid: number) => {
  for (let i = 0; i < 50 && alive(pid); i++) await new Promise((r) => setTimeout(r, 50));
  return !alive(pid);
};
const uidOf = async (name: string) => Number((await run('id', ['-u', name])).stdout.trim());

describe('SSH connector target safety (real sshd, least-privilege sudo admins)', () => {
  let sshd: SshdHandle;
  let nopass: SudoAdmin;
  let withPw: SudoAdmin;
  let connector: Connector;
  const targetOf = (admin: SudoAdmin, how: 'key' | 'password', extra: Partial<ConnectorTarget> = {}): ConnectorTarget => ({
    type: 'ssh',
    host: sshd.host,
    port: sshd.port,
    adminUsername: admin.username,
    ...(how === 'key' ? { adminPrivateKey: admin.privateKey } : { adminPassword: admin.password }),
    options: { hostKeySha256: sshd.hostKeySha256, sudo: true },
    ...extra,
  });
  const cleanup: Array<() => unknown> = [];

  beforeAll(async () => {
    sshd = await startSshd({ usePam: true });
    [nopass, withPw] = [await sshd.createSudoAdmin({ nopasswd: true }), await sshd.createSudoAdmin({ nopasswd: false })];
    connector = new ConnectorRegistry().get('ssh');
  }, 60_000);
  afterAll(async () => {
    for (const fn of cleanup.reverse()) await Promise.resolve(fn()).catch(() => undefined);
    await sshd?.stop();
    // the connector's uid marks (made by the revokes here): removed so the machine is left as found
    for (const l of (await run('getent', ['passwd'])).stdout.split('\n').filter((x) => x.startsWith(UID_MARK_PREFIX))) await runRaw('userdel', [l.split(':')[0]]);
  });

  describe('verify: privilege mode and every capability', () => {
    it.each([
      ['NOPASSWD sudo, key login, no stored password', 'sudo-nopasswd', () => targetOf(nopass, 'key')],
      ['NOPASSWD sudo, password login (password stored)', 'sudo-nopasswd', () => targetOf(nopass, 'password')],
      ['sudo with the admin password', 'sudo-password', () => targetOf(withPw, 'password')],
    ] as const)('%s → %s, all capabilities ok', async (_what, mode, target) => {
      const res = await connector.verify(target());
      expect(res.privilege).toBe(mode);
      expect(res.hostKeySha256).toBe(sshd.hostKeySha256);
      expect(res.serverVersion).toMatch(/^Linux /);
      expect(res.capabilities.map((c) => [c.code, c.ok])).toEqual([
        ['SSH_PRIVILEGE', true],
        ['SSH_USER_MANAGEMENT', true],
        ['SSH_PROCESS_VIEW', true],
        ['SSH_KILL', true],
        ['SSH_KILL_AS_USER', true],
        ['SSH_KEYS_LOCKED', true],
      ]);
    });

    it('an admin whose sudoers lacks userdel: SSH_USER_MANAGEMENT not ok, naming what to grant; the rest still reported', async () => {
      const partial = await sshd.createSudoAdmin({ nopasswd: true, commands: SSH_ADMIN_COMMANDS.filter((c) => c !== '/usr/sbin/userdel') });
      const res = await connector.verify(targetOf(partial, 'key'));
      const byCode = Object.fromEntries(res.capabilities.map((c) => [c.code, c]));
      expect(byCode.SSH_PRIVILEGE.ok).toBe(true);
      expect(byCode.SSH_USER_MANAGEMENT.ok).toBe(false);
      expect(byCode.SSH_USER_MANAGEMENT.message).toContain(`${partial.username} ALL=(root) NOPASSWD: /usr/sbin/userdel`);
      expect(byCode.SSH_USER_MANAGEMENT.message).not.toMatch(/useradd|usermod|chpasswd/);
      expect(byCode.SSH_KILL.ok).toBe(true);
      expect(byCode.SSH_PROCESS_VIEW.ok).toBe(true);
    });

    it('an admin without any sudo rule: every missing capability is listed (verify does not stop at the first)', async () => {
      const none = await sshd.createSudoAdmin({ nopasswd: true, commands: ['/usr/bin/true'] });
      const res = await connector.verify(targetOf(none, 'password'));
      const byCode = Object.fromEntries(res.capabilities.map((c) => [c.code, c]));
      expect(byCode.SSH_USER_MANAGEMENT.ok).toBe(false);
      expect(byCode.SSH_USER_MANAGEMENT.message).toContain('/usr/sbin/useradd, /usr/sbin/usermod, /usr/sbin/userdel, /usr/sbin/chpasswd');
      expect(byCode.SSH_KILL.ok).toBe(false);
      expect(byCode.SSH_KILL.message).toContain(`${none.username} ALL=(ALL) NOPASSWD: /usr/bin/kill`);
      expect(byCode.SSH_KILL_AS_USER.ok).toBe(false);
      // kill allowed as root only: SSH_KILL ok, SSH_KILL_AS_USER names the run-as line to add
      const rootKill = await sshd.createSudoAdmin({ nopasswd: true, killAsAnyUser: false });
      const caps = Object.fromEntries((await connector.verify(targetOf(rootKill, 'key'))).capabilities.map((c) => [c.code, c]));
      expect([caps.SSH_KILL.ok, caps.SSH_KILL_AS_USER.ok]).toEqual([true, false]);
      expect(caps.SSH_KILL_AS_USER.message).toContain(`${rootKill.username} ALL=(ALL) NOPASSWD: /usr/bin/kill`);
      // and it still ends a one-time account's processes (as root, after the identity check)
      const eph = `vt_eph_${hex()}`;
      const ephPw = pw();
      await connector.newUser(targetOf(rootKill, 'key'), { username: eph, password: ephPw, access: {} });
      const session = await sessionWithLeftover({ host: sshd.host, port: sshd.port, username: eph, password: ephPw }, 2100 + Math.floor(Math.random() * 99) * 2);
      await connector.deleteUser(targetOf(rootKill, 'key'), { username: eph });
      expect((await runRaw('getent', ['passwd', eph])).code).toBe(2);
      expect(await waitGone(session.leftover)).toBe(true);
      session.conn.end();
      expect(JSON.stringify(res)).not.toContain(none.password);
      // a password-sudo admin whose password is not stored cannot use sudo non-interactively
      const noPwStored = await connector.verify(targetOf(withPw, 'key'));
      expect(noPwStored.privilege).toBeUndefined();
      expect(noPwStored.capabilities.filter((c) => !c.ok).map((c) => c.code)).toEqual(['SSH_PRIVILEGE', 'SSH_USER_MANAGEMENT', 'SSH_KILL', 'SSH_KILL_AS_USER']);
    });
  });

  describe('the admin password never reaches a command', () => {
    it('an admin password shaped "<otheruser>:<pw>" (NOPASSWD sudo) changes nobody else; rotation succeeds on the first try', async () => {
      const victim = `vt_victim_${hex()}`;
      const victimPw = pw();
      await sshd.createUser(victim, victimPw);
      const hostile = await sshd.createSudoAdmin({ nopasswd: true, password: `${victim}:Taken-${hex()}` });
      const account = `vt_rot_${hex()}`;
      await sshd.createUser(account, pw());
      const next = pw();
      await connector.updatePassword(targetOf(hostile, 'password'), { username: account, password: next });
      expect(await canLoginSsh(sshd.host, sshd.port, account, next)).toBe(true);
      expect(await canLoginSsh(sshd.host, sshd.port, victim, victimPw)).toBe(true);
      expect(await canLoginSsh(sshd.host, sshd.port, victim, hostile.password.split(':')[1])).toBe(false);
    }, 60_000);

    it('with password sudo: rotation and one-time accounts work on the first try, and no error holds the admin password', async () => {
      const target = targetOf(withPw, 'password');
      const account = `vt_rot_${hex()}`;
      await sshd.createUser(account, pw());
      const next = pw();
      await connector.updatePassword(target, { username: account, password: next });
      expect(await canLoginSsh(sshd.host, sshd.port, account, next)).toBe(true);
      const eph = `vt_eph_${hex()}`;
      const ephPw = pw();
      await connector.newUser(target, { username: eph, password: ephPw, access: {} });
      expect(await canLoginSsh(sshd.host, sshd.port, eph, ephPw)).toBe(true);
      await connector.deleteUser(target, { username: eph });
      expect((await runRaw('getent', ['passwd', eph])).code).toBe(2);
      // a failing command (the user exists) is reported without the admin password
      try {
        await connector.newUser(target, { username: account, password: pw(), access: {} });
        throw new Error('newUser of an existing user should fail');
      } catch (e) {
        expect((e as ConnectorError).code).toBe('TARGET_ERROR');
        expect(JSON.stringify({ m: (e as Error).message })).not.toContain(withPw.password);
      }
    }, 60_000);
  });

  describe('ending sessions (INVARIANT 18)', () => {
    it('checking in a vaulted root: its login sessions and their audit session end; other root processes, the listener and the admin survive', async () => {
      const target = targetOf(nopass, 'key');
      // the vaulted account is root: a root login by key (PermitRootLogin prohibit-password)
      const root = await sessionWithLeftover({ host: sshd.host, port: sshd.port, username: 'root', privateKey: sshd.adminPrivateKey }, 700 + Math.floor(Math.random() * 99) * 2);
      const other = outsider(900);
      cleanup.push(() => other.kill('SIGKILL'));
      // the vault's admin has a session of its own open meanwhile (another call in flight)
      const adminConn = await connect({ host: sshd.host, port: sshd.port, username: nopass.username, privateKey: nopass.privateKey });
      let adminClosed = false;
      adminConn.on('close', () => (adminClosed = true));
      await execHold(adminConn, 'sleep 300');
      try {
        expect(root.closed()).toBe(false);
        await connector.terminateSessions(target, { username: 'root' }); // resolves: the admin's own session finished its command
        for (let i = 0; i < 40 && !root.closed(); i++) await new Promise((r) => setTimeout(r, 50));
        expect(root.closed()).toBe(true);
        expect(await waitGone(root.leftover)).toBe(true); // daemonized, out of the subtree: ended by its audit session
        expect(alive(other.pid!)).toBe(true); // a root process outside sshd
        expect(alive(process.pid)).toBe(true);
        expect(alive(sshd.pid)).toBe(true); // the listener
        expect(adminClosed).toBe(false);
        expect((await connector.verify(target)).ok).toBe(true); // sshd still accepts logins
      } finally {
        adminConn.end();
        root.conn.end();
      }
    }, 60_000);

    it("a user's sessions end with their leftovers; the user's processes outside sshd survive", async () => {
      const user = `vt_ses_${hex()}`;
      const userPw = pw();
      await sshd.createUser(user, userPw);
      const uid = await uidOf(user);
      const session = await sessionWithLeftover({ host: sshd.host, port: sshd.port, username: user, password: userPw }, 1100 + Math.floor(Math.random() * 99) * 2);
      const job = outsider(1300, uid, uid); // e.g. a cron job of the user
      cleanup.push(() => job.kill('SIGKILL'));
      await connector.terminateSessions(targetOf(withPw, 'password'), { username: user });
      for (let i = 0; i < 40 && !session.closed(); i++) await new Promise((r) => setTimeout(r, 50));
      expect(session.closed()).toBe(true);
      expect(await waitGone(session.leftover)).toBe(true);
      expect(alive(job.pid!)).toBe(true);
      // nothing to end: fine
      await connector.terminateSessions(targetOf(withPw, 'password'), { username: user });
      session.conn.end();
    }, 60_000);
  });

  describe('one-time accounts never get a recycled uid', () => {
    it("a deleted user's leftover process keeps running through create and revoke of a one-time account, which got another uid", async () => {
      const target = targetOf(nopass, 'key');
      // the newest user (highest uid): useradd's default choice for the next account is this uid once it is deleted
      const old = `vt_old_${hex()}`;
      await sshd.createUser(old, pw());
      const oldUid = await uidOf(old);
      const leftover = outsider(1500, oldUid, oldUid);
      cleanup.push(() => leftover.kill('SIGKILL'));
      await run('userdel', ['-f', old]);
      cleanup.push(() => runRaw('rm', ['-rf', `/home/${old}`]));
      expect(alive(leftover.pid!)).toBe(true);

      const eph = `vt_eph_${hex()}`;
      const ephPw = pw();
      await connector.newUser(target, { username: eph, password: ephPw, access: {} });
      const ephUid = await uidOf(eph);
      expect(ephUid).not.toBe(oldUid);
      expect(ephUid).toBeGreaterThanOrEqual(1000);
      const session = await sessionWithLeftover({ host: sshd.host, port: sshd.port, username: eph, password: ephPw }, 1700 + Math.floor(Math.random() * 99) * 2);
      const ephJob = outsider(1900, ephUid, ephUid); // started with its uid outside sshd: the account's too
      await connector.deleteUser(target, { username: eph });
      expect((await runRaw('getent', ['passwd', eph])).code).toBe(2);
      expect(await waitGone(session.leftover)).toBe(true);
      expect(await waitGone(ephJob.pid!)).toBe(true);
      expect(alive(leftover.pid!)).toBe(true);
      session.conn.end();
    }, 60_000);

    it('revoking refuses a system account (uid < UID_MIN) and changes nothing', async () => {
      const sys = `vt_sys_${hex()}`;
      await run('useradd', ['-r', '-M', '-s', '/usr/sbin/nologin', sys]);
      cleanup.push(() => runRaw('userdel', [sys]));
      expect(await uidOf(sys)).toBeLessThan(1000);
      expect(await codeOf(connector.deleteUser(targetOf(nopass, 'key'), { username: sys }))).toBe('TARGET_INVALID_NAME');
      expect((await run('getent', ['shadow', sys])).stdout.split(':')[7]).toBe(''); // not expired
    });
  });

  describe('isAdmin and inspectAccess against the target', () => {
    it('isAdmin: the admin, and an alias with its uid, are the admin; root and strangers are not', async () => {
      const target = targetOf(nopass, 'key');
      const alias = `vt_alias_${hex()}`;
      await run('useradd', ['-o', '-M', '-u', String(await uidOf(nopass.username)), '-s', '/usr/sbin/nologin', alias]);
      try {
        expect(await connector.isAdmin(target, nopass.username)).toBe(true);
        expect(await connector.isAdmin(target, alias)).toBe(true);
        expect(await connector.isAdmin(target, 'root')).toBe(false);
        expect(await connector.isAdmin(target, `vt_none_${hex()}`)).toBe(false);
      } finally {
        // -f: the uid is the admin's, whose sessions may still be closing (plain userdel refuses a logged-in uid)
        await run('userdel', ['-f', alias]);
      }
    });

    it('inspectAccess: one refusal line per group that is forbidden, missing or a system group', async () => {
      const ok = `vt_grp_${hex()}`;
      await run('groupadd', [ok]);
      cleanup.push(() => runRaw('groupdel', [ok]));
      const missing = `vt_nogrp_${hex()}`;
      const usersGid = (await run('getent', ['group', 'users'])).stdout.split(':')[2];
      expect(await connector.inspectAccess(targetOf(withPw, 'password'), { groups: [ok, 'docker', missing, 'users', 'sudo'] })).toEqual([
        'group docker: root-equivalent or reads secrets and logs, never given to a one-time account',
        `group ${missing}: does not exist on the target`,
        `group users: a system group (gid ${usersGid}, below GID_MIN 1000)`,
        'group sudo: root-equivalent or reads secrets and logs, never given to a one-time account',
      ]);
      expect(await connector.inspectAccess(targetOf(withPw, 'password'), { groups: [ok] })).toEqual([]);
    });
  });

  describe('nothing is sent to a host whose key is not pinned or differs (impostor at the address)', () => {
    let impostor: Server;
    let port: number;
    let fingerprint: string;
    const auths: Array<{ method: string; password?: string }> = [];
    const execs: string[] = [];

    beforeAll(async () => {
      const keys = newEd25519Pair(utils);
      fingerprint = fingerprintSha256(keys.public);
      impostor = new Server({ hostKeys: [keys.private] }, (client) => {
        client.on('error', () => undefined);
        client.on('authentication', (ctx) => {
          auths.push({ method: ctx.method, ...(ctx.method === 'password' ? { password: ctx.password } : {}) });
          ctx.accept(); // an impostor accepts anything, to collect what it is sent
        });
        client.on('ready', () =>
          client.on('session', (accept) => {
            const session = accept();
            session.on('exec', (acc, _rej, info) => {
              execs.push(info.command);
              const ch = acc();
              ch.exit(0);
              ch.end();
            });
          }),
        );
      });
      await new Promise<void>((r) => impostor.listen(0, '127.0.0.1', () => r()));
      port = (impostor.address() as AddressInfo).port;
    });
    afterAll(() => impostor?.close());

    it('hostKey() reads the presented key without authenticating', async () => {
      expect(await connector.hostKey!({ ...targetOf(withPw, 'password'), port, options: {} })).toBe(fingerprint);
      expect(await connector.hostKey!(targetOf(withPw, 'password'))).toBe(sshd.hostKeySha256);
      expect(auths).toEqual([]);
    });

    it.each([
      ['pinned to the real host key', 'TARGET_HOST_KEY_MISMATCH', () => ({ hostKeySha256: sshd.hostKeySha256 })],
      ['no pin', 'TARGET_HOST_KEY_UNPINNED', () => ({})],
    ] as const)('%s → %s for every call that authenticates, and the impostor got no password and no exec', async (_what, code, options) => {
      const target = { ...targetOf(withPw, 'password'), port, options: options() };
      const account = { username: `vt_imp_${hex()}`, password: pw() };
      expect(await codeOf(connector.verify(target))).toBe(code);
      expect(await codeOf(connector.updatePassword(target, account))).toBe(code);
      expect(await codeOf(connector.newUser(target, { ...account, access: {} }))).toBe(code);
      expect(await codeOf(connector.login(target, account))).toBe(code);
      expect(await codeOf(connector.deleteUser(target, { username: account.username }))).toBe(code);
      expect(await codeOf(connector.terminateSessions(target, { username: account.username }))).toBe(code);
      expect(await codeOf(connector.isAdmin(target, account.username))).toBe(code);
      expect(await codeOf(connector.inspectAccess(target, { groups: ['users'] }))).toBe(code);
      expect(auths).toEqual([]);
      expect(execs).toEqual([]);
      if (code === 'TARGET_HOST_KEY_UNPINNED') expect(new ConnectorError(code, '').status).toBe(409);
    });
  });
});

import { ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { Client } from 'ssh2';
import { Connector, ConnectorTarget } from '../../src/connectors/connector.interface';
import { ConnectorRegistry } from '../../src/connectors/connector.registry';
import { processesToEnd, SCAN_SCRIPT } from '../../src/connectors/ssh/ssh-processes';
import { endProcesses, scanProcesses, signal, UID_MARK_PREFIX } from '../../src/connectors/ssh/ssh-remote';
import { AdminShell, adminAuth, execScript, sshSession } from '../../src/connectors/ssh/ssh-session';
import { run, runRaw } from '../support/targets/run';
import { connectorCodeOf, processGone, sshConnect, SshdHandle, sshExecHold, sshExecOut, startSshd, SudoAdmin } from '../support/targets/sshd';
import { holdSystemAccounts, releaseSystemAccounts } from '../support/system-accounts';

// SSH one-time accounts live in the machine's /etc/passwd: suites that create and remove them take turns
beforeAll(holdSystemAccounts, 900_000);
afterAll(releaseSystemAccounts);

/**
 * The SSH session rule and one-time account removal against what an adversarial account does on a real OpenSSH sshd
 * (UsePAM yes and no): titles that imitate sshd, zombies with live threads, processes that hop pids, huge command
 * lines, an sshd restarted from a login session, unauthenticated clients naming the account, files left for the next
 * holder of a uid (issue 11 review).
 */

const hex = () => randomBytes(4).toString('hex');
const pw = () => `Pw-${randomBytes(12).toString('base64url')}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const connect = sshConnect;
const execOut = sshExecOut;
const execHold = sshExecHold;
const codeOf = connectorCodeOf;
const alive = (pid: number) => !processGone(pid);
const waitGone = async (pid: number) => {
  for (let i = 0; i < 60 && alive(pid); i++) await sleep(50);
  return !alive(pid);
};
const uidOf = async (name: string) => Number((await run('id', ['-u', name])).stdout.trim());
/** Live processes (live threads included) running with `uid`, from /proc. */
async function liveOfUid(uid: number): Promise<string> {
  const res = await runRaw('sh', ['-c', `for t in /proc/[0-9]*/task/*; do awk -v t="$t" '/^State/{s=$2} /^Uid/{if ($2==${uid} && s!="Z") print t, s}' "$t/status" 2>/dev/null; done; exit 0`]);
  return res.stdout.trim();
}
function outsider(seconds: number, uid = 0, gid = 0): ChildProcess {
  const child = spawn('sleep', [String(seconds)], { uid, gid, stdio: 'ignore', detached: true });
  child.unref();
  return child;
}

describe('SSH sessions and one-time accounts against an adversarial account (real sshd)', () => {
  let sshd: SshdHandle;
  let admin: SudoAdmin;
  let connector: Connector;
  const cleanup: Array<() => unknown> = [];
  const targetOf = (h: SshdHandle, a: SudoAdmin): ConnectorTarget => ({ type: 'ssh', host: h.host, port: h.port, adminUsername: a.username, adminPassword: a.password, options: { hostKeySha256: h.hostKeySha256 } });
  /** A one-time account made by the connector, logged in, holding a `sleep` in its session. */
  async function vendor(h = sshd, a = admin) {
    const username = `vt_adv_${hex()}`;
    const password = pw();
    await connector.newUser(targetOf(h, a), { username, password, access: {}, validUntil: new Date(Date.now() + 86_400_000) });
    cleanup.push(() => h.deleteUser(username).catch(() => runRaw('userdel', ['-r', username])));
    const conn = await connect({ host: h.host, port: h.port, username, password });
    conn.on('error', () => undefined);
    await execHold(conn, 'sleep 611');
    return { username, password, uid: await uidOf(username), conn };
  }

  beforeAll(async () => {
    sshd = await startSshd({ usePam: true });
    admin = await sshd.createSudoAdmin({ nopasswd: false });
    connector = new ConnectorRegistry().get('ssh');
  }, 60_000);
  afterAll(async () => {
    for (const fn of cleanup.reverse()) await Promise.resolve(fn()).catch(() => undefined);
    await sshd?.stop();
    // the connector's uid marks (made by the revokes here); removed so the machine is left as found
    const marks = (await run('getent', ['passwd'])).stdout.split('\n').filter((l) => l.startsWith(UID_MARK_PREFIX));
    for (const l of marks) await runRaw('userdel', [l.split(':')[0]]);
  }, 60_000);

  it('a process of the account titled "[listener]" is ended by revoke (and by check-in of a vaulted user); the real listener survives', async () => {
    const v = await vendor();
    const evil = Number((await execOut(v.conn, `setsid bash -c 'exec -a "evil [listener]" sleep 612' </dev/null >/dev/null 2>&1 & echo $!`)).trim());
    await sleep(200);
    expect(alive(evil)).toBe(true);
    await connector.deleteUser(targetOf(sshd, admin), { username: v.username });
    expect(await waitGone(evil)).toBe(true);
    expect((await runRaw('getent', ['passwd', v.username])).code).toBe(2);

    const user = `vt_lst_${hex()}`;
    const userPw = pw();
    await sshd.createUser(user, userPw);
    const conn = await connect({ host: sshd.host, port: sshd.port, username: user, password: userPw });
    const inSession = Number((await execOut(conn, `bash -c 'exec -a "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups" sleep 613' </dev/null >/dev/null 2>&1 & echo $!`)).trim());
    await execHold(conn, 'sleep 614');
    await connector.terminateSessions(targetOf(sshd, admin), { username: user });
    expect(await waitGone(inSession)).toBe(true);
    expect(alive(sshd.pid)).toBe(true);
    conn.end();
  }, 90_000);

  it('a process whose main thread exited while another runs (state Zl) is ended: revoke leaves no live thread of the uid', async () => {
    const v = await vendor();
    const zl = Number((await execOut(v.conn, `setsid perl -Mthreads -e 'threads->create(sub { sleep 615 })->detach; syscall(60, 0)' </dev/null >/dev/null 2>&1 & echo $!`)).trim());
    await sleep(500);
    expect((await run('ps', ['-o', 'stat=,nlwp=', '-p', String(zl)])).stdout.trim()).toMatch(/^Z\S*l\S*\s+2$/);
    await connector.deleteUser(targetOf(sshd, admin), { username: v.username });
    await sleep(300);
    expect(await liveOfUid(v.uid)).toBe('');
  }, 90_000);

  it('a parent of a process titled like the account\'s session is not protected: revoke ends it', async () => {
    const v = await vendor();
    const parent = Number(
      (await execOut(v.conn, `setsid bash -c '(exec -a "sshd: ${v.username}@pts/99" sleep 616) & exec -a reverse-shell sleep 617' </dev/null >/dev/null 2>&1 & echo $!`)).trim(),
    );
    await sleep(300);
    await connector.deleteUser(targetOf(sshd, admin), { username: v.username });
    expect(await waitGone(parent)).toBe(true);
    expect(await liveOfUid(v.uid)).toBe('');
  }, 90_000);

  it('a pid that now belongs to another process is not signalled: as the recorded uid the kernel refuses, as root the identity check does', async () => {
    const root = outsider(918);
    const other = outsider(919, 65534, 65534);
    cleanup.push(() => root.kill('SIGKILL'), () => other.kill('SIGKILL'));
    await sleep(200);
    await sshSession(targetOf(sshd, admin), adminAuth(targetOf(sshd, admin)), undefined, async (conn) => {
      const shell = await AdminShell.open(conn, targetOf(sshd, admin));
      const t = await scanProcesses(shell);
      const r = t.procs.get(root.pid!)!;
      const o = t.procs.get(other.pid!)!;
      // what the vault recorded when the pid was the admin's (a uid sudo runs kill as), or another root process (other start time)
      await signal(shell, 'KILL', [
        { ...r, ruid: shell.uid, euid: shell.uid },
        { ...o, ruid: shell.uid, euid: shell.uid },
      ]);
      await signal(shell, 'KILL', [{ ...r, started: 'Thu Jan  1 00:00:01 1970' }]);
      await sleep(200);
      expect(alive(root.pid!)).toBe(true);
      expect(alive(other.pid!)).toBe(true);
      // the kernel decides for a process of a uid: a stale start time does not matter when the process is that uid's
      await signal(shell, 'KILL', [{ ...o, started: 'Thu Jan  1 00:00:01 1970' }]);
    });
    expect(await waitGone(other.pid!)).toBe(true);
    expect(alive(root.pid!)).toBe(true);
  }, 60_000);

  it('an account that keeps changing its pid (fork and exit in a loop) is ended; others\' processes survive', async () => {
    const v = await vendor();
    const bystander = outsider(920, 65534, 65534);
    cleanup.push(() => bystander.kill('SIGKILL'));
    await execOut(v.conn, `setsid bash -c 'h() { sleep 0.01; h & exit 0; }; h' </dev/null >/dev/null 2>&1 & echo started`);
    await sleep(500);
    // what is proved is that the hopper ends, not how fast: freezing a fork loop takes up to 20 scan rounds over SSH,
    // ≈ 16 s on a busy 2-core machine (measured 30 Nov 2026), just over the connector's default 15 s deadline
    await connector.deleteUser(targetOf(sshd, admin), { username: v.username }, { timeoutMs: 60_000 });
    await sleep(300);
    expect(await liveOfUid(v.uid)).toBe('');
    expect(alive(bystander.pid!)).toBe(true);
  }, 90_000);

  it('huge command lines do not blow up the scan (bounded titles); revoke ends them; more output than the cap fails cleanly', async () => {
    const v = await vendor();
    await execOut(v.conn, `A=$(head -c 100000 /dev/zero | tr '\\0' x); for i in $(seq 1 150); do setsid sleep 621 $A </dev/null >/dev/null 2>&1 & done; echo ok`);
    await sleep(800);
    await sshSession(targetOf(sshd, admin), adminAuth(targetOf(sshd, admin)), undefined, async (conn) => {
      const scan = await execScript(conn, SCAN_SCRIPT);
      expect(scan.code).toBe(0);
      expect(scan.stdout.length).toBeLessThan(2_000_000); // 150 x 100 kB of arguments: 15 MB with full command lines
      expect(await codeOf(execScript(conn, 'head -c 3000000 /dev/zero', '', 1_000_000))).toBe('TARGET_ERROR');
    });
    await connector.deleteUser(targetOf(sshd, admin), { username: v.username });
    expect(await liveOfUid(v.uid)).toBe('');
  }, 120_000);

  it('uids are never handed out twice: the next one-time account gets a higher uid; the old one stays held by a locked account', async () => {
    const a = await vendor();
    const leftover = `/var/tmp/.vt_adv_${hex()}`;
    cleanup.push(() => runRaw('rm', ['-f', leftover]));
    await execOut(a.conn, `cp /bin/bash ${leftover} && chmod 4755 ${leftover}`);
    a.conn.end();
    await connector.deleteUser(targetOf(sshd, admin), { username: a.username });
    const b = await vendor();
    expect(b.uid).toBeGreaterThan(a.uid);
    expect((await run('stat', ['-c', '%u', leftover])).stdout.trim()).toBe(String(a.uid));
    // the uid of the leftover belongs to a mark account: locked, expired, no shell; no account can log in as it
    const mark = `${UID_MARK_PREFIX}${a.uid}`;
    expect((await run('getent', ['passwd', String(a.uid)])).stdout.trim().split(':')).toEqual([mark, 'x', String(a.uid), '100', expect.any(String), '/nonexistent', '/usr/sbin/nologin']);
    const shadow = (await run('getent', ['shadow', mark])).stdout.trim().split(':');
    expect(shadow[1]).toMatch(/^!/);
    expect(shadow[7]).toBe('1');
    await connector.deleteUser(targetOf(sshd, admin), { username: b.username });
    expect((await run('getent', ['passwd', String(b.uid)])).stdout.split(':')[0]).toBe(`${UID_MARK_PREFIX}${b.uid}`);
    expect((await runRaw('getent', ['passwd', mark])).code).toBe(2); // the older mark is gone: uids only grow
    // a third account is above both
    const c = await vendor();
    expect(c.uid).toBeGreaterThan(b.uid);
    await connector.deleteUser(targetOf(sshd, admin), { username: c.username });
  }, 120_000);

  it('revoke refuses uids above UID_MAX and systemd dynamic uids, and a uid another account shares; nothing is changed', async () => {
    for (const uid of [60_500, 61_200]) {
      const name = `vt_dyn_${hex()}`;
      await run('useradd', ['-M', '-u', String(uid), '-s', '/usr/sbin/nologin', name]);
      cleanup.push(() => runRaw('userdel', [name]));
      expect(await codeOf(connector.deleteUser(targetOf(sshd, admin), { username: name }))).toBe('TARGET_INVALID_NAME');
      expect((await run('getent', ['shadow', name])).stdout.split(':')[7]).toBe('');
    }
    const owner = `vt_own_${hex()}`;
    await sshd.createUser(owner, pw());
    const alias = `vt_ali_${hex()}`;
    await run('useradd', ['-o', '-M', '-u', String(await uidOf(owner)), '-s', '/usr/sbin/nologin', alias]);
    cleanup.push(() => runRaw('userdel', [alias]));
    expect(await codeOf(connector.deleteUser(targetOf(sshd, admin), { username: alias }))).toBe('TARGET_INVALID_NAME');
    expect((await runRaw('getent', ['passwd', alias])).code).toBe(0);
  }, 60_000);

  it('verify: SSH_KEYS_LOCKED is ok for a root-owned AuthorizedKeysFile, not ok when keys are read from the home', async () => {
    const locked = await connector.verify(targetOf(sshd, admin));
    expect(locked.capabilities.find((c) => c.code === 'SSH_KEYS_LOCKED')).toMatchObject({ ok: true });
    const home = await startSshd({ usePam: true, keysInHome: true });
    try {
      const a = await home.createSudoAdmin({ nopasswd: true });
      const res = await connector.verify(targetOf(home, a));
      const cap = res.capabilities.find((c) => c.code === 'SSH_KEYS_LOCKED')!;
      expect(cap.ok).toBe(false);
      expect(cap.message).toContain('.ssh/authorized_keys');
    } finally {
      await home.stop();
    }
  }, 60_000);

  describe.each([
    ['UsePAM yes', true],
    ['UsePAM no', false],
  ] as const)('an sshd (re)started from a login session, with a root daemon from the same session (%s)', (_what, usePam) => {
    let fromLogin: SshdHandle;
    let a: SudoAdmin;
    beforeAll(async () => {
      fromLogin = await startSshd({ usePam, fromLoginSession: true });
      a = await fromLogin.createSudoAdmin({ nopasswd: false });
    }, 60_000);
    afterAll(() => fromLogin?.stop());

    it('check-in ends the user\'s session; an unauthenticated client naming the user selects nothing; the daemon and the listener survive', async () => {
      const daemon = fromLogin.daemonPid!;
      expect(alive(daemon)).toBe(true);
      const session = (pid: number) => Number(readFileSync(`/proc/${pid}/sessionid`, 'utf8'));
      expect(session(daemon)).toBe(session(fromLogin.pid));
      const user = `vt_pre_${hex()}`;
      const userPw = pw();
      await fromLogin.createUser(user, userPw);
      const conn = await connect({ host: fromLogin.host, port: fromLogin.port, username: user, password: userPw });
      let closed = false;
      conn.on('close', () => (closed = true)).on('error', () => undefined);
      const leftover = Number((await execOut(conn, `setsid sleep 622 </dev/null >/dev/null 2>&1 & echo $!`)).trim());
      await execHold(conn, 'sleep 623');
      // a client that names the user and stalls before authenticating: a root "sshd: <user> [priv]" in the listener's audit session
      const pending = new Client();
      let asked = 0;
      pending.on('error', () => undefined);
      pending.connect({
        host: fromLogin.host,
        port: fromLogin.port,
        username: user,
        hostVerifier: () => true,
        authHandler: ((_m: unknown, _p: unknown, cb: (x: unknown) => void) => {
          if (asked++ === 0) cb({ type: 'none', username: user });
        }) as never,
      });
      await sleep(1000);
      try {
        await connector.terminateSessions(targetOf(fromLogin, a), { username: user });
        for (let i = 0; i < 40 && !closed; i++) await sleep(50);
        expect(closed).toBe(true);
        expect(alive(daemon)).toBe(true);
        expect(alive(fromLogin.pid)).toBe(true);
        expect(alive(process.pid)).toBe(true);
        // with an audit session of its own (UsePAM yes) the daemonized leftover ends too; without, it survives (documented)
        expect(await waitGone(leftover)).toBe(usePam);
        expect((await connector.verify(targetOf(fromLogin, a))).ok).toBeDefined();
      } finally {
        pending.end();
        conn.end();
        await runRaw('kill', ['-KILL', String(leftover)]);
      }
    }, 60_000);
  });

  it('with root as the admin (setpriv instead of sudo -u): revoke ends the account\'s processes, others survive', async () => {
    const rootTarget: ConnectorTarget = { type: 'ssh', host: sshd.host, port: sshd.port, adminUsername: 'root', adminPrivateKey: sshd.adminPrivateKey, options: { hostKeySha256: sshd.hostKeySha256 } };
    const v = await vendor();
    const bystander = outsider(924, 65534, 65534);
    cleanup.push(() => bystander.kill('SIGKILL'));
    const left = Number((await execOut(v.conn, `setsid sleep 625 </dev/null >/dev/null 2>&1 & echo $!`)).trim());
    await connector.deleteUser(rootTarget, { username: v.username });
    expect(await waitGone(left)).toBe(true);
    expect(await liveOfUid(v.uid)).toBe('');
    expect(alive(bystander.pid!)).toBe(true);
  }, 60_000);

  it('endProcesses as exported: ends what is selected, and nothing of the admin', async () => {
    const v = await vendor();
    await sshSession(targetOf(sshd, admin), adminAuth(targetOf(sshd, admin)), undefined, async (conn) => {
      const shell = await AdminShell.open(conn, targetOf(sshd, admin));
      await endProcesses(shell, (t) => processesToEnd(t, v.username, v.uid), v.username);
    });
    for (let i = 0; i < 40 && !(v.conn as unknown as { _sock?: { destroyed?: boolean } })._sock?.destroyed; i++) await sleep(50);
    expect(await liveOfUid(v.uid)).toBe('');
    await connector.deleteUser(targetOf(sshd, admin), { username: v.username });
  }, 60_000);
});

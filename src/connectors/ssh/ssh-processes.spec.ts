import { isLive, isSshdSessionTitle, NO_AUDIT_SESSION, parseProcessTable, processesToEnd, sameProcess, SCAN_SCRIPT, sessionsOf, TITLE_BYTES } from './ssh-processes';

/**
 * The session rule on process tables as the scan prints them (the e2e suite test/connectors/ssh-safety.e2e-spec.ts runs
 * it against a real OpenSSH 9.2; the `sshd-session:` titles of OpenSSH >= 9.8 are only checked here).
 */
const U = NO_AUDIT_SESSION;
const START = 'Mon Nov 30 10:26:44 2026';
type Row = [pid: number, ppid: number, uid: number | [ruid: number, euid: number], args: string, sessionid?: number, extra?: { state?: string; nlwp?: number; loginuid?: number; started?: string }];
function table(self: number, rows: Row[]) {
  const ps = rows.map(([pid, ppid, uid, args, , x]) => {
    const [ruid, euid] = Array.isArray(uid) ? uid : [uid, uid];
    const title = args.slice(0, TITLE_BYTES).padEnd(TITLE_BYTES);
    return `${String(pid).padStart(7)} ${String(ppid).padStart(7)} ${ruid} ${euid} ${(x?.state ?? 'S').padEnd(4)} ${String(x?.nlwp ?? 1).padStart(3)} ${x?.started ?? START} ${title} ${String(pid).padStart(7)}`;
  });
  const ids = rows.map(([pid, , , , sid]) => `/proc/${pid}/sessionid:${sid ?? U}`);
  const luids = rows.map(([pid, , uid, , sid, x]) => `/proc/${pid}/loginuid:${x?.loginuid ?? (sid === undefined ? U : Array.isArray(uid) ? uid[0] : uid)}`);
  return parseProcessTable([`self ${self}`, ...ps, '--sessionids', ...ids, '--loginuids', ...luids].join('\n'));
}
const LISTENER = 'sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups';

describe('SSH process scan', () => {
  it('reads a bounded title column (not the last one, so ps cuts it) and every field the rule needs', () => {
    expect(SCAN_SCRIPT).toContain(`args:${TITLE_BYTES}=,pid=`);
    const t = table(9, [[42, 1, [1007, 0], 'x'.repeat(200), 5, { state: 'Zl', nlwp: 3, loginuid: 1007 }]]);
    const p = t.procs.get(42)!;
    expect(p).toMatchObject({ ppid: 1, ruid: 1007, euid: 0, state: 'Zl', nlwp: 3, started: START, sessionid: 5, loginuid: 1007 });
    expect(p.args).toBe('x'.repeat(TITLE_BYTES));
    // a title ending in digits, and a line whose trailing pid does not match, are read right / dropped
    const u = parseProcessTable(['self 1', `     43       1 0 0 S      1 ${START} ${'sleep 600'.padEnd(64)}      43`, `     44       1 0 0 S      1 ${START} ${'forged'.padEnd(64)}      45`].join('\n'));
    expect(u.procs.get(43)!.args).toBe('sleep 600');
    expect(u.procs.has(44)).toBe(false);
  });

  it('a zombie whose other threads still run is live; a plain zombie is not; identity compares start time, ids and title', () => {
    const t = table(9, [
      [50, 1, 1007, '[zl] <defunct>', U, { state: 'Zl', nlwp: 2 }],
      [51, 1, 1007, '[true] <defunct>', U, { state: 'Z', nlwp: 1 }],
      [52, 1, 1007, 'sleep 600'],
    ]);
    expect([50, 51, 52].map((p) => isLive(t.procs.get(p)))).toEqual([true, false, true]);
    const later = table(9, [[52, 1, 0, 'sleep 600', U, { started: 'Mon Nov 30 10:26:45 2026' }]]);
    expect(sameProcess(t.procs.get(52)!, later.procs.get(52))).toBe(false);
    expect(sameProcess(t.procs.get(52)!, t.procs.get(52))).toBe(true);
  });
});

describe('SSH session rule', () => {
  it('recognises the sshd per-connection titles of OpenSSH 9.2 and >= 9.8, for exactly that user', () => {
    for (const t of ['sshd: bob [priv]', 'sshd: bob@notty', 'sshd: bob@pts/3', 'sshd-session: bob [priv]', 'sshd-session: bob@notty', 'sshd-session: bob@pts/0']) {
      expect(isSshdSessionTitle(t, 'bob')).toBe(true);
    }
    for (const t of ['sshd: bobby@notty', 'sshd: bo@notty', 'sshd: bob [net]', 'sshd: bob [preauth]', LISTENER, 'sleep 600 sshd: bob@notty', 'sshd: b.b@notty']) {
      expect(isSshdSessionTitle(t, 'bob')).toBe(false);
    }
    expect(isSshdSessionTitle('sshd: bxb@notty', 'b.b')).toBe(false); // the name is matched literally
  });

  it('ends each session with its subtree and its audit session; keeps the listener, the caller and outsiders', () => {
    const t = table(60, [
      [1, 0, 0, '/sbin/init'],
      [10, 1, 0, LISTENER, 5],
      // root's login (OpenSSH 9.2: a single process) with a shell, a child, and a daemonized leftover in its audit session
      [20, 10, 0, 'sshd: root@pts/0', 7],
      [21, 20, 0, '-bash', 7],
      [22, 21, 0, 'vim /etc/hosts', 7],
      [23, 1, 0, 'sleep 1000', 7],
      // a root process outside any sshd session (cron, a daemon)
      [30, 1, 0, 'cron -f', U],
      // the vault's admin session (sudo admin) and the script that took the snapshot
      [40, 10, 0, 'sshd: vtadm [priv]', 9],
      [41, 40, 1001, 'sshd: vtadm@notty', 9],
      [60, 41, 1001, '/bin/sh -c ps', 9],
      [61, 1, 1001, 'something the admin daemonized', 9],
      // a zombie of the session: signalled too (harmless)
      [70, 20, 0, '[true] <defunct>', 7, { state: 'Z' }],
    ]);
    expect(processesToEnd(t, 'root', 0)).toEqual([20, 21, 22, 23, 70]);
  });

  it('never ends the caller or its ancestors, even when they carry the title (an admin alias of the user)', () => {
    const t = table(60, [
      [10, 1, 0, 'sshd: /usr/sbin/sshd [listener]'],
      [40, 10, 0, 'sshd: bob [priv]'],
      [41, 40, 1000, 'sshd: bob@notty'],
      [60, 41, 1000, '/bin/sh -c ps'],
      [50, 10, 0, 'sshd: bob [priv]'],
      [51, 50, 1000, 'sshd: bob@notty'],
      [52, 51, 1000, 'sleep 600'],
    ]);
    expect(processesToEnd(t, 'bob', 1000)).toEqual([50, 51, 52]);
  });

  it('ignores a process that calls itself an sshd session of the user without the ids sshd gives it', () => {
    const t = table(99, [
      [10, 1, 0, 'sshd: /usr/sbin/sshd [listener]'],
      [80, 1, 1002, 'sshd: root@pts/0'],
      [81, 80, 1002, 'sleep 5'],
      // setuid root, run by 1002: effective uid 0, real uid 1002
      [82, 1, [1002, 0], 'sshd: root [priv]'],
      [99, 1, 1001, '/bin/sh -c ps'],
    ]);
    expect(processesToEnd(t, 'root', 0)).toEqual([]);
  });

  it('a title alone protects nothing: "[listener]" in a process of the account, or a listener title not run by root', () => {
    const t = table(99, [
      [10, 1, 0, LISTENER, 5],
      [20, 10, 0, 'sshd: vt_eph [priv]', 7],
      [21, 20, 1007, 'sshd: vt_eph@notty', 7],
      [22, 21, 1007, 'evil [listener]', 7],
      [23, 1, 1007, 'sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups', 7],
      // setuid root run by the account, titled like the listener, started by init
      [24, 1, [1007, 0], 'sshd: /usr/sbin/sshd -D [listener]', U],
      [99, 1, 1001, '/bin/sh -c ps'],
    ]);
    expect(processesToEnd(t, 'vt_eph', 1007)).toEqual([20, 21, 22, 23]);
    expect(processesToEnd(t, 'vt_eph', 1007, 1007)).toEqual([20, 21, 22, 23, 24]);
  });

  it('a process of the account whose child calls itself the account\'s session is not protected as "the listener"', () => {
    const t = table(99, [
      [10, 1, 0, LISTENER, 5],
      [30, 1, 1007, 'reverse-shell', 7],
      [31, 30, 1007, 'sshd: vt_x@pts/99', 7],
      [99, 1, 1001, '/bin/sh -c ps'],
    ]);
    expect(processesToEnd(t, 'vt_x', 1007, 1007)).toEqual([30, 31]);
    // without the uid rule: 31 is the account's "session" (its own ids), 30 is in the same (forged-into) audit session
    expect(processesToEnd(t, 'vt_x', 1007)).toEqual([30, 31]);
  });

  it('a pre-auth monitor (root, titled by the name a client sent) selects no audit session; the listener\'s, pid 1\'s and the caller\'s never count', () => {
    const t = table(99, [
      [1, 0, 0, '/sbin/init', 3],
      // the listener was (re)started from a login session (audit session 5); a root daemon from the same session
      [10, 1, 0, LISTENER, 5, { loginuid: 0 }],
      [11, 1, 0, 'nginx: master process', 5, { loginuid: 0 }],
      // an unauthenticated client named root: "sshd: root [priv]" + "[net]", in the listener's audit session
      [20, 10, 0, 'sshd: root [priv]', 5, { loginuid: 0 }],
      [21, 20, 101, 'sshd: root [net]', 5, { loginuid: 0 }],
      // UsePAM no: a root login inherits the listener's audit session too
      [30, 10, 0, 'sshd: root@pts/1', 5, { loginuid: 0 }],
      [31, 30, 0, '-bash', 5, { loginuid: 0 }],
      [99, 1, 1001, '/bin/sh -c ps', 5],
    ]);
    expect(processesToEnd(t, 'root', 0)).toEqual([20, 21, 30, 31]);
  });

  it('an audit session counts only for an authenticated login of the user (loginuid), and ends only that uid\'s processes in it', () => {
    const t = table(99, [
      [10, 1, 0, LISTENER],
      [20, 10, 0, 'sshd: op [priv]', 7, { loginuid: 1005 }],
      [21, 20, 1005, 'sshd: op@pts/0', 7, { loginuid: 1005 }],
      [22, 1, 1005, 'nohup ./job', 7, { loginuid: 1005 }],
      // a daemon the operator started with sudo: root, same audit session: not ended
      [23, 1, 0, 'nginx: master process', 7, { loginuid: 1005 }],
      // a session process whose loginuid is not the user's (e.g. no pam_loginuid, inherited): no audit session from it
      [30, 10, 0, 'sshd: op [priv]', 8, { loginuid: 0 }],
      [31, 30, 1005, 'sshd: op@notty', 8, { loginuid: 0 }],
      [32, 1, 1005, 'sleep 100', 8, { loginuid: 0 }],
      [99, 1, 1001, '/bin/sh -c ps', 9],
    ]);
    expect(processesToEnd(t, 'op', 1005)).toEqual([20, 21, 22, 30, 31]);
  });

  it('with the uid of a one-time account: also every process running with it, wherever it came from', () => {
    const t = table(99, [
      [10, 1, 0, 'sshd: /usr/sbin/sshd [listener]'],
      [200, 1, 1007, 'nohup ./miner'],
      [201, 200, 1007, './miner --threads 2'],
      [202, 1, 1008, 'sleep 100'],
      [203, 1, 1007, '[zl] <defunct>', U, { state: 'Zl', nlwp: 2 }],
      [99, 1, 1001, '/bin/sh -c ps'],
    ]);
    expect(processesToEnd(t, 'vt_eph', 1007, 1007)).toEqual([200, 201, 203]);
    expect(processesToEnd(t, 'vt_eph', 1007)).toEqual([]);
  });

  it('lists one session per login of the user (the [priv] monitor its root), and ending one ends only it and its own audit session', () => {
    const t = table(60, [
      [1, 0, 0, '/sbin/init'],
      [10, 1, 0, LISTENER, 5],
      // bob's first login: monitor, user process, shell, and a nohup'd leftover in its audit session 7
      [20, 10, 0, 'sshd: bob [priv]', 7, { loginuid: 1000 }],
      [21, 20, 1000, 'sshd: bob@pts/1', 7],
      [22, 21, 1000, '-bash', 7],
      [23, 1, 1000, 'sleep 900', 7],
      // bob's second login (exec, no terminal), audit session 8
      [30, 10, 0, 'sshd: bob [priv]', 8, { loginuid: 1000 }],
      [31, 30, 1000, 'sshd: bob@notty', 8],
      [32, 31, 1000, 'sleep 600', 8],
      // a login still authenticating as bob (pre-auth monitor)
      [35, 10, 0, 'sshd: bob [priv]', 5],
      // eve (1001) imitates bob's sessions; her own login is in audit session 9
      [40, 10, 0, 'sshd: eve [priv]', 9, { loginuid: 1001 }],
      [41, 40, 1001, 'sshd: eve@notty', 9],
      [42, 41, 1001, 'sshd: bob@pts/7', 9],
      [43, 1, 1001, 'sshd: bob [priv]', 9],
      // the vault's admin session and the scan
      [50, 10, 0, 'sshd: vtadm [priv]', 11],
      [51, 50, 1002, 'sshd: vtadm@notty', 11],
      [60, 51, 1002, '/bin/sh -c ps', 11],
    ]);
    const sessions = sessionsOf(t, 'bob', 1000);
    expect(sessions.map((s) => [s.root.pid, s.login?.pid ?? null, s.pids])).toEqual([
      [20, 21, [20, 21, 22, 23]],
      [30, 31, [30, 31, 32]],
      [35, null, [35]],
    ]);
    // narrowed to one session, the rule picks exactly its processes; another session's root picks nothing of the first
    expect(processesToEnd(t, 'bob', 1000, undefined, t.procs.get(30)!)).toEqual([30, 31, 32]);
    expect(processesToEnd(t, 'bob', 1000, undefined, { ...t.procs.get(20)!, started: 'Mon Nov 30 10:26:45 2026' })).toEqual([]);
    // eve's imitations are no session of bob's, and the listener, pid 1 and the admin's own session are never one
    for (const pid of [1, 10, 42, 43, 50, 51, 60]) expect(processesToEnd(t, 'bob', 1000, undefined, t.procs.get(pid)!)).toEqual([]);
    expect(sessionsOf(t, 'eve', 1001).map((s) => s.root.pid)).toEqual([40]);
    expect(sessionsOf(t, 'vtadm', 1002)).toEqual([]); // the caller's own: never listed
  });
});

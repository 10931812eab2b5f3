import { isSshdSessionTitle, NO_AUDIT_SESSION, parseProcessTable, processesToEnd } from './ssh-processes';

/**
 * The session rule on process tables as `ps` prints them (the e2e suite test/connectors/ssh-safety.e2e-spec.ts runs it
 * against a real OpenSSH 9.2; the `sshd-session:` titles of OpenSSH >= 9.8 are only checked here).
 */
const U = NO_AUDIT_SESSION;
function table(self: number, rows: Array<[pid: number, ppid: number, uid: number, args: string, sessionid?: number, state?: string]>) {
  const ps = rows.map(([pid, ppid, uid, args, , state]) => `${String(pid).padStart(7)} ${String(ppid).padStart(7)} ${uid} ${uid} ${(state ?? 'S').padEnd(4)} ${args}`);
  const ids = rows.map(([pid, , , , sid]) => `/proc/${pid}/sessionid:${sid ?? U}`);
  return parseProcessTable([`self ${self}`, ...ps, '--sessionids', ...ids].join('\n'));
}

describe('SSH session rule', () => {
  it('recognises the sshd per-connection titles of OpenSSH 9.2 and >= 9.8, for exactly that user', () => {
    for (const t of ['sshd: bob [priv]', 'sshd: bob@notty', 'sshd: bob@pts/3', 'sshd-session: bob [priv]', 'sshd-session: bob@notty', 'sshd-session: bob@pts/0']) {
      expect(isSshdSessionTitle(t, 'bob')).toBe(true);
    }
    for (const t of ['sshd: bobby@notty', 'sshd: bo@notty', 'sshd: bob [net]', 'sshd: bob [preauth]', 'sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups', 'sleep 600 sshd: bob@notty', 'sshd: b.b@notty']) {
      expect(isSshdSessionTitle(t, 'bob')).toBe(false);
    }
    expect(isSshdSessionTitle('sshd: bxb@notty', 'b.b')).toBe(false); // the name is matched literally
  });

  it('ends each session with its subtree and its audit session; keeps the listener, the caller, its audit session and outsiders', () => {
    const t = table(60, [
      [1, 0, 0, '/sbin/init'],
      [10, 1, 0, 'sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups', 5],
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
      // a zombie
      [70, 20, 0, '[true] <defunct>', 7, 'Z'],
    ]);
    expect(processesToEnd(t, 'root', 0)).toEqual([20, 21, 22, 23]);
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

  it('ignores a process of another user that calls itself an sshd session of the user', () => {
    const t = table(99, [
      [10, 1, 0, 'sshd: /usr/sbin/sshd [listener]'],
      [80, 1, 1002, 'sshd: root@pts/0'],
      [81, 80, 1002, 'sleep 5'],
      [99, 1, 1001, '/bin/sh -c ps'],
    ]);
    expect(processesToEnd(t, 'root', 0)).toEqual([]);
  });

  it('with the uid of a one-time account: also every process running with it, wherever it came from', () => {
    const t = table(99, [
      [10, 1, 0, 'sshd: /usr/sbin/sshd [listener]'],
      [200, 1, 1007, 'nohup ./miner'],
      [201, 200, 1007, './miner --threads 2'],
      [202, 1, 1008, 'sleep 100'],
      [99, 1, 1001, '/bin/sh -c ps'],
    ]);
    expect(processesToEnd(t, 'vt_eph', 1007, 1007)).toEqual([200, 201]);
    expect(processesToEnd(t, 'vt_eph', 1007)).toEqual([]);
  });
});

/**
 * The target's process table as the SSH admin sees it (`ps` and /proc, no privilege needed), and the rule for which
 * processes ending an account's sessions may touch (INVARIANT 18).
 *
 * THE RULE. The sessions of account U are the sshd per-connection processes of logins as U, recognised by their process
 * title — `sshd: U [priv]` (the privileged monitor of a non-root login), `sshd: U@notty` / `sshd: U@pts/N` (the
 * session process; for a root login on OpenSSH 9.2 the only one), and the same with `sshd-session:` (OpenSSH >= 9.8) —
 * whose effective uid is 0 or U's uid (a process of another user that merely calls itself so is ignored). Ended are:
 * each such process with its whole subtree, and, where pam_loginuid gave the login an audit session
 * (/proc/<pid>/sessionid is not 4294967295), every process of that audit session (daemonized leftovers that left the
 * subtree). Never touched: the calling script and its ancestors (the vault's own admin session, whatever its name),
 * processes in the caller's audit session, pid 1, and sshd listeners (`[listener]` titles, and the parent of a
 * session's first process). Nothing else of U (cron jobs, daemons running as U, other processes of root) is touched.
 */

/** /proc/<pid>/sessionid of a process that has no audit session. */
export const NO_AUDIT_SESSION = 4294967295;

export interface Proc {
  pid: number;
  ppid: number;
  ruid: number;
  euid: number;
  /** ps STAT: Z is a zombie (already dead, waiting to be reaped). */
  state: string;
  /** The process title (argv as the process left it; sshd rewrites it). */
  args: string;
  sessionid: number;
}

export interface ProcessTable {
  /** The pid of the shell that took the snapshot. */
  self: number;
  procs: Map<number, Proc>;
}

/** The snapshot script: POSIX sh, no privilege. */
export const SCAN_SCRIPT = [
  'echo "self $$"',
  'ps -eo pid=,ppid=,ruid=,euid=,stat=,args= || exit 3',
  'echo "--sessionids"',
  "grep -H '' /proc/[0-9]*/sessionid 2>/dev/null",
  'exit 0',
].join('\n');

export function parseProcessTable(out: string): ProcessTable {
  const lines = out.split('\n');
  const selfLine = /^self (\d+)$/.exec(lines[0] ?? '');
  if (!selfLine) throw new Error('the process list of the target could not be read');
  const procs = new Map<number, Proc>();
  let i = 1;
  for (; i < lines.length && lines[i] !== '--sessionids'; i++) {
    const m = /^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s*(.*)$/.exec(lines[i]);
    if (m) procs.set(Number(m[1]), { pid: Number(m[1]), ppid: Number(m[2]), ruid: Number(m[3]), euid: Number(m[4]), state: m[5], args: m[6], sessionid: NO_AUDIT_SESSION });
  }
  for (i++; i < lines.length; i++) {
    const m = /^\/proc\/(\d+)\/sessionid:(\d+)$/.exec(lines[i]);
    const p = m && procs.get(Number(m[1]));
    if (p) p.sessionid = Number(m![2]);
  }
  return { self: Number(selfLine[1]), procs };
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Whether a process title is an sshd per-connection process of a login as `user`. */
export function isSshdSessionTitle(args: string, user: string): boolean {
  return new RegExp(`^sshd(?:-session)?: ${escapeRegExp(user)}(?: \\[priv\\]|@\\S+)\\s*$`).test(args);
}

function children(table: ProcessTable): Map<number, number[]> {
  const out = new Map<number, number[]>();
  for (const p of table.procs.values()) out.set(p.ppid, [...(out.get(p.ppid) ?? []), p.pid]);
  return out;
}

function subtree(kids: Map<number, number[]>, root: number, into: Set<number>): void {
  const queue = [root];
  while (queue.length) {
    const pid = queue.shift()!;
    if (into.has(pid)) continue;
    into.add(pid);
    queue.push(...(kids.get(pid) ?? []));
  }
}

/** What is never signalled: the caller and its ancestors, its subtree, its audit session, pid 1 and sshd listeners. */
function protectedPids(table: ProcessTable, kids: Map<number, number[]>): Set<number> {
  const out = new Set<number>([1]);
  for (let pid: number | undefined = table.self; pid && !out.has(pid); pid = table.procs.get(pid)?.ppid) out.add(pid);
  subtree(kids, table.self, out);
  const own = table.procs.get(table.self)?.sessionid ?? NO_AUDIT_SESSION;
  for (const p of table.procs.values()) {
    if (own !== NO_AUDIT_SESSION && p.sessionid === own) out.add(p.pid);
    if (/\[listener\]/.test(p.args)) out.add(p.pid);
  }
  return out;
}

/**
 * The live processes that ending the sessions of `user` (uid `uid`, when it still exists) ends, by the rule above;
 * with `alsoUid`, also every process running with that uid (a one-time account whose uid was free when it was made).
 */
export function processesToEnd(table: ProcessTable, user: string, uid: number | undefined, alsoUid?: number): number[] {
  const kids = children(table);
  const keep = protectedPids(table, kids);
  const chosen = new Set<number>();
  const sessions = new Set<number>();
  for (const p of table.procs.values()) {
    if (!isSshdSessionTitle(p.args, user) || keep.has(p.pid)) continue;
    if (p.euid !== 0 && p.euid !== uid) continue;
    const parent = table.procs.get(p.ppid);
    // the listener that forked the session's first process stays
    if (parent && !isSshdSessionTitle(parent.args, user)) keep.add(parent.pid);
    subtree(kids, p.pid, chosen);
    if (p.sessionid !== NO_AUDIT_SESSION) sessions.add(p.sessionid);
  }
  for (const p of table.procs.values()) {
    if (sessions.has(p.sessionid)) subtree(kids, p.pid, chosen);
    if (alsoUid !== undefined && (p.ruid === alsoUid || p.euid === alsoUid)) subtree(kids, p.pid, chosen);
  }
  return [...chosen].filter((pid) => !keep.has(pid) && table.procs.get(pid)?.state[0] !== 'Z').sort((a, b) => a - b);
}

/** Every uid some live process runs with (real or effective). */
export function uidsInUse(table: ProcessTable): Set<number> {
  const out = new Set<number>();
  for (const p of table.procs.values()) out.add(p.ruid).add(p.euid);
  return out;
}

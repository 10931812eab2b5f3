/**
 * The target's process table as the SSH admin sees it (`ps` and /proc, no privilege needed), and the rule for which
 * processes ending an account's sessions may touch (INVARIANT 18).
 *
 * THE RULE, for account U with uid u (README "Target safety"):
 * 1. Session processes. A process is a session process of U when its title is an sshd per-connection title of U AND
 *    its ids are the ones sshd gives it (a title alone proves nothing: any user sets its own):
 *    - `sshd: U [priv]` / `sshd-session: U [priv]` (the privileged monitor): real and effective uid 0;
 *    - `sshd: U@notty` / `sshd: U@pts/N` (and `sshd-session:`), the process of the logged-in user: real and effective
 *      uid u (0 for root, whose login on OpenSSH 9.2 is this one process).
 *    Each session process is ended with its whole subtree (a pre-auth monitor — `[priv]` of a client that only named U
 *    — is a pending login as U: its subtree, the `[net]` child, is ended too).
 * 2. Audit sessions. A login that pam_loginuid gave an audit session of its own also ends the daemonized leftovers
 *    of that session: for a `U@…` session process whose /proc/<pid>/loginuid is u (an authenticated login of U) and
 *    whose /proc/<pid>/sessionid is set and is none of: pid 1's, the caller's, or that of the listener serving the
 *    session, every process in that audit session whose real or effective uid is u is ended (not its subtree).
 *    Processes of other uids in U's audit session (e.g. a daemon an operator started with sudo) are NOT ended.
 *    A `[priv]` monitor never selects an audit session (a pre-auth one carries the listener's). Without usable audit
 *    sessions (UsePAM no: every session inherits the listener's) only the session subtrees are ended.
 * 3. Never touched: the calling script, its ancestors and its subtree (the vault's own admin session); pid 1; and the
 *    sshd listeners: processes with real and effective uid 0 and a listener title (`sshd: /path/sshd …`,
 *    `/path/sshd …`) whose parent is pid 1 or the service manager, or that is the parent of a session process.
 *    A process is never protected because of its title alone.
 * 4. With `alsoUid` (one-time accounts, whose uid nothing else used): also every process running with that uid.
 * Zombies are not filtered out of what is ended: SIGKILL to a zombie is harmless and ends its live threads (a
 * process whose main thread exited but whose other threads run shows as `Z` with more than one thread).
 */

/** /proc/<pid>/sessionid and /proc/<pid>/loginuid of a process that has none. */
export const NO_AUDIT_SESSION = 4294967295;

/** The bytes of a process title the scan reads: enough for every sshd title the rule needs (names are <= 32). */
export const TITLE_BYTES = 64;

export interface Proc {
  pid: number;
  ppid: number;
  ruid: number;
  euid: number;
  /** ps STAT: Z is a zombie (its main thread exited; with nlwp > 1 it still has live threads). */
  state: string;
  /** Number of threads. */
  nlwp: number;
  /** Start time as ps prints it (`lstart`): with pid, ruid, euid and title, what identifies the process. */
  started: string;
  /** The process title, its first {@link TITLE_BYTES} bytes (argv as the process left it; sshd rewrites it). */
  args: string;
  sessionid: number;
  loginuid: number;
}

export interface ProcessTable {
  /** The pid of the shell that took the snapshot. */
  self: number;
  procs: Map<number, Proc>;
}

/**
 * The snapshot script: POSIX sh, no privilege. Bounded output: a title column of TITLE_BYTES (not the last column,
 * so ps cuts it) and fixed-size fields, whatever the processes' command lines hold.
 */
export const SCAN_SCRIPT = [
  'echo "self $$"',
  `ps -eo pid=,ppid=,ruid=,euid=,stat=,nlwp=,lstart=,args:${TITLE_BYTES}=,pid= || exit 3`,
  'echo "--sessionids"',
  "grep -H '' /proc/[0-9]*/sessionid 2>/dev/null",
  'echo "--loginuids"',
  "grep -H '' /proc/[0-9]*/loginuid 2>/dev/null",
  'exit 0',
].join('\n');

const PS_LINE = /^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\d+)\s+([A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}) (.*?)\s+(\d+)$/;

export function parseProcessTable(out: string): ProcessTable {
  const lines = out.split('\n');
  const selfLine = /^self (\d+)$/.exec(lines[0] ?? '');
  if (!selfLine) throw new Error('the process list of the target could not be read');
  const procs = new Map<number, Proc>();
  let i = 1;
  for (; i < lines.length && lines[i] !== '--sessionids'; i++) {
    const m = PS_LINE.exec(lines[i]);
    if (!m || m[1] !== m[9]) continue;
    procs.set(Number(m[1]), {
      pid: Number(m[1]),
      ppid: Number(m[2]),
      ruid: Number(m[3]),
      euid: Number(m[4]),
      state: m[5],
      nlwp: Number(m[6]),
      started: m[7],
      args: m[8].trimEnd(),
      sessionid: NO_AUDIT_SESSION,
      loginuid: NO_AUDIT_SESSION,
    });
  }
  let field: 'sessionid' | 'loginuid' = 'sessionid';
  for (i++; i < lines.length; i++) {
    if (lines[i] === '--loginuids') {
      field = 'loginuid';
      continue;
    }
    const m = /^\/proc\/(\d+)\/(sessionid|loginuid):(\d+)$/.exec(lines[i]);
    const p = m && m[2] === field ? procs.get(Number(m[1])) : undefined;
    if (p) p[field] = Number(m![3]);
  }
  return { self: Number(selfLine[1]), procs };
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Which sshd per-connection title of a login as `user` a process title is, if any. */
function sshdSessionTitle(args: string, user: string): 'priv' | 'user' | undefined {
  const m = new RegExp(`^sshd(?:-session)?: ${escapeRegExp(user)}(?:( \\[priv\\])|@\\S+)\\s*$`).exec(args);
  return m ? (m[1] ? 'priv' : 'user') : undefined;
}

/** Whether a process title is an sshd per-connection process of a login as `user`. */
export function isSshdSessionTitle(args: string, user: string): boolean {
  return sshdSessionTitle(args, user) !== undefined;
}

/** The title of an sshd listener: `sshd: /usr/sbin/sshd -D [listener] …` (rewritten) or `/usr/sbin/sshd -D` / `sshd -D`. */
export function isListenerTitle(args: string): boolean {
  return /^(?:sshd: )?(?:\/\S*\/)?sshd(?:\s|$)/.test(args);
}

const isRoot = (p: Proc) => p.ruid === 0 && p.euid === 0;

/** The service manager or init, by title, running as root (a listener started by it is the system's). */
const isServiceManager = (p: Proc | undefined) => !!p && isRoot(p) && (p.pid === 1 || /^(?:\S*\/)?(?:systemd|init)(?:\s|$)/.test(p.args));

/** Whether `p` is a genuine session process of `user` (uid `uid`): title AND the ids sshd gives it. */
function sessionKind(p: Proc, user: string, uid: number | undefined): 'priv' | 'user' | undefined {
  const kind = sshdSessionTitle(p.args, user);
  if (kind === 'priv') return isRoot(p) ? kind : undefined;
  if (kind === 'user') return uid !== undefined && p.ruid === uid && p.euid === uid ? kind : undefined;
  return undefined;
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

/** The listener serving a process: its nearest ancestor that is not a session process of `user`, when that is a root sshd listener. */
function servingListener(table: ProcessTable, p: Proc, user: string, uid: number | undefined): Proc | undefined {
  let a = table.procs.get(p.ppid);
  for (let hops = 0; a && sessionKind(a, user, uid) && hops < 64; hops++) a = table.procs.get(a.ppid);
  return a && isRoot(a) && isListenerTitle(a.args) ? a : undefined;
}

/** One session of `user`: its topmost session process (the `[priv]` monitor, or the `U@…` process where there is none). */
export type SessionRef = Pick<Proc, 'pid' | 'started' | 'ruid' | 'euid' | 'args'>;

/** The topmost session process of `user` above (or at) session process `p`: what identifies its session. */
function sessionRoot(table: ProcessTable, p: Proc, user: string, uid: number | undefined): Proc {
  let root = p;
  for (let hops = 0; hops < 64; hops++) {
    const parent = table.procs.get(root.ppid);
    if (!parent || !sessionKind(parent, user, uid)) break;
    root = parent;
  }
  return root;
}

/** A live session of `user` as the listing shows it: the session's own processes are what ending it ends. */
export interface SessionOfUser {
  root: Proc;
  /** The session's process of the logged-in user (`U@pts/N`, `U@notty`); absent while it is still authenticating. */
  login?: Proc;
  /** Every process ending this one session ends (the rule above, for this session alone), the root first. */
  pids: number[];
}

/**
 * The live sessions of `user` (uid `uid`) by the rule above: one per topmost session process, never the caller's own
 * (the vault's admin session) nor anything the rule never touches. Ending one of them is
 * `processesToEnd(table, user, uid, undefined, root)`: exactly its `pids`.
 */
export function sessionsOf(table: ProcessTable, user: string, uid: number | undefined): SessionOfUser[] {
  const out: SessionOfUser[] = [];
  const kids = children(table);
  for (const p of table.procs.values()) {
    if (!isLive(p) || !sessionKind(p, user, uid) || sessionRoot(table, p, user, uid) !== p) continue;
    const pids = processesToEnd(table, user, uid, undefined, p);
    if (!pids.includes(p.pid)) continue; // protected (the caller's own, a listener): never listed
    const own = new Set<number>();
    subtree(kids, p.pid, own);
    const login = [...own].map((pid) => table.procs.get(pid)!).find((q) => q && sessionKind(q, user, uid) === 'user');
    out.push({ root: p, login, pids: [p.pid, ...pids.filter((pid) => pid !== p.pid)] });
  }
  return out.sort((a, b) => a.root.pid - b.root.pid);
}

/**
 * The live processes (and zombies: harmless to SIGKILL, see above) that ending the sessions of `user` (uid `uid`,
 * when it still exists) ends, by the rule above; with `alsoUid`, also every process running with that uid. With
 * `only`, the sessions are narrowed to that one session (its topmost session process — the same process by start time,
 * ids and title): its processes and what runs in its own audit session.
 */
export function processesToEnd(table: ProcessTable, user: string, uid: number | undefined, alsoUid?: number, only?: SessionRef): number[] {
  const kids = children(table);
  // 3. never touched: pid 1, the caller, its ancestors and its subtree, root sshd listeners of the system
  const keep = new Set<number>([1]);
  for (let pid: number | undefined = table.self; pid && !keep.has(pid); pid = table.procs.get(pid)?.ppid) keep.add(pid);
  subtree(kids, table.self, keep);
  for (const p of table.procs.values()) {
    if (isRoot(p) && isListenerTitle(p.args) && (p.ppid <= 1 || isServiceManager(table.procs.get(p.ppid)))) keep.add(p.pid);
  }
  const excludedSessions = new Set<number>([NO_AUDIT_SESSION, table.procs.get(1)?.sessionid ?? NO_AUDIT_SESSION, table.procs.get(table.self)?.sessionid ?? NO_AUDIT_SESSION]);

  // 1. session processes with their subtrees
  const chosen = new Set<number>();
  const sessionUsers: Proc[] = [];
  for (const p of table.procs.values()) {
    const kind = sessionKind(p, user, uid);
    if (!kind || keep.has(p.pid)) continue;
    if (only && !sameProcess(only, sessionRoot(table, p, user, uid))) continue;
    const listener = servingListener(table, p, user, uid);
    if (listener) {
      keep.add(listener.pid);
      excludedSessions.add(listener.sessionid);
    }
    subtree(kids, p.pid, chosen);
    if (kind === 'user') sessionUsers.push(p);
  }
  // 2. audit sessions of authenticated logins of U: U's own processes in them
  const sessions = new Set<number>();
  for (const p of sessionUsers) {
    if (uid !== undefined && p.loginuid === uid && !excludedSessions.has(p.sessionid)) sessions.add(p.sessionid);
  }
  for (const p of table.procs.values()) {
    if (sessions.has(p.sessionid) && (p.ruid === uid || p.euid === uid)) chosen.add(p.pid);
    // 4. one-time accounts: everything running with the uid
    if (alsoUid !== undefined && (p.ruid === alsoUid || p.euid === alsoUid)) chosen.add(p.pid);
  }
  return [...chosen].filter((pid) => !keep.has(pid) && table.procs.has(pid)).sort((a, b) => a - b);
}

/** Whether a process still runs: not a zombie, or a zombie whose other threads still run. */
export function isLive(p: Proc | undefined): boolean {
  return !!p && (p.state[0] !== 'Z' || p.nlwp > 1);
}

/** Whether `now` is the same process as `then` (not a reused pid): same start time, ids and title. */
export function sameProcess(then: SessionRef, now: Proc | undefined): boolean {
  return !!now && now.pid === then.pid && now.started === then.started && now.ruid === then.ruid && now.euid === then.euid && now.args === then.args;
}

/** Every uid some live process runs with (real or effective). */
export function uidsInUse(table: ProcessTable): Set<number> {
  const out = new Set<number>();
  for (const p of table.procs.values()) out.add(p.ruid).add(p.euid);
  return out;
}

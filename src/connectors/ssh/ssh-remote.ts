import { createHash } from 'node:crypto';
import { ConnectorError } from '../connector.errors';
import type { TargetSession } from '../connector.interface';
import { isLive, parseProcessTable, Proc, ProcessTable, sameProcess, SCAN_SCRIPT, SessionOfUser, uidsInUse } from './ssh-processes';
import { AdminShell, ExecResult, shQuote } from './ssh-session';

/** Operations on the target through the admin's shell: account ids, the process table, ending processes. */

export interface LoginDefs {
  uidMin: number;
  uidMax: number;
  gidMin: number;
}

/** UID_MIN, UID_MAX and GID_MIN from /etc/login.defs (world-readable), with the shadow-utils defaults. */
export async function loginDefs(shell: AdminShell): Promise<LoginDefs> {
  const out = (await shell.run("grep -E '^[[:space:]]*(UID_MIN|UID_MAX|GID_MIN)[[:space:]]' /etc/login.defs 2>/dev/null; exit 0")).stdout;
  const value = (key: string, fallback: number) => {
    const m = new RegExp(`^\\s*${key}\\s+(\\d+)\\s*$`, 'm').exec(out);
    return m ? Number(m[1]) : fallback;
  };
  return { uidMin: value('UID_MIN', 1000), uidMax: value('UID_MAX', 60000), gidMin: value('GID_MIN', 1000) };
}

/** The uid of an account (`id -u -- name`), or undefined when there is no such account. */
export async function uidOf(shell: AdminShell, username: string): Promise<number | undefined> {
  const res = await shell.run(`id -u -- ${shQuote(username)}`);
  const text = res.stdout.trim();
  return res.code === 0 && /^\d+$/.test(text) ? Number(text) : undefined;
}

/** A snapshot of the target's processes, taken as the admin (no privilege). */
export async function scanProcesses(shell: AdminShell): Promise<ProcessTable> {
  const res = await shell.run(SCAN_SCRIPT);
  if (res.code !== 0) throw new ConnectorError('TARGET_ERROR', `the process list of the target could not be read (exit ${res.code}): ${res.stderr.trim().slice(0, 200)}`);
  try {
    return parseProcessTable(res.stdout);
  } catch (e) {
    throw new ConnectorError('TARGET_ERROR', (e as Error).message);
  }
}

/** The signals the vault sends: freeze, then kill (a type named by its members keeps them apart from error codes). */
export type Signal = Extract<NodeJS.Signals, `SIG${'STOP'}` | `SIG${'KILL'}`> extends `SIG${infer S}` ? S : never;

/** Whether a `kill` run failed for a reason other than processes being gone or (as a uid) not its own. */
function killFailed(res: ExecResult): boolean {
  // kill: 0 all signalled; 1 some were gone already ("No such process") or, run as a uid, belong to someone else now
  // ("Operation not permitted": a reused pid). A refusal by sudo (or setpriv) is a failure.
  if (res.code === 0) return false;
  if (res.code !== 1 || /^sudo:|^setpriv:|not allowed|password|unknown/im.test(res.stderr)) return true;
  return !res.stderr.split('\n').filter((l) => l.trim()).every((l) => /No such process|Operation not permitted/.test(l));
}

const checkPids = (pids: number[]) => {
  if (!pids.every((p) => Number.isSafeInteger(p) && p > 1)) throw new ConnectorError('TARGET_ERROR', 'refusing to signal an invalid process id');
};

/**
 * Sends a signal to processes, each as seen in a snapshot. A process whose real uid is not 0 is signalled by `kill`
 * running AS that uid: the kernel lets it reach only processes of that uid, so a pid that was reused by another
 * user's process meanwhile is not hit. A process of root is signalled as root, and only when a snapshot taken just
 * before still shows the same process (start time, ids, title).
 */
export async function signal(shell: AdminShell, sig: Signal, procs: Proc[]): Promise<void> {
  const byUid = new Map<number, number[]>();
  for (const p of procs) byUid.set(p.ruid, [...(byUid.get(p.ruid) ?? []), p.pid]);
  const asRoot: Proc[] = procs.filter((p) => p.ruid === 0);
  for (const [uid, pids] of byUid) {
    if (uid === 0) continue;
    for (let i = 0; i < pids.length; i += 200) {
      const batch = pids.slice(i, i + 200);
      checkPids(batch);
      const res = await shell.sudoAs(uid, `kill -s ${sig} ${batch.join(' ')}`);
      if (!killFailed(res)) continue;
      // e.g. no run-as rule for the uid, or its process limit reached: as root, after the identity check below
      asRoot.push(...procs.filter((p) => batch.includes(p.pid)));
    }
  }
  if (asRoot.length === 0) return;
  const now = await scanProcesses(shell);
  const same = asRoot.filter((p) => sameProcess(p, now.procs.get(p.pid))).map((p) => p.pid);
  for (let i = 0; i < same.length; i += 200) {
    const batch = same.slice(i, i + 200);
    checkPids(batch);
    const res = await shell.sudo(`kill -s ${sig} ${batch.join(' ')}`);
    if (killFailed(res)) throw new ConnectorError('TARGET_ERROR', `kill -s ${sig} failed (exit ${res.code}): ${res.stderr.trim().slice(0, 200)}`);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Ends the processes `select` picks from the process table, so that none escapes by forking: each round takes a
 * snapshot and freezes (SIGSTOP) what it picks that is not frozen yet, until a snapshot picks nothing new; then all
 * get SIGKILL (see {@link signal}: as their own uid, or as root after an identity check), and snapshots confirm that
 * nothing picked is still running (a zombie with live threads counts as running). With `sweepUid` (a one-time
 * account), `kill -KILL -1` as that uid ends everything running with it in one step, until nothing is left.
 */
export async function endProcesses(shell: AdminShell, select: (t: ProcessTable) => number[], what: string, sweepUid?: number): Promise<void> {
  const frozen = new Map<number, Proc>();
  for (let round = 0; round < 20; round++) {
    const t = await scanProcesses(shell);
    const fresh = select(t)
      .filter((p) => !frozen.has(p))
      .map((p) => t.procs.get(p)!);
    if (fresh.length === 0) break;
    await signal(shell, 'STOP', fresh);
    for (const p of fresh) frozen.set(p.pid, p);
  }
  if (frozen.size) await signal(shell, 'KILL', [...frozen.values()]);
  for (let attempt = 0; ; attempt++) {
    // as the uid, every process of it at once (a pid hopper cannot slip between scans); when sudo does not allow kill
    // as the uid (SSH_KILL_AS_USER), the snapshots below and kill by pid do the work
    if (sweepUid !== undefined && sweepUid > 0) await shell.sudoAs(sweepUid, 'kill -KILL -1');
    const t = await scanProcesses(shell);
    const left = select(t)
      .map((p) => t.procs.get(p)!)
      .filter(isLive);
    if (left.length === 0) return;
    if (attempt >= 20) throw new ConnectorError('TARGET_ERROR', `${left.length} process(es) of ${what} are still running after SIGKILL`);
    await signal(shell, 'KILL', left);
    await sleep(100);
  }
}

/**
 * The accounts that hold the uids of removed one-time accounts, so that no uid is ever given twice: `pamvault-uid-<uid>`
 * (locked, expired, no shell, no home). Normally one, the highest; an older one is removed when a newer one is made,
 * unless a process still runs with its uid (a leftover someone runs), then it stays.
 */
export const UID_MARK_PREFIX = 'pamvault-uid-';
export const isUidMark = (name: string) => name.startsWith(UID_MARK_PREFIX);

/** systemd's dynamic users (DynamicUser=) and container uid ranges: never a one-time account's. */
const DYNAMIC_UIDS: ReadonlyArray<readonly [number, number]> = [
  [61184, 65519],
  [65534, 65534],
];

/** Whether `uid` may be given to, or revoked as, a one-time account: UID_MIN..UID_MAX, outside the dynamic ranges. */
export function oneTimeUidRange(uid: number, defs: LoginDefs): boolean {
  return uid >= defs.uidMin && uid <= defs.uidMax && !DYNAMIC_UIDS.some(([a, b]) => uid >= a && uid <= b);
}

/** Every passwd entry as [name, uid]. */
async function passwdEntries(shell: AdminShell): Promise<Array<[string, number]>> {
  const res = await shell.run('getent passwd | cut -d: -f1,3');
  if (res.code !== 0) throw new ConnectorError('TARGET_ERROR', 'the account list of the target could not be read (getent)');
  return res.stdout
    .split('\n')
    .map((l) => /^([^:]+):(\d+)$/.exec(l.trim()))
    .filter((m): m is RegExpExecArray => !!m)
    .map((m) => [m[1], Number(m[2])]);
}

/**
 * A uid for a new one-time account: above every uid any account of UID_MIN..UID_MAX has (the `pamvault-uid-<uid>`
 * marks included, which keep the highest uid a removed one-time account had), and that no group and no running process
 * uses. So uids of one-time accounts only ever grow: none is handed out twice, whatever files an earlier holder left.
 */
export async function freeUid(shell: AdminShell, defs: LoginDefs, from: number): Promise<number> {
  const accounts = await passwdEntries(shell);
  const groups = await shell.run('getent group | cut -d: -f3');
  if (groups.code !== 0) throw new ConnectorError('TARGET_ERROR', 'the group list of the target could not be read (getent)');
  const used = uidsInUse(await scanProcesses(shell));
  for (const line of groups.stdout.split('\n')) if (/^\d+$/.test(line.trim())) used.add(Number(line.trim()));
  let start = Math.max(from, defs.uidMin);
  for (const [, uid] of accounts) {
    used.add(uid);
    if (uid >= defs.uidMin && uid <= defs.uidMax) start = Math.max(start, uid + 1);
  }
  for (let uid = start; uid <= defs.uidMax; uid++) {
    if (!used.has(uid) && oneTimeUidRange(uid, defs)) return uid;
  }
  throw new ConnectorError('TARGET_ERROR', `no uid above the highest one given out (${start - 1}) is left below UID_MAX ${defs.uidMax} on the target`);
}

/** The accounts other than `except` that have `uid` (several names may share one). */
export async function namesWithUid(shell: AdminShell, uid: number, except: string): Promise<string[]> {
  return (await passwdEntries(shell)).filter(([name, u]) => u === uid && name !== except).map(([name]) => name);
}

/**
 * Records that `uid` was given to a one-time account, before that account is removed: unless a mark at or above it
 * exists, the account `pamvault-uid-<uid>` takes the uid (sharing it until the account is gone; `useradd -o`, which
 * does not care about running processes), then older marks are removed where userdel can. Fails (TARGET_ERROR) when
 * the mark cannot be made: then the account must stay (locked) rather than free its uid for reuse.
 */
export async function markUid(shell: AdminShell, uid: number): Promise<void> {
  const marks = (await passwdEntries(shell)).filter(([name]) => isUidMark(name));
  if (marks.some(([, u]) => u >= uid)) return;
  const name = `${UID_MARK_PREFIX}${uid}`;
  const res = await shell.sudo(`useradd -o -u ${uid} -M -N -d /nonexistent -s /usr/sbin/nologin -e 1 -c 'pam-vault - uid of a removed one-time account - never reused' -- ${name}`);
  if (res.code !== 0) {
    throw new ConnectorError('TARGET_ERROR', `the uid ${uid} could not be recorded as used (${name}, exit ${res.code}): ${res.stderr.trim().slice(0, 200)}; the account is kept, locked, so that its uid is not reused`);
  }
  // older marks: not needed any more (uids only grow); userdel refuses (8) while a process runs with one: kept then
  for (const [old] of marks) await shell.sudo(`userdel -- ${shQuote(old)}`);
}

/** The id of the session whose topmost session process is `root`: its pid and a digest of its start time and ids (a reused pid gets another id). */
export function sshSessionId(root: Pick<Proc, 'pid' | 'started' | 'ruid' | 'euid'>): string {
  const digest = createHash('sha256').update(`${root.started}|${root.ruid}|${root.euid}`).digest('hex').slice(0, 16);
  return `ssh-${root.pid}-${digest}`;
}

const MAX_PROCESSES = 50;

/** `ss -Htnp` (root only): the peer address of each process holding a TCP connection. */
function peersByPid(out: string): Map<number, string> {
  const peers = new Map<number, string>();
  for (const line of out.split('\n')) {
    const m = /^\S+\s+\d+\s+\d+\s+(\S+)\s+(\S+)\s+users:\((.*)\)\s*$/.exec(line);
    if (!m) continue;
    for (const pid of m[3].matchAll(/pid=(\d+)/g)) if (!peers.has(Number(pid[1]))) peers.set(Number(pid[1]), m[2]);
  }
  return peers;
}

/**
 * What a listing says about each session: when it started (from the target's own clock: now minus the root's elapsed
 * seconds, so the target's time zone does not matter), its terminal, its processes (titles bounded by the scan) and,
 * when the admin is root, the client address (`ss -p` needs root; a least-privilege admin gets null).
 */
export async function sessionDetails(shell: AdminShell, table: ProcessTable, username: string, sessions: SessionOfUser[]): Promise<TargetSession[]> {
  if (sessions.length === 0) return [];
  const roots = sessions.map((s) => s.root.pid);
  if (!roots.every((p) => Number.isSafeInteger(p) && p > 1)) throw new ConnectorError('TARGET_ERROR', 'refusing an invalid process id');
  const script = [`echo "now $(date +%s)"`, `ps -o pid=,etimes= -p ${roots.join(',')}`, ...(shell.privilege === 'root' ? ['echo --ss', 'ss -Htnp 2>/dev/null'] : []), 'exit 0'].join('\n');
  const out = (await shell.run(script)).stdout;
  const [procPart, ssPart = ''] = out.split('\n--ss\n');
  const now = Number(/^now (\d+)$/m.exec(procPart)?.[1]);
  const elapsed = new Map<number, number>();
  for (const m of procPart.matchAll(/^\s*(\d+)\s+(\d+)\s*$/gm)) elapsed.set(Number(m[1]), Number(m[2]));
  const peers = peersByPid(ssPart);
  return sessions.map((s) => {
    const age = elapsed.get(s.root.pid);
    const tty = s.login ? /@(\S+)\s*$/.exec(s.login.args)?.[1] : undefined;
    const first = s.login ? s.pids.map((pid) => table.procs.get(pid)).find((p) => p && p.ppid === s.login!.pid) : undefined;
    return {
      id: sshSessionId(s.root),
      username,
      kind: 'ssh' as const,
      clientAddress: s.pids.map((pid) => peers.get(pid)).find((a) => a !== undefined) ?? null,
      since: Number.isFinite(now) && age !== undefined ? new Date((now - age) * 1000).toISOString() : null,
      state: s.login ? 'active' : 'authenticating',
      tty: tty && tty !== 'notty' ? tty : null,
      command: first ? first.args.slice(0, 200) : null,
      processes: s.pids.slice(0, MAX_PROCESSES).map((pid) => ({ pid, command: table.procs.get(pid)?.args ?? '' })),
    };
  });
}

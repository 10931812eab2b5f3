import { ConnectorError } from '../connector.errors';
import { parseProcessTable, ProcessTable, SCAN_SCRIPT, uidsInUse } from './ssh-processes';
import { AdminShell, shQuote } from './ssh-session';

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
type Signal = Extract<NodeJS.Signals, `SIG${'STOP'}` | `SIG${'KILL'}`> extends `SIG${infer S}` ? S : never;

/** Sends a signal to processes through the privileged path (`kill`, the program). Processes gone meanwhile are fine. */
async function signal(shell: AdminShell, sig: Signal, pids: number[]): Promise<void> {
  for (let i = 0; i < pids.length; i += 200) {
    const batch = pids.slice(i, i + 200);
    if (!batch.every((p) => Number.isSafeInteger(p) && p > 1)) throw new ConnectorError('TARGET_ERROR', 'refusing to signal an invalid process id');
    const res = await shell.sudo(`kill -s ${sig} ${batch.join(' ')}`);
    // kill: 0 all signalled; 1 some were gone already ("No such process"). A refusal by sudo is a failure.
    if (res.code !== 0 && (res.code !== 1 || /^sudo:|not allowed|password/im.test(res.stderr) || !/No such process/.test(res.stderr))) {
      throw new ConnectorError('TARGET_ERROR', `kill -s ${sig} failed (exit ${res.code}): ${res.stderr.trim().slice(0, 200)}`);
    }
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Ends the processes `select` picks from the process table, so that none escapes by forking: each round takes a
 * snapshot and freezes (SIGSTOP) what it picks that is not frozen yet, until a snapshot picks nothing new; then all
 * get SIGKILL, and snapshots confirm that nothing picked is left.
 */
export async function endProcesses(shell: AdminShell, select: (t: ProcessTable) => number[], what: string): Promise<void> {
  const frozen = new Set<number>();
  for (let round = 0; round < 20; round++) {
    const fresh = select(await scanProcesses(shell)).filter((p) => !frozen.has(p));
    if (fresh.length === 0) break;
    await signal(shell, 'STOP', fresh);
    for (const p of fresh) frozen.add(p);
  }
  if (frozen.size) await signal(shell, 'KILL', [...frozen]);
  for (let attempt = 0; ; attempt++) {
    const left = select(await scanProcesses(shell));
    if (left.length === 0) return;
    if (attempt >= 20) throw new ConnectorError('TARGET_ERROR', `${left.length} process(es) of ${what} are still running after SIGKILL`);
    await signal(shell, 'KILL', left);
    await sleep(100);
  }
}

/**
 * A uid for a new account that no passwd or group entry names and no running process uses (UID_MIN..UID_MAX), so that
 * everything that will ever run with it was started by that account: the smallest such, at or above `from`.
 */
export async function freeUid(shell: AdminShell, defs: LoginDefs, from: number): Promise<number> {
  const res = await shell.run('getent passwd | cut -d: -f3; echo --; getent group | cut -d: -f3');
  if (res.code !== 0) throw new ConnectorError('TARGET_ERROR', 'the account list of the target could not be read (getent)');
  const used = uidsInUse(await scanProcesses(shell));
  for (const line of res.stdout.split('\n')) if (/^\d+$/.test(line.trim())) used.add(Number(line.trim()));
  for (let uid = Math.max(from, defs.uidMin); uid <= defs.uidMax; uid++) {
    if (!used.has(uid)) return uid;
  }
  throw new ConnectorError('TARGET_ERROR', `no free uid between ${defs.uidMin} and ${defs.uidMax} on the target`);
}

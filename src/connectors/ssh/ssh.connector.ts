import { DEFAULT_POOL_SETTINGS, PooledConnector, poolKeyOf } from '../admin-pool';
import { SSH_FORBIDDEN_GROUPS } from '../names';
import { ConnectorError } from '../connector.errors';
import {
  AccessInspection, CallOptions, Connector, ConnectorSupport, ConnectorTarget, DeleteUserRequest, EndSessionRequest, ListSessionsRequest, LoginRequest, NewUserRequest,
  NewUserResponse, SESSION_ID_PATTERNS, TargetSession, TerminateSessionsRequest, UpdatePasswordRequest, VerifyResult,
} from '../connector.interface';
import { probeCapabilities } from './ssh-capabilities';
import { processesToEnd, sameProcess, sessionsOf } from './ssh-processes';
import { endProcesses, freeUid, isUidMark, loginDefs, markUid, namesWithUid, oneTimeUidRange, scanProcesses, sessionDetails, sshSessionId, uidOf } from './ssh-remote';
import { SshLease, SshPool, SshPoolSettings } from './ssh-pool';
import { adminAuth, AdminShell, adminUid, normalizePin, shQuote, sshConnect, sshSession } from './ssh-session';

/**
 * Linux hosts over SSH (ssh2).
 * - Identity: nothing is sent to a target whose host key is not pinned (`options.hostKeySha256`) or differs from the
 *   pin (TARGET_HOST_KEY_UNPINNED / TARGET_HOST_KEY_MISMATCH, decided in key exchange, before authentication).
 *   {@link hostKey} reads the presented key without authenticating.
 * - Privilege: commands that need root run directly when the admin is root, else through sudo; the admin password
 *   reaches sudo only through an askpass program, never on a stream a command reads (see AdminShell).
 * - Names have passed a strict pattern and are single-quoted after `--`; passwords go to `chpasswd` on stdin.
 * - Ending sessions never kills every process of an account (see ssh-processes.ts for the exact rule); one-time
 *   accounts get a uid nothing else uses and no earlier one-time account had (uids only grow, the highest one of a
 *   removed account is kept by a locked account `pamvault-uid-<uid>`), so revoking may end everything running with it.
 * - Connections: the admin's are pooled per target and shared by concurrent calls, each on channels of its own
 *   (ssh-pool.ts); a login as an account (the proof a password works) and the host-key probe always connect afresh.
 */
export class SshConnector implements Connector, PooledConnector {
  readonly type = 'ssh' as const;
  readonly supports: ConnectorSupport = { accountExpiry: 'day', hostKey: true };
  /** The admin's connections by target; closed by ConnectorRegistry at shutdown. */
  readonly pool: SshPool;

  constructor(pool: SshPoolSettings = DEFAULT_POOL_SETTINGS) {
    this.pool = new SshPool(pool);
  }

  /** Closes every pooled admin connection (ConnectorRegistry, at shutdown). */
  closeAll(): Promise<void> {
    return this.pool.closeAll();
  }

  async hostKey(target: ConnectorTarget, opts?: CallOptions): Promise<string> {
    return sshSession(target, 'probe', opts);
  }

  async verify(target: ConnectorTarget, opts?: CallOptions): Promise<VerifyResult> {
    const probed = await this.asAdmin(target, opts, (shell) => probeCapabilities(shell, target.adminUsername));
    return { ok: true, hostKeySha256: normalizePin(target.options.hostKeySha256!), ...probed };
  }

  async isAdmin(target: ConnectorTarget, username: string, opts?: CallOptions): Promise<boolean> {
    return this.asAdmin(target, opts, async (shell) => (await uidOf(shell, username)) === shell.uid);
  }

  async inspectAccess(target: ConnectorTarget, access: AccessInspection, opts?: CallOptions): Promise<string[]> {
    const groups = [...new Set(access.groups ?? [])];
    if (groups.length === 0) return [];
    return this.asAdmin(target, opts, async (shell) => {
      const { gidMin } = await loginDefs(shell);
      // getent: 0 all found, 2 some not found; one `name:x:gid:members` line per group found
      const res = await shell.run(`getent group -- ${groups.map(shQuote).join(' ')}; exit 0`);
      const gids = new Map<string, number>();
      for (const line of res.stdout.split('\n')) {
        const [name, , gid] = line.split(':');
        if (name && /^\d+$/.test(gid ?? '')) gids.set(name, Number(gid));
      }
      const refusals: string[] = [];
      for (const g of groups) {
        const gid = gids.get(g);
        if ((SSH_FORBIDDEN_GROUPS as readonly string[]).includes(g)) refusals.push(`group ${g}: root-equivalent or reads secrets and logs, never given to a one-time account`);
        else if (gid === undefined) refusals.push(`group ${g}: does not exist on the target`);
        else if (gid < gidMin) refusals.push(`group ${g}: a system group (gid ${gid}, below GID_MIN ${gidMin})`);
      }
      return refusals;
    });
  }

  async updatePassword(target: ConnectorTarget, account: UpdatePasswordRequest, opts?: CallOptions): Promise<void> {
    await this.asAdmin(target, opts, async (shell, lease) => {
      const uid = await uidOf(shell, account.username);
      if (uid === undefined) throw new ConnectorError('TARGET_ERROR', `user ${account.username} does not exist on the target`);
      // the admin's own password (under any of its names): the connection was opened with the old one and is not kept
      // (a reused one would hide that the stored admin password no longer works)
      if (uid === shell.uid) lease.retire();
      await shell.mustSudo('chpasswd', `${account.username}:${account.password}\n`, 'chpasswd failed');
    });
  }

  async login(target: ConnectorTarget, account: LoginRequest, opts?: CallOptions): Promise<void> {
    await sshSession(target, { username: account.username, password: account.password }, opts, async () => undefined);
  }

  /** `validUntil` has day granularity: the account expires at the start of the UTC day after it (see {@link expiryDate}). */
  async newUser(target: ConnectorTarget, account: NewUserRequest, opts?: CallOptions): Promise<NewUserResponse> {
    const { access } = account;
    // the backstop: the account expires on the target by itself, should the vault be down at expiry
    const expiresOn = account.validUntil ? expiryDate(account.validUntil) : undefined;
    await this.asAdmin(target, opts, async (shell) => {
      const groups = access.groups?.length ? ` -G ${shQuote(access.groups.join(','))}` : '';
      const expires = expiresOn ? ` -e ${shQuote(expiresOn)}` : '';
      const defs = await loginDefs(shell);
      // A uid above every account's (pamvault-uid-<uid> keeps the highest a removed one-time account had), that no group
      // and no process uses: an earlier user's leftover processes or files (a setuid shell) never become this
      // account's. useradd exits 4 when another writer took it meanwhile.
      let uid = defs.uidMin;
      for (let attempt = 1; ; attempt++) {
        uid = await freeUid(shell, defs, uid);
        const res = await shell.sudo(`useradd -m -s /bin/bash -u ${uid}${groups}${expires} -- ${shQuote(account.username)}`);
        if (res.code === 0) break;
        if (res.code === 9) throw new ConnectorError('TARGET_ERROR', `useradd failed: user ${account.username} already exists on the target`);
        if (res.code !== 4 || attempt >= 5) throw new ConnectorError('TARGET_ERROR', `useradd failed (exit ${res.code}): ${res.stderr.trim().slice(0, 200)}`);
        uid++;
      }
      await shell.mustSudo('chpasswd', `${account.username}:${account.password}\n`, 'chpasswd failed');
    });
    return { expiresOnTarget: expiresOn ? new Date(`${expiresOn}T00:00:00Z`) : null };
  }

  async deleteUser(target: ConnectorTarget, { username }: DeleteUserRequest, opts?: CallOptions): Promise<void> {
    const user = shQuote(username);
    await this.asAdmin(target, opts, async (shell) => {
      const uid = await uidOf(shell, username);
      if (uid === undefined) return; // already gone
      const defs = await loginDefs(shell);
      if (uid === 0 || uid === shell.uid || !oneTimeUidRange(uid, defs) || isUidMark(username)) {
        throw new ConnectorError(
          'TARGET_INVALID_NAME',
          `${username} is the administrator, a system account or not in the range of one-time accounts (uid ${uid}; UID_MIN ${defs.uidMin}, UID_MAX ${defs.uidMax}, systemd dynamic uids excluded): never revoked as a one-time account`,
        );
      }
      // everything running with the uid is ended below: only when no other account has it
      const sharing = (await namesWithUid(shell, uid, username)).filter((n) => !isUidMark(n));
      if (sharing.length) throw new ConnectorError('TARGET_INVALID_NAME', `the uid ${uid} of ${username} is also the uid of ${sharing.slice(0, 3).join(', ')}: not a one-time account of the vault, never revoked`);
      // First no new login, whatever happens next: expired since 1970-01-02 and password locked.
      // usermod: 0 done; 6 no such user (already gone). Anything else (e.g. 1/10: passwd or group file locked by
      // another writer) is retried, and if it keeps failing userdel below still decides whether the revoke worked.
      let lock = await shell.sudo(`usermod -e 1 -L -- ${user}`);
      for (let attempt = 1; attempt < 5 && lock.code !== 0 && lock.code !== 6; attempt++) {
        await sleep(100);
        lock = await shell.sudo(`usermod -e 1 -L -- ${user}`);
      }
      // the uid is never handed out again, even once the account is gone (files it left may remain)
      await markUid(shell, uid);
      let last: Awaited<ReturnType<AdminShell['sudo']>> | undefined;
      for (let attempt = 0; attempt < 10; attempt++) {
        if (attempt > 0) await sleep(200);
        // the uid was free when the account was made: everything running with it is the account's (ended as that uid)
        await endProcesses(shell, (t) => processesToEnd(t, username, uid, uid), `${username}`, uid);
        last = await shell.sudo(`userdel -r -- ${user}`);
        // 0: removed; 6: no such user (already gone)
        if (last.code === 0 || last.code === 6) return;
        // 12: the user was removed but its home dir could not be (missing, or not its own): gone is what counts
        if (last.code === 12 && (await uidOf(shell, username)) === undefined) return;
        // 8: still logged in (the killed processes are exiting); 1/10: passwd or group file locked: try again
      }
      const lockNote = lock.code === 0 || lock.code === 6 ? '' : `; the account could not be expired either (usermod exit ${lock.code})`;
      throw new ConnectorError('TARGET_ERROR', `userdel of ${username} kept failing (exit ${last?.code}): ${last?.stderr.trim().slice(0, 200)}${lockNote}`);
    });
  }

  async terminateSessions(target: ConnectorTarget, { username }: TerminateSessionsRequest, opts?: CallOptions): Promise<void> {
    await this.asAdmin(target, opts, async (shell) => {
      const uid = await uidOf(shell, username);
      await endProcesses(shell, (t) => processesToEnd(t, username, uid), `the sessions of ${username}`);
    });
  }

  /** The account's login sessions by INVARIANT 18's rule (ssh-processes.ts `sessionsOf`), never the admin's own. */
  async listSessions(target: ConnectorTarget, { username }: ListSessionsRequest, opts?: CallOptions): Promise<TargetSession[]> {
    return this.asAdmin(target, opts, async (shell) => {
      const uid = await uidOf(shell, username);
      if (uid === shell.uid) return []; // another name of the admin: never listed
      const table = await scanProcesses(shell);
      return sessionDetails(shell, table, username, sessionsOf(table, username, uid));
    });
  }

  /**
   * Ends one session: read again, it must still be a session of `username` whose topmost process has this id (pid and
   * start digest); then exactly what terminateSessions would end for that session alone (the same rule and code path).
   */
  async endSession(target: ConnectorTarget, { username, sessionId }: EndSessionRequest, opts?: CallOptions): Promise<boolean> {
    const m = SESSION_ID_PATTERNS.ssh.exec(sessionId);
    if (!m) return false;
    return this.asAdmin(target, opts, async (shell) => {
      const uid = await uidOf(shell, username);
      if (uid === shell.uid) return false;
      const table = await scanProcesses(shell);
      const session = sessionsOf(table, username, uid).find((s) => sshSessionId(s.root) === sessionId);
      if (!session) return false;
      const root = session.root;
      await endProcesses(shell, (t) => (sameProcess(root, t.procs.get(root.pid)) ? processesToEnd(t, username, uid, undefined, root) : []), `session ${sessionId} of ${username}`);
      return true;
    });
  }

  /**
   * Runs `work` as the admin on a pooled connection (ssh-pool.ts), reused only under the same address, admin user,
   * admin password / key / passphrase and host-key pin (poolKeyOf's fingerprint); a new one is verified against the pin
   * before anything is sent. The admin's uid is read once per connection.
   */
  private asAdmin<T>(target: ConnectorTarget, opts: CallOptions | undefined, work: (shell: AdminShell, lease: SshLease) => Promise<T>): Promise<T> {
    const open = (signal: AbortSignal, timeoutMs: number) => sshConnect(target, adminAuth(target), { signal, timeoutMs });
    return this.pool.use(poolKeyOf(target, undefined), open, opts, async (lease) => {
      let uid = lease.memo.get('uid') as number | undefined;
      if (uid === undefined) lease.memo.set('uid', (uid = await adminUid(lease.channels)));
      return work(await AdminShell.open(lease.channels, target, uid), lease);
    });
  }
}

const DAY_MS = 86_400_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The `useradd -e` date for an account that must work until at least `validUntil`: the UTC day after it
 * (shadow expiry is a day count; PAM refuses the account from the start of that UTC day). Strictly checked,
 * since it is put on a command line: YYYY-MM-DD that is exactly that day.
 */
function expiryDate(validUntil: Date): string {
  const t = validUntil instanceof Date ? validUntil.getTime() : NaN;
  if (!Number.isFinite(t) || t < 0) throw new ConnectorError('TARGET_INVALID_NAME', 'validUntil is not a valid date');
  const day = Math.floor(t / DAY_MS) + 1;
  const text = new Date(day * DAY_MS).toISOString().slice(0, 10);
  if (!/^[0-9]{4}-[0-9]{2}-[0-9]{2}$/.test(text) || Date.parse(`${text}T00:00:00Z`) !== day * DAY_MS) {
    throw new ConnectorError('TARGET_INVALID_NAME', 'validUntil is out of the range an SSH account expiry can hold');
  }
  return text;
}

import { createHash } from 'node:crypto';
import { Client, ConnectConfig } from 'ssh2';
import { ConnectorError } from '../connector.errors';
import { AccountCredential, CallOptions, Connector, ConnectorTarget, EphemeralAccess, VerifyResult } from '../connector.interface';

/** POSIX single-quoting: the argument reaches the command as one word, whatever it holds. */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** OpenSSH's SHA256 fingerprint of a host key blob: base64 without padding. */
export function hostKeyFingerprint(key: Buffer): string {
  return createHash('sha256').update(key).digest('base64').replace(/=+$/, '');
}

interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Linux hosts over SSH (ssh2). The host key is pinned (`options.hostKeySha256`; without a pin the presented
 * key is reported by verify so the vault can record it). Passwords go to `chpasswd` on stdin, never on a
 * command line; every name has passed a strict pattern and is single-quoted after `--`. With `options.sudo`
 * the admin runs commands through sudo (its password, if any, on stdin too).
 */
export class SshConnector implements Connector {
  readonly type = 'ssh' as const;

  async verify(target: ConnectorTarget, opts?: CallOptions): Promise<VerifyResult> {
    let presented: string | undefined;
    const result = await this.session(target, adminAuth(target), opts, async (conn) => {
      const id = await this.exec(conn, target, 'id -u', '', false);
      if (id.stdout.trim() !== '0' && !target.options.sudo) {
        throw new ConnectorError('TARGET_ERROR', 'the admin user is not root: set options.sudo to true to run through sudo');
      }
      if (target.options.sudo) {
        const check = await this.exec(conn, target, 'true', '', true);
        if (check.code !== 0) throw new ConnectorError('TARGET_AUTH_FAILED', 'sudo refused the admin user');
      }
      const uname = await this.exec(conn, target, 'uname -sr', '', false);
      return uname.stdout.trim();
    }, (fp) => (presented = fp));
    return { ok: true, serverVersion: result, hostKeySha256: presented, capabilities: [] };
  }

  // TODO(issue 11): replaced by the real catalog check and identity check
  async inspectAccess(): Promise<string[]> {
    throw new ConnectorError('TARGET_ERROR', 'inspectAccess is not implemented yet');
  }

  async isAdmin(): Promise<boolean> {
    throw new ConnectorError('TARGET_ERROR', 'isAdmin is not implemented yet');
  }

  async rotate(target: ConnectorTarget, account: AccountCredential, opts?: CallOptions): Promise<void> {
    await this.asAdmin(target, opts, async (conn) => {
      await this.mustSucceed(conn, target, `id -u -- ${shQuote(account.username)}`, '', false, `user ${account.username} does not exist on the target`);
      await this.mustSucceed(conn, target, 'chpasswd', `${account.username}:${account.password}\n`, true, 'chpasswd failed');
    });
  }

  async login(target: ConnectorTarget, account: AccountCredential, opts?: CallOptions): Promise<void> {
    await this.session(target, { username: account.username, password: account.password }, opts, async () => undefined);
  }

  async createEphemeral(target: ConnectorTarget, account: AccountCredential, access: EphemeralAccess, opts?: CallOptions): Promise<void> {
    await this.asAdmin(target, opts, async (conn) => {
      const groups = access.groups?.length ? ` -G ${shQuote(access.groups.join(','))}` : '';
      // the backstop: the account expires on the target by itself, should the vault be down at expiry
      const expires = access.validUntil ? ` -e ${shQuote(expiryDate(access.validUntil))}` : '';
      await this.mustSucceed(conn, target, `useradd -m -s /bin/bash${groups}${expires} -- ${shQuote(account.username)}`, '', true, 'useradd failed');
      await this.mustSucceed(conn, target, 'chpasswd', `${account.username}:${account.password}\n`, true, 'chpasswd failed');
    });
  }

  async revokeEphemeral(target: ConnectorTarget, username: string, opts?: CallOptions): Promise<void> {
    const user = shQuote(username);
    await this.asAdmin(target, opts, async (conn) => {
      // First no new login, whatever happens next: expired since 1970-01-02 and password locked.
      // usermod: 0 done; 6 no such user (already gone). Anything else (e.g. 1/10: passwd or group file locked by
      // another writer) is retried, and if it keeps failing userdel below still decides whether the revoke worked.
      let lock = await this.exec(conn, target, `usermod -e 1 -L -- ${user}`, '', true);
      for (let attempt = 1; attempt < 5 && lock.code !== 0 && lock.code !== 6; attempt++) {
        await sleep(100);
        lock = await this.exec(conn, target, `usermod -e 1 -L -- ${user}`, '', true);
      }
      let last: ExecResult | undefined;
      for (let attempt = 0; attempt < 10; attempt++) {
        if (attempt > 0) await sleep(200);
        // pkill: 0 killed some, 1 none, 2 no such user: all fine here, userdel tells what matters
        await this.exec(conn, target, `pkill -KILL -u ${user}`, '', true);
        last = await this.exec(conn, target, `userdel -r -- ${user}`, '', true);
        // 0: removed; 6: no such user (already gone)
        if (last.code === 0 || last.code === 6) return;
        // 12: the user was removed but its home dir could not be (missing, or not its own): gone is what counts
        if (last.code === 12 && !(await this.userExists(conn, target, username))) return;
        // 8: still logged in (the killed processes are exiting); 1/10: passwd or group file locked: try again
      }
      const lockNote = lock.code === 0 || lock.code === 6 ? '' : `; the account could not be expired either (usermod exit ${lock.code})`;
      throw new ConnectorError('TARGET_ERROR', `userdel of ${username} kept failing (exit ${last?.code}): ${last?.stderr.trim().slice(0, 200)}${lockNote}`);
    });
  }

  async terminateSessions(target: ConnectorTarget, username: string, opts?: CallOptions): Promise<void> {
    await this.asAdmin(target, opts, async (conn) => {
      const res = await this.exec(conn, target, `pkill -KILL -u ${shQuote(username)}`, '', true);
      // 0: killed some; 1: there were none
      if (res.code !== 0 && res.code !== 1) throw new ConnectorError('TARGET_ERROR', `pkill exited with ${res.code}`);
    });
  }

  /** `getent passwd`: 0 found, 2 not found (anything else: unknown, so reported as existing). */
  private async userExists(conn: Client, target: ConnectorTarget, username: string): Promise<boolean> {
    const res = await this.exec(conn, target, `getent passwd -- ${shQuote(username)}`, '', false);
    return res.code !== 2;
  }

  private asAdmin<T>(target: ConnectorTarget, opts: CallOptions | undefined, work: (c: Client) => Promise<T>): Promise<T> {
    return this.session(target, adminAuth(target), opts, work);
  }

  private async mustSucceed(conn: Client, target: ConnectorTarget, command: string, stdin: string, privileged: boolean, what: string): Promise<ExecResult> {
    const res = await this.exec(conn, target, command, stdin, privileged);
    if (res.code !== 0) throw new ConnectorError('TARGET_ERROR', `${what} (exit ${res.code}): ${res.stderr.trim().slice(0, 200)}`);
    return res;
  }

  /** Runs one command; `privileged` adds sudo when the target asks for it (its password first on stdin). */
  private exec(conn: Client, target: ConnectorTarget, command: string, stdin: string, privileged: boolean): Promise<ExecResult> {
    let full = command;
    let input = stdin;
    if (privileged && target.options.sudo) {
      if (target.adminPassword) {
        full = `sudo -S -p '' -- ${command}`;
        input = `${target.adminPassword}\n${stdin}`;
      } else {
        full = `sudo -n -- ${command}`;
      }
    }
    return new Promise((resolve, reject) => {
      conn.exec(full, (err, stream) => {
        if (err) return reject(err);
        let stdout = '';
        let stderr = '';
        stream.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
        stream.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
        stream.on('close', (code: number | null) => resolve({ code, stdout, stderr }));
        stream.end(input);
      });
    });
  }

  private session<T>(
    target: ConnectorTarget,
    auth: Pick<ConnectConfig, 'username' | 'password' | 'privateKey' | 'passphrase'>,
    opts: CallOptions | undefined,
    work: (c: Client) => Promise<T>,
    onHostKey?: (fingerprint: string) => void,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const conn = new Client();
      let hostKeyRefused = false;
      let settled = false;
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        opts?.signal?.removeEventListener('abort', onAbort);
        conn.end();
        fn();
      };
      const onAbort = () => finish(() => reject(new ConnectorError('TARGET_TIMEOUT', 'the SSH call was aborted')));
      opts?.signal?.addEventListener('abort', onAbort, { once: true });
      // The server may end the connection without an error: sshd with PAM does so for an expired or otherwise
      // refused account (a banner "Your account has expired…", then close), after the password was accepted.
      let handshaken = false;
      let ready = false;
      let banner = '';
      conn.on('handshake', () => (handshaken = true));
      conn.on('banner', (message: string) => (banner = message.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim().slice(0, 120)));
      conn.on('close', () => {
        finish(() => {
          if (hostKeyRefused) reject(new ConnectorError('TARGET_HOST_KEY_MISMATCH', `the host key of ${target.host} does not match the pinned one`));
          else if (ready) reject(new ConnectorError('TARGET_ERROR', `${target.host}:${target.port} closed the SSH connection`));
          else if (handshaken) reject(new ConnectorError('TARGET_AUTH_FAILED', `SSH closed the login of ${auth.username}${banner ? ` (${banner})` : ' (refused by the account policy, e.g. expired)'}`));
          else reject(new ConnectorError('TARGET_ERROR', `${target.host}:${target.port} closed the connection before the SSH handshake`));
        });
      });
      conn.on('ready', () => {
        ready = true;
        work(conn).then(
          (v) => finish(() => resolve(v)),
          (e) => finish(() => reject(e)),
        );
      });
      conn.on('error', (e: Error & { level?: string }) => {
        finish(() => {
          if (hostKeyRefused) reject(new ConnectorError('TARGET_HOST_KEY_MISMATCH', `the host key of ${target.host} does not match the pinned one`));
          else if (e.level === 'client-authentication') reject(new ConnectorError('TARGET_AUTH_FAILED', `SSH refused the login of ${auth.username}`));
          else if (e.level === 'client-timeout') reject(new ConnectorError('TARGET_TIMEOUT', `no SSH handshake from ${target.host}:${target.port}`));
          else reject(e);
        });
      });
      conn.connect({
        host: target.host,
        port: target.port,
        ...auth,
        readyTimeout: opts?.timeoutMs ?? 15_000,
        tryKeyboard: false,
        hostVerifier: (key: Buffer) => {
          const fp = hostKeyFingerprint(key);
          onHostKey?.(fp);
          const pin = target.options.hostKeySha256;
          if (pin && pin !== fp) {
            hostKeyRefused = true;
            return false;
          }
          return true;
        },
      });
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
export function expiryDate(validUntil: Date): string {
  const t = validUntil instanceof Date ? validUntil.getTime() : NaN;
  if (!Number.isFinite(t) || t < 0) throw new ConnectorError('TARGET_INVALID_NAME', 'validUntil is not a valid date');
  const day = Math.floor(t / DAY_MS) + 1;
  const text = new Date(day * DAY_MS).toISOString().slice(0, 10);
  if (!/^[0-9]{4}-[0-9]{2}-[0-9]{2}$/.test(text) || Date.parse(`${text}T00:00:00Z`) !== day * DAY_MS) {
    throw new ConnectorError('TARGET_INVALID_NAME', 'validUntil is out of the range an SSH account expiry can hold');
  }
  return text;
}

function adminAuth(target: ConnectorTarget): Pick<ConnectConfig, 'username' | 'password' | 'privateKey' | 'passphrase'> {
  return target.adminPrivateKey
    ? { username: target.adminUsername, privateKey: target.adminPrivateKey, passphrase: target.adminPassphrase }
    : { username: target.adminUsername, password: target.adminPassword };
}

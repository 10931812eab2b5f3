import { createHash } from 'node:crypto';
import { Client, ClientChannel, ConnectConfig } from 'ssh2';
import { ConnectorError } from '../connector.errors';
import { CallOptions, ConnectorTarget } from '../connector.interface';

/** POSIX single-quoting: the argument reaches the command as one word, whatever it holds. */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** OpenSSH's SHA256 fingerprint of a host key blob: base64 without padding. */
function hostKeyFingerprint(key: Buffer): string {
  return createHash('sha256').update(key).digest('base64').replace(/=+$/, '');
}

/** A pin as stored (`SHA256:` prefix and padding optional) in the form {@link hostKeyFingerprint} gives. */
export function normalizePin(pin: string): string {
  return pin.replace(/^SHA256:/, '').replace(/=+$/, '');
}

export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The PATH every script runs with (sudo's Debian secure_path): sbin tools resolve for a non-root admin too. */
const SCRIPT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The most output (stdout and stderr together) one script may return: beyond it the call fails (TARGET_ERROR). */
const MAX_OUTPUT_BYTES = 16 * 1024 * 1024;

/**
 * Where a call's commands run: a channel (`exec`) of an SSH connection — the connection itself, or a pooled one's
 * channels counted for the call (ssh-pool.ts).
 */
export interface Channels {
  exec(command: string, callback: (err: Error | undefined, stream: ClientChannel) => void): unknown;
}

/** Runs one POSIX sh script (whatever the login shell is), its input on stdin; fails cleanly past {@link MAX_OUTPUT_BYTES}. */
export function execScript(conn: Channels, script: string, stdin = '', maxBytes = MAX_OUTPUT_BYTES): Promise<ExecResult> {
  const command = `/bin/sh -c ${shQuote(`PATH=${SCRIPT_PATH}; export PATH; LC_ALL=C; export LC_ALL\n${script}`)}`;
  return new Promise((resolve, reject) => {
    conn.exec(command, (err, stream) => {
      if (err) return reject(err);
      const out: Buffer[] = [];
      const errs: Buffer[] = [];
      let bytes = 0;
      let overflow = false;
      const take = (into: Buffer[]) => (d: Buffer) => {
        if (overflow) return;
        bytes += d.length;
        if (bytes > maxBytes) {
          overflow = true;
          out.length = errs.length = 0;
          stream.close();
          return;
        }
        into.push(d);
      };
      stream.on('data', take(out));
      stream.stderr.on('data', take(errs));
      stream.on('close', (code: number | null) => {
        if (overflow) reject(new ConnectorError('TARGET_ERROR', `a command on the target returned more than ${maxBytes} bytes: refused`));
        else resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(errs).toString('utf8') });
      });
      stream.end(stdin);
    });
  });
}

export type Privilege = 'root' | 'sudo';

/**
 * The admin's shell on the target: runs scripts as the admin, and privileged commands as root — directly when the
 * admin is root, else through sudo. With a stored admin password, sudo gets it only from an askpass program
 * (`SUDO_ASKPASS=/usr/bin/printenv`, prompt = the variable's name): the remote shell reads the first stdin line
 * into VAULT_SUDO_PW with the `read` builtin (byte by byte, so the rest of stdin stays for the command), and sudo
 * runs printenv only if it actually asks; env_reset keeps the variable out of the command's environment. So the
 * password is never on a stream the command reads as data (a NOPASSWD sudo never sees it at all). Without a stored
 * password: `sudo -n` (fails instead of prompting).
 */
export class AdminShell {
  constructor(
    readonly conn: Channels,
    private readonly target: ConnectorTarget,
    readonly privilege: Privilege,
    /** The admin's own uid. */
    readonly uid: number,
  ) {}

  /** Whether an admin password is stored (sudo may then ask for it through the askpass program). */
  get hasPassword(): boolean {
    return !!this.target.adminPassword;
  }

  /**
   * Opens the admin's shell on a connection: asks for its uid to know whether sudo is needed — once per connection when
   * `uid` is given (what an earlier call on the same authenticated connection read: it cannot change).
   */
  static async open(conn: Channels, target: ConnectorTarget, uid?: number): Promise<AdminShell> {
    if (uid === undefined) uid = await adminUid(conn);
    return new AdminShell(conn, target, uid === 0 ? 'root' : 'sudo', uid);
  }

  /** Runs a script as the admin, unprivileged. */
  run(script: string, stdin = ''): Promise<ExecResult> {
    return execScript(this.conn, script, stdin);
  }

  /**
   * Runs one command as root. `command` is a command line whose every part is a fixed word or already quoted;
   * `sudoArgs` go before `--` (e.g. `-l` to ask whether a command would be allowed, running nothing).
   */
  sudo(command: string, stdin = '', sudoArgs = ''): Promise<ExecResult> {
    if (this.privilege === 'root') return execScript(this.conn, `exec ${command}`, stdin);
    const args = [sudoArgs, command ? `-- ${command}` : ''].filter(Boolean).join(' ');
    if (!this.target.adminPassword) return execScript(this.conn, `exec sudo -n ${args}`, stdin);
    return execScript(
      this.conn,
      `IFS= read -r VAULT_SUDO_PW || exit 97\nexport VAULT_SUDO_PW\nSUDO_ASKPASS=/usr/bin/printenv exec sudo -A -p VAULT_SUDO_PW ${args}`,
      `${this.target.adminPassword}\n${stdin}`,
    );
  }

  /**
   * Runs one command as the (non-root) user with uid `uid` — so the kernel, not the vault, decides what it may
   * touch: `kill` as the uid signals only processes of that uid, whatever became of a pid meanwhile. Through sudo
   * (`sudo -u '#uid'`: the admin needs `(ALL)` as run-as list for that command), or as root with `setpriv`.
   */
  sudoAs(uid: number, command: string, stdin = ''): Promise<ExecResult> {
    if (!Number.isSafeInteger(uid) || uid <= 0) throw new ConnectorError('TARGET_ERROR', 'refusing to run a command as an invalid uid');
    if (this.privilege === 'root') return execScript(this.conn, `exec setpriv --reuid=${uid} --regid=65534 --clear-groups -- ${command}`, stdin);
    return this.sudo(command, stdin, `-u '#${uid}'`);
  }

  /** Asks sudo whether the admin may run `path` (`sudo -l <path>`; with `asUid`, as that uid): runs nothing. True for root. */
  async allowed(path: string, passwordless = false, asUid?: number): Promise<boolean> {
    if (this.privilege === 'root') return true;
    const runas = asUid === undefined ? '' : ` -u '#${asUid}'`;
    const res = passwordless ? await execScript(this.conn, `exec sudo -n -l${runas} -- ${shQuote(path)}`) : await this.sudo(shQuote(path), '', `-l${runas}`);
    return res.code === 0;
  }

  /** Like {@link sudo}, and a non-zero exit becomes a TARGET_ERROR naming `what` (with the command's stderr, never its input). */
  async mustSudo(command: string, stdin: string, what: string): Promise<ExecResult> {
    const res = await this.sudo(command, stdin);
    if (res.code !== 0) throw new ConnectorError('TARGET_ERROR', `${what} (exit ${res.code}): ${res.stderr.trim().slice(0, 200)}`);
    return res;
  }
}

/** The uid the connection's login has (`id -u`). */
export async function adminUid(conn: Channels): Promise<number> {
  const id = await execScript(conn, 'id -u');
  if (id.code !== 0 || !/^\d+$/.test(id.stdout.trim())) throw new ConnectorError('TARGET_ERROR', 'the admin user\'s uid could not be read on the target (id -u)');
  return Number(id.stdout.trim());
}

type Auth = Pick<ConnectConfig, 'username' | 'password' | 'privateKey' | 'passphrase'>;

export function adminAuth(target: ConnectorTarget): Auth {
  return target.adminPrivateKey
    ? { username: target.adminUsername, privateKey: target.adminPrivateKey, passphrase: target.adminPassphrase }
    : { username: target.adminUsername, password: target.adminPassword };
}

const hostKeyMismatch = (target: ConnectorTarget) => new ConnectorError('TARGET_HOST_KEY_MISMATCH', `the host key of ${target.host}:${target.port} does not match the pinned one`);
const hostKeyUnpinned = (target: ConnectorTarget) =>
  new ConnectorError('TARGET_HOST_KEY_UNPINNED', `no host key is pinned for ${target.host}:${target.port}: read it (hostKey), confirm it out of band and pin it before any credential is sent`);

/**
 * Connects, checks the host key against the pin BEFORE any authentication (no pin, or a different key: the connection
 * is dropped in key exchange, nothing is sent), authenticates, runs `work`, and disconnects.
 * `auth: 'probe'` only reads the presented key: it resolves to its fingerprint without ever authenticating.
 */
export function sshSession<T>(target: ConnectorTarget, auth: Auth, opts: CallOptions | undefined, work: (c: Client) => Promise<T>): Promise<T>;
export function sshSession(target: ConnectorTarget, auth: 'probe', opts: CallOptions | undefined): Promise<string>;
export async function sshSession<T>(target: ConnectorTarget, auth: Auth | 'probe', opts: CallOptions | undefined, work?: (c: Client) => Promise<T>): Promise<T | string> {
  if (auth === 'probe') return sshConnect(target, 'probe', opts);
  const conn = await sshConnect(target, auth, opts);
  let onAbort: (() => void) | undefined;
  try {
    return await new Promise<T>((resolve, reject) => {
      onAbort = () => reject(new ConnectorError('TARGET_TIMEOUT', 'the SSH call was aborted'));
      if (opts?.signal?.aborted) return onAbort();
      opts?.signal?.addEventListener('abort', onAbort, { once: true });
      // the server ending the connection while `work` waits on it (its commands' channels close with it)
      conn.once('close', () => reject(new ConnectorError('TARGET_ERROR', `${target.host}:${target.port} closed the SSH connection`)));
      work!(conn).then(resolve, reject);
    });
  } finally {
    if (onAbort) opts?.signal?.removeEventListener('abort', onAbort);
    conn.end();
  }
}

/**
 * Opens an authenticated SSH connection (the admin's for the pool, ssh-pool.ts; an account's for a login): checks the
 * host key against the pin BEFORE any authentication, as {@link sshSession} says, and resolves once the server accepted
 * the login. The connection keeps an 'error' listener (ssh2 would throw without one); the caller ends it.
 * The abort signal counts only until then.
 */
export function sshConnect(target: ConnectorTarget, auth: Auth, opts: CallOptions | undefined): Promise<Client>;
export function sshConnect(target: ConnectorTarget, auth: 'probe', opts: CallOptions | undefined): Promise<string>;
export function sshConnect(target: ConnectorTarget, auth: Auth | 'probe', opts: CallOptions | undefined): Promise<Client | string> {
  const probe = auth === 'probe';
  const pin = target.options.hostKeySha256 ? normalizePin(target.options.hostKeySha256) : undefined;
  return new Promise<Client | string>((resolve, reject) => {
    const conn = new Client();
    let refused: 'mismatch' | 'unpinned' | undefined;
    let presented: string | undefined;
    let settled = false;
    const finish = (fn: () => void, keep = false) => {
      if (settled) return;
      settled = true;
      opts?.signal?.removeEventListener('abort', onAbort);
      if (!keep) conn.end();
      fn();
    };
    const onAbort = () => finish(() => reject(new ConnectorError('TARGET_TIMEOUT', 'the SSH call was aborted')));
    if (opts?.signal?.aborted) return onAbort();
    opts?.signal?.addEventListener('abort', onAbort, { once: true });
    const refusal = (): Error | undefined => {
      if (probe && presented) return undefined;
      if (refused === 'mismatch') return hostKeyMismatch(target);
      if (refused === 'unpinned') return hostKeyUnpinned(target);
      return undefined;
    };
    // The server may end the connection without an error: sshd with PAM does so for an expired or otherwise
    // refused account (a banner "Your account has expired…", then close), after the password was accepted.
    let handshaken = false;
    let banner = '';
    const username = probe ? 'hostkey-probe' : auth.username;
    conn.on('handshake', () => (handshaken = true));
    conn.on('banner', (message: string) => (banner = message.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim().slice(0, 120)));
    conn.on('close', () => {
      finish(() => {
        if (probe && presented) return resolve(presented);
        const r = refusal();
        if (r) reject(r);
        else if (handshaken) reject(new ConnectorError('TARGET_AUTH_FAILED', `SSH closed the login of ${username}${banner ? ` (${banner})` : ' (refused by the account policy, e.g. expired)'}`));
        else reject(new ConnectorError('TARGET_ERROR', `${target.host}:${target.port} closed the connection before the SSH handshake`));
      });
    });
    conn.on('ready', () => {
      if (probe) return finish(() => reject(new ConnectorError('TARGET_ERROR', 'the host key probe authenticated')));
      finish(() => resolve(conn), true);
    });
    conn.on('error', (e: Error & { level?: string }) => {
      finish(() => {
        if (probe && presented) return resolve(presented);
        const r = refusal();
        if (r) reject(r);
        else if (e.level === 'client-authentication') reject(new ConnectorError('TARGET_AUTH_FAILED', `SSH refused the login of ${username}`));
        else if (e.level === 'client-timeout') reject(new ConnectorError('TARGET_TIMEOUT', `no SSH handshake from ${target.host}:${target.port}`));
        else reject(e);
      });
    });
    conn.connect({
      host: target.host,
      port: target.port,
      ...(probe ? { username } : auth),
      readyTimeout: opts?.timeoutMs ?? 15_000,
      tryKeyboard: false,
      // runs in key exchange, before ssh2 sends any authentication request: refusing here sends nothing
      hostVerifier: (key: Buffer) => {
        presented = hostKeyFingerprint(key);
        if (probe) return false;
        if (!pin) refused = 'unpinned';
        else if (pin !== presented) refused = 'mismatch';
        return refused === undefined;
      },
    });
  });
}

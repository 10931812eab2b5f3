import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, ConnectConfig } from 'ssh2';
import { ConnectorError } from '../../../src/connectors/connector.errors';
import { freePort } from '../process';
import { assertTestName, run, runRaw, sleep } from './run';

/**
 * A real OpenSSH server for the SSH connector tests: its own `sshd` process on 127.0.0.1:<free port> with
 * its own host key, configuration and authorized keys in a fresh temp dir. It never touches the machine's
 * /etc/ssh configuration or a system sshd. Accounts are real local users (useradd/userdel), because that
 * is what the SSH connector manages.
 *
 * Needs root (useradd, chpasswd, binding sshd, PAM), `/usr/sbin/sshd` and, for {@link SshdHandle.createSudoAdmin},
 * `/usr/bin/sudo` (packages openssh-server and sudo, which `scripts/ensure-sshd.sh` installs when missing).
 */

export const SSHD_BINARY = '/usr/sbin/sshd';
const SUDO_BINARY = '/usr/bin/sudo';
/** Privilege-separation directory sshd insists on (normally created by the systemd unit, which we don't run). */
const PRIVSEP_DIR = '/run/sshd';

export interface SshdHandle {
  /** Always 127.0.0.1. */
  host: string;
  port: number;
  /** The temp dir holding the host key, config, admin key and authorized_keys; deleted by stop(). */
  dir: string;
  /** The listening sshd's process id (its per-connection children run below it). */
  pid: number;
  /**
   * SHA-256 fingerprint of the host key exactly as OpenSSH prints it (`ssh-keygen -lf`), minus the
   * `SHA256:` prefix: unpadded base64 of sha256(key blob). What the connector pins as `hostKeySha256`.
   */
  hostKeySha256: string;
  /** 'root' — logs in with {@link adminPrivateKey} only (PermitRootLogin prohibit-password). */
  adminUsername: 'root';
  /** Unencrypted OpenSSH-format ed25519 private key (`-----BEGIN OPENSSH PRIVATE KEY-----`) authorized for root. */
  adminPrivateKey: string;
  /** The matching `ssh-ed25519 AAAA…` public key line. */
  adminPublicKey: string;
  /**
   * Creates a least-privilege administrator for the connector: a generated user `vtadm_<hex>` with a password and its
   * own ed25519 key (authorized in this server's AuthorizedKeysFile dir), and a sudoers drop-in
   * `/etc/sudoers.d/vault-test-<name>` granting exactly {@link SSH_ADMIN_COMMANDS} (or `commands`), by full path, with
   * or without NOPASSWD, as root, and `/usr/bin/kill` as any user (see {@link sudoersLineFor}). The user and the drop-in are removed again by {@link stop} (and by the exit hook).
   */
  createSudoAdmin(options: SudoAdminOptions): Promise<SudoAdmin>;
  /** Creates a local user (home dir, /bin/bash) with this password; removed again by {@link stop}. */
  createUser(name: string, password: string): Promise<void>;
  /** Whether a local user of that name exists (getent passwd). */
  userExists(name: string): Promise<boolean>;
  /** Kills the user's processes and removes the user and its home dir; succeeds when it is already gone. */
  deleteUser(name: string): Promise<void>;
  /** With {@link SshdOptions.fromLoginSession}: the root daemon that shares the listener's audit session. */
  daemonPid?: number;
  /** Everything sshd logged so far (-e: logs go to stderr), for failure messages. */
  logs(): string;
  /** Stops sshd and every session process it spawned, deletes the users created here and the temp dir. Idempotent. */
  stop(): Promise<void>;
}

/** The commands a least-privilege SSH admin needs through sudo (README "Least-privilege administrators"). */
export const SSH_ADMIN_COMMANDS = ['/usr/sbin/useradd', '/usr/sbin/usermod', '/usr/sbin/userdel', '/usr/sbin/chpasswd', '/usr/bin/kill'] as const;

export interface SudoAdminOptions {
  /** `NOPASSWD:` in the sudoers line (else sudo asks for the admin's password). */
  nopasswd: boolean;
  /** The admin's password (default: generated). chpasswd splits at the first ':', so any other character works. */
  password?: string;
  /** What sudo allows, by full path (default {@link SSH_ADMIN_COMMANDS}). */
  commands?: readonly string[];
  /** `/usr/bin/kill` with the run-as list `(ALL)` (default), so the connector signals a user's processes as that user; false: `(root)` only. */
  killAsAnyUser?: boolean;
}

/**
 * The sudoers line of an SSH admin (README "Least-privilege administrators"): every command as root, and `kill` as
 * any user (`(ALL)`), e.g. `vault_admin ALL=(root) NOPASSWD: /usr/sbin/useradd, …, (ALL) NOPASSWD: /usr/bin/kill`.
 */
export function sudoersLineFor(name: string, commands: readonly string[], nopasswd: boolean, killAsAnyUser: boolean): string {
  const tag = nopasswd ? 'NOPASSWD: ' : '';
  const asRoot = commands.filter((c) => !(killAsAnyUser && c === '/usr/bin/kill'));
  const specs = [...(asRoot.length ? [`(root) ${tag}${asRoot.join(', ')}`] : []), ...(asRoot.length < commands.length ? [`(ALL) ${tag}/usr/bin/kill`] : [])];
  return `${name} ALL=${specs.join(', ')}`;
}

export interface SudoAdmin {
  username: string;
  password: string;
  /** Unencrypted OpenSSH-format ed25519 private key authorized for this user. */
  privateKey: string;
  /** The sudoers line written to the drop-in. */
  sudoersLine: string;
}

export interface SshdOptions {
  /**
   * `UsePAM yes` (default, as a stock Debian server): passwords are checked by pam_unix, which delays every
   * FAILED password attempt by ~2 s (libpam randomises it; we saw 3–4 s per failed login with ssh2).
   * `false` makes sshd check /etc/shadow itself: failed logins are answered at once, no PAM session.
   */
  usePam?: boolean;
  /**
   * Start sshd as if an administrator had (re)started it from a login: in an audit session of its own (loginuid 0,
   * a fresh /proc/<pid>/sessionid), together with a root daemon (`sleep 900`, {@link SshdHandle.daemonPid}) that
   * shares that audit session, as every daemon started from that login would.
   */
  fromLoginSession?: boolean;
  /** Also read keys from the user's home (`AuthorizedKeysFile <dir>/authorized_keys/%u .ssh/authorized_keys`, as stock OpenSSH). */
  keysInHome?: boolean;
}

/**
 * Starts a throwaway sshd and resolves once it listens (typically ~100 ms).
 *
 * Needs the privilege-separation dir /run/sshd (created here: no systemd unit does it for us).
 * Configuration highlights: password authentication on (through PAM by default, as on a stock Debian server),
 * keyboard-interactive off (so a password login is exactly the `password` method), root by key only,
 * `AuthorizedKeysFile <tmp>/authorized_keys/%u`, and `StrictModes no` (the temp dir lives under the
 * world-writable /tmp, which StrictModes would reject for the authorized_keys path).
 */
export async function startSshd(options: SshdOptions = {}): Promise<SshdHandle> {
  const usePam = options.usePam ?? true;
  if (process.getuid?.() !== 0) throw new Error('startSshd() needs root: it runs sshd and creates local users');
  if (!existsSync(SSHD_BINARY)) {
    throw new Error(`${SSHD_BINARY} is missing: the SSH connector tests need OpenSSH server (run scripts/test.sh, which installs openssh-server)`);
  }
  mkdirSync(PRIVSEP_DIR, { recursive: true, mode: 0o755 });

  const dir = mkdtempSync(join(tmpdir(), 'vault-sshd-'));
  const createdUsers = new Set<string>();
  const sudoersFiles = new Set<string>();
  let child: ChildProcess | undefined;
  let stopped = false;
  let log = '';

  // If the worker dies without calling stop(), don't leave sshd, users or the temp dir behind.
  const exitHook = () => cleanupSync(child, createdUsers, dir, sudoersFiles);
  process.once('exit', exitHook);

  try {
    const hostKey = join(dir, 'ssh_host_ed25519_key');
    const adminKey = join(dir, 'admin_ed25519');
    await Promise.all([
      run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'vault-test-host', '-f', hostKey]),
      run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'vault-test-admin', '-f', adminKey]),
    ]);
    const hostPub = readFileSync(`${hostKey}.pub`, 'utf8');
    const adminPublicKey = readFileSync(`${adminKey}.pub`, 'utf8').trim();
    const adminPrivateKey = readFileSync(adminKey, 'utf8');
    mkdirSync(join(dir, 'authorized_keys'), { mode: 0o755 });
    writeFileSync(join(dir, 'authorized_keys', 'root'), `${adminPublicKey}\n`, { mode: 0o600 });

    // freePort() closes its probe before sshd binds: retry when someone else took the port meanwhile.
    let port = 0;
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      const configFile = join(dir, 'sshd_config');
      // readable by the admins (verify reads it for SSH_KEYS_LOCKED); it holds no secret
      writeFileSync(configFile, sshdConfig(dir, hostKey, port, usePam, options.keysInHome ?? false), { mode: 0o644 });
      log = '';
      const proc = options.fromLoginSession
        ? spawn(
            '/bin/sh',
            ['-c', `echo 0 > /proc/self/loginuid || exit 97; sleep 900 </dev/null >/dev/null 2>&1 & echo $! > ${join(dir, 'daemon.pid')}; exec ${SSHD_BINARY} -D -e -f ${configFile}`],
            { stdio: ['ignore', 'ignore', 'pipe'] },
          )
        : spawn(SSHD_BINARY, ['-D', '-e', '-f', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
      child = proc;
      proc.stderr!.on('data', (d) => (log += d));
      const result = await waitListening(proc, () => log, port, 10_000);
      if (result === 'listening') break;
      child = undefined;
      if (result === 'port-taken' && attempt < 5) continue;
      throw new Error(`sshd did not start on 127.0.0.1:${port}:\n${log.slice(-3000)}`);
    }
    const sshd = child!;

    const handle: SshdHandle = {
      host: '127.0.0.1',
      port,
      dir,
      pid: sshd.pid!,
      hostKeySha256: fingerprintSha256(hostPub),
      ...(options.fromLoginSession ? { daemonPid: Number(readFileSync(join(dir, 'daemon.pid'), 'utf8').trim()) } : {}),
      adminUsername: 'root',
      adminPrivateKey,
      adminPublicKey,
      logs: () => log,
      async createSudoAdmin(opts) {
        const name = `vtadm_${randomBytes(4).toString('hex')}`;
        const password = opts.password ?? `Adm-${randomBytes(12).toString('base64url')}`;
        const commands = opts.commands ?? SSH_ADMIN_COMMANDS;
        if (!existsSync(SUDO_BINARY)) throw new Error(`${SUDO_BINARY} is missing: the SSH connector tests need sudo (run scripts/ensure-sshd.sh, which installs it)`);
        if (commands.some((c) => !/^\/[A-Za-z0-9/_.-]+$/.test(c))) throw new Error('createSudoAdmin: commands must be full paths');
        await handle.createUser(name, password);
        const keyFile = join(dir, `${name}_ed25519`);
        await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', keyFile]);
        writeFileSync(join(dir, 'authorized_keys', name), readFileSync(`${keyFile}.pub`, 'utf8'), { mode: 0o644 });
        // sshd reads a user's authorized_keys as that user: let it through the temp dir (not list it; keys inside are 0600)
        chmodSync(dir, 0o711);
        const sudoersLine = sudoersLineFor(name, commands, opts.nopasswd, opts.killAsAnyUser ?? true);
        // sudo ignores drop-ins whose name has a '.': none here
        const file = `/etc/sudoers.d/vault-test-${name}`;
        const staging = join(dir, `sudoers-${name}`);
        writeFileSync(staging, `${sudoersLine}\n`, { mode: 0o440 });
        await run('visudo', ['-c', '-q', '-f', staging]);
        sudoersFiles.add(file);
        writeFileSync(file, `${sudoersLine}\n`, { mode: 0o440 });
        return { username: name, password, privateKey: readFileSync(keyFile, 'utf8'), sudoersLine };
      },
      async createUser(name, password) {
        assertTestName(name);
        if (/[\n\r\0]/.test(password)) throw new Error('createUser: the password must not contain a newline or NUL (chpasswd reads lines)');
        // useradd exits 9 when the name is taken: then the user is not ours and stop() must leave it alone.
        await withPasswdLock(() => run('useradd', ['-m', '-s', '/bin/bash', name]));
        createdUsers.add(name);
        // chpasswd reads "name:password" lines from stdin and splits at the first ':' only, so any
        // other character (':' included) is fine in the password. Never on the command line.
        await withPasswdLock(() => run('chpasswd', [], { input: `${name}:${password}\n` }));
      },
      userExists: (name) => userExists(name),
      async deleteUser(name) {
        assertTestName(name);
        await deleteUser(name);
        createdUsers.delete(name);
      },
      async stop() {
        if (stopped) return;
        stopped = true;
        await stopSshd(sshd);
        for (const file of [...sudoersFiles]) {
          rmSync(file, { force: true });
          sudoersFiles.delete(file);
        }
        for (const name of [...createdUsers]) {
          await deleteUser(name);
          createdUsers.delete(name);
        }
        rmSync(dir, { recursive: true, force: true });
        process.removeListener('exit', exitHook);
      },
    };
    return handle;
  } catch (e) {
    cleanupSync(child, createdUsers, dir, sudoersFiles);
    process.removeListener('exit', exitHook);
    throw e;
  }
}

/** The sshd_config of a test server. Only options valid on OpenSSH 9.2 (Debian 12) and later. */
function sshdConfig(dir: string, hostKey: string, port: number, usePam: boolean, keysInHome: boolean): string {
  return [
    `ListenAddress 127.0.0.1:${port}`,
    `HostKey ${hostKey}`,
    `PidFile ${join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}/%u${keysInHome ? ' .ssh/authorized_keys' : ''}`,
    'PubkeyAuthentication yes',
    'PasswordAuthentication yes',
    'KbdInteractiveAuthentication no',
    'PermitEmptyPasswords no',
    'PermitRootLogin prohibit-password',
    // yes: password checks and sessions go through PAM (pam_unix against /etc/shadow), as on a stock Debian server.
    `UsePAM ${usePam ? 'yes' : 'no'}`,
    'StrictModes no',
    'UseDNS no',
    'X11Forwarding no',
    'PrintMotd no',
    'PrintLastLog no',
    // The conformance suite opens many short connections, some concurrently, and makes failing attempts on purpose.
    'MaxStartups 100:30:200',
    'MaxSessions 50',
    'MaxAuthTries 10',
    'LoginGraceTime 30',
    'LogLevel VERBOSE',
    'Subsystem sftp internal-sftp',
    '',
  ].join('\n');
}

/** Waits for sshd's "Server listening on 127.0.0.1 port N." line, its exit, or the timeout. */
async function waitListening(proc: ChildProcess, log: () => string, port: number, timeoutMs: number): Promise<'listening' | 'port-taken' | 'failed'> {
  let exited = proc.exitCode !== null;
  proc.once('exit', () => (exited = true));
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (log().includes(`Server listening on 127.0.0.1 port ${port}`)) return 'listening';
    if (exited) return /Address already in use/.test(log()) ? 'port-taken' : 'failed';
    await sleep(20);
  }
  proc.kill('SIGKILL');
  return 'failed';
}

/**
 * OpenSSH's SHA-256 fingerprint of a public key line (`type base64blob comment`): base64(sha256(blob))
 * without `=` padding and without the `SHA256:` prefix.
 */
export function fingerprintSha256(publicKeyLine: string): string {
  const blob = publicKeyLine.trim().split(/\s+/)[1];
  if (!blob) throw new Error(`not an OpenSSH public key line: ${publicKeyLine.slice(0, 80)}`);
  return createHash('sha256').update(Buffer.from(blob, 'base64')).digest('base64').replace(/=+$/, '');
}

/**
 * Ends sshd and every process below it (per-connection sshd, user shells and commands): the listener's
 * death alone would leave established sessions running. The listener is frozen first (SIGSTOP) so it
 * cannot fork a new session between the snapshot of its descendants and the kill; then all get SIGKILL.
 */
async function stopSshd(sshd: ChildProcess): Promise<void> {
  if (sshd.exitCode !== null || sshd.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => sshd.once('exit', () => resolve()));
  killQuietly(sshd.pid!, 'SIGSTOP');
  const descendants = descendantsOf(sshd.pid!);
  for (const pid of descendants) killQuietly(pid, 'SIGKILL');
  sshd.kill('SIGKILL');
  await exited;
  const deadline = Date.now() + 5000;
  while (descendants.some((pid) => !processGone(pid)) && Date.now() < deadline) await sleep(20);
}

/** True when the process no longer exists or is a zombie waiting to be reaped (it holds nothing any more). */
export function processGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return true;
  }
}

/** Every live descendant of `root` (from /proc/<pid>/stat parent links), deepest last. */
function descendantsOf(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // "pid (comm) state ppid …": comm may contain spaces or parentheses, so parse after the last ')'.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    const list = children.get(ppid) ?? [];
    list.push(Number(entry));
    children.set(ppid, list);
  }
  const out: number[] = [];
  const queue = [root];
  while (queue.length) {
    for (const c of children.get(queue.shift()!) ?? []) {
      out.push(c);
      queue.push(c);
    }
  }
  return out;
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    /* already gone */
  }
}

async function userExists(name: string): Promise<boolean> {
  assertTestName(name);
  // getent: 0 found, 2 not found.
  const res = await run('getent', ['passwd', name], { okCodes: [0, 2] });
  return res.code === 0;
}

/**
 * Removes a user and its home dir. Kills its processes first (userdel refuses while they run) and
 * succeeds when the user does not exist.
 */
async function deleteUser(name: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    // pkill: 0 killed some, 1 none matched.
    await run('pkill', ['-KILL', '-u', name], { okCodes: [0, 1] }).catch(() => undefined);
    // userdel: 6 = no such user; 8 = user logged in (processes still exiting); 10 = passwd/group file locked.
    // -r also removes the mail spool; its absence is only a warning.
    const res = await runRaw('userdel', ['-r', name]);
    if (res.code === 0 || res.code === 6) return;
    if (res.code === 12 && !(await userExists(name))) return; // user gone, home dir was already missing
    if ((res.code === 8 || res.code === 10) && attempt < 20) {
      await sleep(100);
      continue;
    }
    throw new Error(`userdel -r ${name} failed (exit code ${res.code}): ${res.stderr.trim()}`);
  }
}

/**
 * useradd/chpasswd fail ("cannot lock /etc/passwd; try again later", or through PAM "Authentication token
 * manipulation error") when another process holds the passwd/shadow lock — e.g. the other jest worker, or a
 * connector creating an account at the same time. Retried for up to ~2 s.
 */
async function withPasswdLock<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if (attempt >= 20 || !/cannot lock|try again later|token manipulation error/i.test((e as Error).message)) throw e;
      await sleep(100);
    }
  }
}

/** Synchronous last-resort cleanup (process 'exit' hook, failed start): no promises allowed there. */
function cleanupSync(child: ChildProcess | undefined, users: Set<string>, dir: string, sudoersFiles: Set<string>): void {
  for (const file of sudoersFiles) rmSync(file, { force: true });
  sudoersFiles.clear();
  if (child?.pid && child.exitCode === null && child.signalCode === null) {
    const pids = descendantsOf(child.pid);
    killQuietly(child.pid, 'SIGKILL');
    for (const pid of pids) killQuietly(pid, 'SIGKILL');
  }
  for (const name of users) {
    spawnSync('pkill', ['-KILL', '-u', name]);
    spawnSync('userdel', ['-r', name]);
  }
  users.clear();
  rmSync(dir, { recursive: true, force: true });
}

/** Opens an SSH connection as a user (test client: any host key). */
export function sshConnect(config: ConnectConfig): Promise<Client> {
  return new Promise((resolve, reject) => {
    const c = new Client();
    c.on('ready', () => resolve(c)).on('error', reject);
    c.connect({ readyTimeout: 10_000, ...config });
  });
}

/** Runs a command on an open connection; resolves to its stdout when it exits. */
export function sshExecOut(c: Client, command: string): Promise<string> {
  return new Promise((resolve, reject) =>
    c.exec(command, (err, stream) => {
      if (err) return reject(err);
      let out = '';
      stream.on('data', (d: Buffer) => (out += d));
      stream.stderr.on('data', () => undefined);
      stream.on('close', () => resolve(out));
    }),
  );
}

/** Starts a long command on an open connection and leaves it running; the promise settles once it is started. */
export function sshExecHold(c: Client, command: string): Promise<void> {
  return new Promise((resolve, reject) => c.exec(command, (err, stream) => (err ? reject(err) : (stream.on('data', () => undefined), stream.stderr.on('data', () => undefined), resolve()))));
}

/** The ConnectorError code a connector call fails with (the test fails when it succeeds or throws something else). */
export async function connectorCodeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(ConnectorError);
    return (e as ConnectorError).code;
  }
  throw new Error('expected the call to fail');
}

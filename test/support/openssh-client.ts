import { ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { run } from './targets/run';

/**
 * The real OpenSSH client (`/usr/bin/ssh`) as an operator's machine runs it, for the gateway's end-to-end proofs and
 * the bench: a 0700 temp dir per client holding its key pairs (`ssh-keygen -t ed25519`, one per connection, as
 * `vaultctl ssh` makes them), the gateway's `known_hosts` line and ControlMaster sockets; every run with
 * `-F /dev/null` (no user or system configuration), `UserKnownHostsFile=<that file>`, `StrictHostKeyChecking=yes`,
 * `IdentitiesOnly=yes`, no agent, `BatchMode=yes` (no prompt can hang a test) and a clean environment.
 *
 * Interactive sessions get a real terminal from `script -qec` (util-linux): ssh runs on the pty `script` opens, so the
 * remote side sees a PTY request and a shell, as for a person at a terminal.
 *
 * Every run is recorded ({@link OpenSshClient.runs}: argv, environment, stdout, stderr) and every file the client
 * wrote is readable ({@link OpenSshClient.clientSide}), so a test can prove a secret (the target's password) appears
 * nowhere on the client side.
 */

export const SSH_BINARY = '/usr/bin/ssh';
export const SCRIPT_BINARY = '/usr/bin/script';

/** Where to connect: the gateway (or, for a baseline, the sshd itself). */

/** What a run's stdin gets (see SshOptions.input). */
export type SshInput = string | Buffer | Readable | { file: string };
export interface SshEndpoint {
  host: string;
  port: number;
  /** `[host]:port ssh-ed25519 AAAA…`, the only host key the client accepts (written to its known_hosts file). */
  knownHostsLine: string;
}

/** A key pair the client made (`ssh-keygen`), private key in its temp dir. */
export interface ClientKey {
  path: string;
  /** `ssh-ed25519 AAAA… comment` */
  publicKey: string;
}

/** What one ssh process did. */
export interface SshRun {
  argv: string[];
  env: Record<string, string>;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface SshOptions {
  endpoint: SshEndpoint;
  /** The login name (for the gateway in publickey mode: the ticket). */
  user: string;
  key?: ClientKey;
  /** The remote command (one string, passed as ssh passes it: to the remote shell), none for a shell. */
  command?: string;
  /**
   * Written to ssh's stdin, which is then closed ('' by default: closed at once); `{ file }`: ssh's stdin IS that file
   * (opened here and handed to ssh as its fd 0: nothing passes through this process — a bench's process is the vault's).
   */
  input?: SshInput;
  /** Extra `-o` options or flags, before the destination. */
  extra?: string[];
  /** A ControlMaster socket to run over (`-S path -o ControlMaster=no`), see {@link OpenSshClient.master}. */
  controlPath?: string;
  /** Kill (SIGKILL) after this many ms (default 60 s). */
  timeoutMs?: number;
}

/** A running ssh (or `script` around ssh) whose output the test can wait for. */
export interface SshProcess {
  child: ChildProcess;
  /** The output so far (stdout + stderr for a PTY session: the terminal). */
  output(): string;
  write(text: string): void;
  /** Resolves with the output once `pattern` appears in it; rejects when the process ends first or on timeout. */
  waitFor(pattern: RegExp | string, timeoutMs?: number): Promise<string>;
  /** Resolves when the process has ended. */
  exited: Promise<SshRun>;
  kill(signal?: NodeJS.Signals): void;
}

/** A ControlMaster connection: later runs multiplex over its socket. */
export interface SshMaster {
  controlPath: string;
  /** Runs a command as a new session channel of the master's connection. */
  exec(command: string, o?: { input?: SshInput; timeoutMs?: number }): Promise<SshRun>;
  /** `ssh -O exit`: closes the master connection. */
  close(): Promise<void>;
  process: SshProcess;
}

/** Single quotes for `sh -c` (script -c runs the command through the shell). */
export const shQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

export class OpenSshClient {
  /** Every ssh process this client started. */
  readonly runs: SshRun[] = [];
  private keys = 0;
  private sockets = 0;

  private constructor(readonly dir: string) {}

  /** A client with its own 0700 temp dir (mkdtemp). */
  static create(): OpenSshClient {
    return new OpenSshClient(mkdtempSync(join(tmpdir(), 'ossh-')));
  }

  /** A fresh ed25519 key pair made by the real `ssh-keygen`, unencrypted, in the client's dir. */
  async newKey(): Promise<ClientKey> {
    const path = join(this.dir, `id_ed25519_${++this.keys}`);
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `test-client-${this.keys}`, '-f', path]);
    return { path, publicKey: readFileSync(`${path}.pub`, 'utf8').trim() };
  }

  /** The clean environment ssh runs with: no agent, no locale or terminal of the test runner, HOME in the temp dir. */
  env(): Record<string, string> {
    return { PATH: '/usr/bin:/bin', HOME: this.dir, LANG: 'C.UTF-8', TERM: 'xterm-256color' };
  }

  /** ssh's argv (without the binary) for these options; the known_hosts file is (re)written with the endpoint's line. */
  argv(o: SshOptions, flags: string[] = [], master = false): string[] {
    const knownHosts = join(this.dir, 'known_hosts');
    writeFileSync(knownHosts, `${o.endpoint.knownHostsLine.trim()}\n`, { mode: 0o600 });
    const args = [
      '-F', '/dev/null',
      '-o', `UserKnownHostsFile=${knownHosts}`,
      '-o', 'GlobalKnownHostsFile=/dev/null',
      '-o', 'StrictHostKeyChecking=yes',
      '-o', 'CheckHostIP=no',
      '-o', 'UpdateHostKeys=no',
      '-o', 'IdentitiesOnly=yes',
      '-o', 'IdentityAgent=none',
      '-o', 'BatchMode=yes',
      '-o', 'ConnectTimeout=15',
      '-o', 'ServerAliveInterval=0',
      '-o', 'LogLevel=ERROR',
      ...(o.key ? ['-i', o.key.path] : ['-o', 'IdentityFile=none']),
      ...(master ? [] : o.controlPath ? ['-S', o.controlPath, '-o', 'ControlMaster=no'] : ['-o', 'ControlMaster=no', '-o', 'ControlPath=none']),
      '-p', String(o.endpoint.port),
      '-l', o.user,
      ...flags,
      ...(o.extra ?? []),
      o.endpoint.host,
    ];
    if (o.command !== undefined) args.push('--', o.command);
    return args;
  }

  /** Runs ssh to the end (stdin from `input`, closed after). */
  exec(o: SshOptions): Promise<SshRun> {
    return this.spawn(o, ['-T']).exited;
  }

  /** Starts ssh without a terminal; the caller writes to it and waits for output (`-T`: no PTY). */
  start(o: SshOptions): SshProcess {
    return this.spawn(o, ['-T'], { keepStdin: true });
  }

  /**
   * An interactive session on a real terminal: `script -qec "ssh -tt …" /dev/null`, so ssh's stdin is a pty and the
   * remote side gets a PTY and a shell (or the command, on that PTY). The output is what the terminal showed.
   */
  pty(o: SshOptions & { cols?: number; rows?: number }): SshProcess {
    const args = this.argv(o, ['-tt']);
    // the terminal's size as the remote side learns it from the pty request
    const stty = `stty cols ${o.cols ?? 120} rows ${o.rows ?? 40} 2>/dev/null; `;
    const line = `${stty}exec ${[SSH_BINARY, ...args].map(shQuote).join(' ')}`;
    return this.launch(SCRIPT_BINARY, ['-qec', line, '/dev/null'], [SSH_BINARY, ...args], o, true);
  }

  /**
   * A ControlMaster connection (`-M -N -S <socket>`), resolved once the socket answers `ssh -O check`. Its exec
   * runs are new session channels over the same connection (`ssh -S <socket> host <command>`).
   */
  async master(o: Omit<SshOptions, 'command' | 'controlPath' | 'input'>): Promise<SshMaster> {
    const controlPath = join(this.dir, `ctl-${++this.sockets}`);
    const base = { ...o, controlPath: undefined };
    const args = this.argv(base, ['-M', '-N', '-S', controlPath, '-o', 'ControlPersist=no'], true);
    const proc = this.launch(SSH_BINARY, args, [SSH_BINARY, ...args], { ...base, timeoutMs: 3_600_000 }, false);
    const deadline = Date.now() + (o.timeoutMs ?? 20_000);
    let ended = false;
    void proc.exited.then(() => (ended = true));
    for (;;) {
      const check = await this.spawn({ ...base, controlPath }, ['-O', 'check']).exited;
      if (check.code === 0) break;
      if (ended) {
        const r = await proc.exited;
        throw new Error(`ssh ControlMaster ended (exit ${r.code ?? r.signal}): ${r.stderr.trim()}`);
      }
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`ssh ControlMaster did not come up: ${proc.output().trim()}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return {
      controlPath,
      process: proc,
      exec: (command, x = {}) => this.exec({ ...base, controlPath, command, input: x.input, timeoutMs: x.timeoutMs }),
      close: async () => {
        if (!ended) await this.spawn({ ...base, controlPath }, ['-O', 'exit']).exited;
        await proc.exited;
      },
    };
  }

  /**
   * Everything of this client a secret could hide in: every argv, every environment value, every output, and every
   * file in its dir (keys, known_hosts; sockets skipped).
   */
  clientSide(): string {
    const parts: string[] = [];
    for (const r of this.runs) parts.push(r.argv.join(' '), Object.entries(r.env).map(([k, v]) => `${k}=${v}`).join('\n'), r.stdout, r.stderr);
    for (const name of readdirSync(this.dir)) {
      const path = join(this.dir, name);
      if (statSync(path).isFile()) parts.push(readFileSync(path, 'utf8'));
    }
    return parts.join('\n');
  }

  /** Removes the temp dir (keys, known_hosts, sockets). */
  close(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  private spawn(o: SshOptions, flags: string[], x: { keepStdin?: boolean } = {}): SshProcess {
    const args = this.argv(o, flags);
    return this.launch(SSH_BINARY, args, [SSH_BINARY, ...args], o, Boolean(x.keepStdin));
  }

  private launch(file: string, args: string[], recorded: string[], o: Pick<SshOptions, 'input' | 'timeoutMs'>, keepStdin: boolean): SshProcess {
    const env = this.env();
    const inputFile = o.input !== undefined && !(o.input instanceof Readable) && typeof o.input === 'object' && 'file' in o.input ? openSync(o.input.file, 'r') : null;
    const child = spawn(file, args, { env, stdio: [inputFile ?? 'pipe', 'pipe', 'pipe'] });
    if (inputFile !== null) closeSync(inputFile);
    let stdout = '';
    let stderr = '';
    let all = '';
    const waiters = new Set<() => void>();
    const wake = () => waiters.forEach((w) => w());
    child.stdout!.on('data', (d: Buffer) => {
      const s = d.toString('utf8');
      stdout += s;
      all += s;
      wake();
    });
    child.stderr!.on('data', (d: Buffer) => {
      const s = d.toString('utf8');
      stderr += s;
      all += s;
      wake();
    });
    child.stdin?.on('error', () => undefined); // ssh may end before it read all of its input
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 60_000);
    const record: SshRun = { argv: recorded, env, code: null, signal: null, stdout: '', stderr: '' };
    this.runs.push(record);
    const exited = new Promise<SshRun>((resolve, reject) => {
      child.once('error', (e) => {
        clearTimeout(timer);
        reject(new Error(`cannot run ${file}: ${e.message}`));
      });
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        Object.assign(record, { code, signal, stdout, stderr });
        wake();
        resolve(record);
      });
    });
    let done = false;
    void exited.then(
      () => (done = true),
      () => (done = true),
    );
    if (inputFile !== null) {
      // ssh reads the file itself
    } else if (!keepStdin) {
      const input = (o.input ?? '') as string | Buffer | Readable;
      if (typeof input === 'string' || Buffer.isBuffer(input)) child.stdin!.end(input);
      else input.pipe(child.stdin!);
    } else if (o.input !== undefined) {
      const input = o.input as string | Buffer | Readable;
      if (typeof input === 'string' || Buffer.isBuffer(input)) child.stdin!.write(input);
      else input.pipe(child.stdin!, { end: false });
    }
    const waitFor = (pattern: RegExp | string, timeoutMs = 15_000) =>
      new Promise<string>((resolve, reject) => {
        const test = () => (typeof pattern === 'string' ? all.includes(pattern) : pattern.test(all));
        const t = setTimeout(() => finish(new Error(`timed out after ${timeoutMs} ms waiting for ${String(pattern)}; output so far:\n${all.slice(-2000)}`)), timeoutMs);
        const check = () => {
          if (test()) finish();
          else if (done) finish(new Error(`ssh ended (exit ${record.code ?? record.signal}) before ${String(pattern)} appeared; output:\n${all.slice(-2000)}`));
        };
        const finish = (err?: Error) => {
          clearTimeout(t);
          waiters.delete(check);
          if (err) reject(err);
          else resolve(all);
        };
        waiters.add(check);
        check();
      });
    return {
      child,
      output: () => all,
      write: (text) => void child.stdin!.write(text),
      waitFor,
      exited,
      kill: (signal = 'SIGTERM') => void child.kill(signal),
    };
  }
}

import type { Duplex, Writable } from 'node:stream';
import type { Client, ClientChannel, Connection, PseudoTtyInfo, ServerChannel, Session } from 'ssh2';
import type { Recorder } from './recording/recording.service';
import { gatedSink, orderedOutput, relay, RelaySink, SocketGate, socketGate } from './relay';
import { fixStalledWrites } from './ssh2-stalled-write';

/** What a gateway session may do beyond a terminal (the account's or the one-time policy's switches). */
export interface ChannelPolicy {
  allowPortForwarding: boolean;
  recordInput: boolean;
  /** The account is reached through the gateway only (no credential is revealed; README "Brokered only" says what the target must do). */
  brokeredOnly: boolean;
}

/** The most characters of an exec command kept in the recording's marker: more than an SSH packet holds, so the whole command (review FINDING 3). */
const MARKER_COMMAND_CHARS = 65_536;

type Kind = 'shell' | 'exec' | 'subsystem';

/**
 * Channel forwarding of one gateway session: every channel the client opens is opened 1:1 on the ONE upstream
 * connection (so several channels over one client connection — OpenSSH ControlMaster — work), and copied both ways with
 * backpressure (relay.ts).
 *
 * - `session` channels: pty-req (kept and sent with the shell/exec), window-change, shell, exec (the command passed
 *   verbatim, never interpreted), subsystem `sftp` (the bytes forwarded as they are), signal; exit-status and
 *   exit-signal relayed back. env requests are refused (ignored by OpenSSH clients). Output (stdout + stderr) of
 *   shell and exec channels is recorded, and input too with `recordInput`; sftp is marked in the recording, its binary
 *   protocol is not (it is no terminal).
 * - `direct-tcpip` (ssh -L) only with `allowPortForwarding`; remote forwarding (`tcpip-forward`), unix sockets,
 *   agent and X11 forwarding are always refused: this class installs no handler for them, and ssh2 refuses what has
 *   none.
 */
export class GatewayChannels {
  constructor(
    private readonly client: Connection,
    private readonly upstream: Client,
    private readonly recorder: Recorder,
    private readonly policy: ChannelPolicy,
  ) {
    this.gate = socketGate((client as unknown as { _sock?: Writable })._sock);
  }

  /** The client's socket as a backpressure point (relay.ts socketGate); ssh2 keeps it in `_sock`. */
  private readonly gate: SocketGate;

  attach(): void {
    this.client.on('session', (accept) => this.session(accept()));
    this.client.on('tcpip', (accept, reject, info) => {
      if (!this.policy.allowPortForwarding) return reject();
      guarded(
        () =>
          this.upstream.forwardOut(info.srcIP, info.srcPort, info.destIP, info.destPort, (err, up) => {
            if (err) return reject();
            const down = accept();
            quiet(down, up);
            this.recorder.marker(`direct-tcpip: ${info.destIP}:${info.destPort}`);
            pipeBoth(down, up, this.gate);
          }),
        reject,
      );
    });
  }

  private session(session: Session): void {
    let pty: PseudoTtyInfo | undefined;
    let up: ClientChannel | undefined;
    session.on('pty', (accept, _reject, info) => {
      pty = info;
      accept?.();
    });
    session.on('window-change', (accept, _reject, info) => {
      if (pty) pty = { ...pty, cols: info.cols, rows: info.rows, width: info.width, height: info.height };
      up?.setWindow(info.rows, info.cols, info.height, info.width);
      this.recorder.resize(info.cols, info.rows);
      accept?.();
    });
    session.on('signal', (accept, _reject, info) => {
      try {
        up?.signal(info.name);
      } catch {
        // a signal name ssh2 does not know: not passed on
      }
      accept?.();
    });
    session.on('env', (_accept, reject) => reject?.());
    // accepted at once (OpenSSH sends EOF right after an exec with no input, and ssh2 refuses to accept a session
    // channel that already got its EOF); the upstream channel is opened next, and if the target refuses it the
    // client gets exit status 255 and a message
    const open = (kind: Kind, accept: () => ServerChannel | undefined, command?: string) => {
      const down = accept();
      if (!down) return;
      fixStalledWrites(down);
      quiet(down);
      down.pause();
      let gone = false;
      down.once('close', () => (gone = true));
      const window = pty ? { rows: pty.rows, cols: pty.cols, height: pty.height, width: pty.width, term: pty.term, modes: pty.modes } : undefined;
      if (pty) this.recorder.resize(pty.cols, pty.rows);
      const started = (err: Error | undefined, channel: ClientChannel) => {
        if (err) return refused(down);
        quiet(channel);
        // the client closed its channel while the upstream one was opening
        if (gone) return channel.close();
        up = channel;
        this.wire(kind, down, channel, command);
      };
      // the upstream connection may be gone already (ssh2 throws then): the client is told, the process goes on
      guarded(() => {
        if (kind === 'shell') this.upstream.shell(window ?? false, started);
        else if (kind === 'exec') this.upstream.exec(command as string, window ? { pty: window } : {}, started);
        else this.upstream.subsys('sftp', started);
      }, () => refused(down));
    };
    session.on('shell', (accept) => open('shell', accept));
    session.on('exec', (accept, _reject, info) => open('exec', accept, info.command));
    session.on('subsystem', (accept, reject, info) => (info.name === 'sftp' ? open('subsystem', accept) : reject?.()));
  }

  /** Copies one session channel both ways and relays its end: exit status or signal, then EOF and close. */
  private wire(kind: Kind, down: ServerChannel, up: ClientChannel, command?: string): void {
    const recorded = kind !== 'subsystem';
    this.recorder.marker(kind === 'exec' ? `exec: ${(command ?? '').slice(0, MARKER_COMMAND_CHARS)}` : kind === 'shell' ? 'shell' : 'subsystem: sftp');
    const output: RelaySink = { write: (d) => this.recorder.output(d), once: (e, cb) => this.recorder.once(e, cb) };
    const input: RelaySink = { write: (d) => this.recorder.input(d), once: (e, cb) => this.recorder.once(e, cb) };
    // client → target (its EOF passed on); target → client, stdout and stderr
    relay(down, [sinkOf(up), ...(recorded && this.policy.recordInput ? [input] : [])], () => up.end());
    const toClient = orderedOutput(down, down.stderr, undefined, this.gate);
    relay(up, [toClient.stdout, ...(recorded ? [output] : [])]);
    relay(up.stderr, [toClient.stderr, ...(recorded ? [output] : [])]);
    let exit: { code: number | null; signal?: string; dump?: boolean; desc?: string } | undefined;
    up.on('exit', (code: number | null, signal?: string, dump?: boolean, desc?: string) => (exit = { code, signal, dump, desc }));
    let pending = 2; // the channel's close (after all stdout was read) and stderr's end
    const finish = () => {
      if (--pending > 0) return;
      if (recorded) this.recorder.marker('channel closed');
      // everything the target printed reaches the client first, then its exit status, EOF and close
      toClient.flushed(() => {
        try {
          if (exit?.code !== undefined && exit.code !== null) down.exit(exit.code);
          else if (exit?.signal) down.exit(exit.signal, exit.dump ?? false, exit.desc ?? '');
        } catch {
          down.exit(255); // a signal name ssh2 cannot send
        }
        down.stderr.end();
        down.end();
      });
    };
    up.once('close', finish);
    if (up.stderr.readableEnded) finish();
    else up.stderr.once('end', finish);
    // the client closed its side: the upstream channel goes too
    down.once('close', () => up.close());
  }
}

/** Runs `fn`; if it throws (an ssh2 call on a connection that is gone), `otherwise` instead. Never lets it escape into ssh2's parser. */
function guarded(fn: () => void, otherwise: () => void): void {
  try {
    fn();
  } catch {
    otherwise();
  }
}

/**
 * Channels closed under a relay (the peer went away mid-write) emit 'error': without a listener that would be an
 * uncaught exception in the vault process. The channel's close follows and ends what it was part of.
 */
function quiet(...channels: Array<Duplex & { stderr?: unknown }>): void {
  for (const c of channels) {
    c.on('error', () => undefined);
    const err = c.stderr as { on?: (e: string, cb: () => void) => void } | undefined;
    err?.on?.('error', () => undefined);
  }
}

/** A channel as a relay sink (its write answers false above its window's high-water mark). */
function sinkOf(stream: Writable): RelaySink {
  return { write: (d) => stream.write(d), once: (e, cb) => stream.once(e, cb) };
}

/** A forwarded TCP channel (`down` the client's side): both directions, each end passed on, either close closes both. */
function pipeBoth(down: Duplex, up: Duplex, gate: SocketGate): void {
  relay(down, [sinkOf(up)], () => up.end());
  relay(up, [gatedSink(down, gate)], () => down.end());
  const close = () => {
    down.destroy();
    up.destroy();
  };
  down.once('close', close);
  up.once('close', close);
}

/** The upstream refused the channel: the client is told on stderr, with exit status 255 (as OpenSSH's own failures). */
function refused(down: ServerChannel): void {
  if (!down.writable) return;
  down.stderr.write('vault gateway: the target refused the channel\r\n');
  down.exit(255);
  down.end();
}

import { EventEmitter } from 'node:events';
import type { Readable, Writable } from 'node:stream';

/** Something a relayed chunk is written to: false means "above your high-water mark, wait for drain". */
export interface RelaySink {
  write(data: Buffer): boolean;
  once(event: 'drain', cb: () => void): unknown;
}

/**
 * Copies `source` to every sink, with backpressure: when any sink answers false the source is paused until every
 * sink that did has drained, so nothing is buffered beyond each sink's own high-water mark (an SSH channel: its
 * window; the recorder: its bounded buffer). A client that never reads stops the upstream channel's window, and
 * sshd stops the command — memory stays bounded. `end` runs once when the source ends.
 */
export function relay(source: Readable, sinks: RelaySink[], end?: () => void): void {
  let waiting = 0;
  source.on('data', (chunk: Buffer) => {
    for (const sink of sinks) {
      if (!sink.write(chunk)) {
        waiting++;
        sink.once('drain', () => {
          if (--waiting === 0) source.resume();
        });
      }
    }
    if (waiting > 0) source.pause();
  });
  if (end) source.once('end', end);
  source.resume(); // a source paused before (a channel accepted ahead of its upstream) flows now
}

/**
 * The client's TCP connection as one more backpressure point. ssh2's server writes every packet to its socket without
 * looking at the answer, so the SSH window — which the client chooses — would be the only limit: a client that grants
 * a huge window and never reads its socket would have the gateway buffer the target's output without bound (review
 * FINDING 4). `congested()` is true while the socket holds more than `limit` bytes (well above its own high-water mark,
 * so writes keep the socket busy: waiting at every 16 KiB cost a fifth of the download rate); `wait(cb)` runs `cb` now,
 * or once the socket drained. One gate per client connection (one 'drain' listener, whatever the number of channels).
 */
export interface SocketGate {
  congested(): boolean;
  wait(cb: () => void): void;
}

export function socketGate(socket: Writable | undefined, limit = 1024 * 1024): SocketGate {
  const waiting: Array<() => void> = [];
  socket?.on('drain', () => {
    for (const cb of waiting.splice(0)) cb();
  });
  // above `limit` a write has answered false, so 'drain' follows once the socket emptied
  const congested = () => !!socket && socket.writableLength > limit && !socket.destroyed;
  return { congested, wait: (cb) => (congested() ? void waiting.push(cb) : cb()) };
}

const OPEN_GATE: SocketGate = { congested: () => false, wait: (cb) => cb() };

/** A stream as a relay sink that also answers false while the client's socket is congested (waits for both). */
export function gatedSink(stream: Writable, gate: SocketGate): RelaySink {
  let full = false;
  return {
    write: (data) => {
      full = !stream.write(data);
      return !full && !gate.congested();
    },
    once: (_event, cb) => (full ? stream.once('drain', () => gate.wait(cb)) : gate.wait(cb)),
  };
}

/**
 * The two output streams of one SSH channel (stdout, stderr) written one chunk at a time, in order. ssh2 keeps one
 * pending chunk per stream while the peer's window is full but resumes only one of them when the window opens
 * again, so stdout and stderr written concurrently to a full window can leave stderr stuck for good; written in turn
 * (each chunk after the previous one's callback) there is never more than one. Each side is a relay sink whose
 * write answers false once `highWater` bytes wait. `flushed` runs `cb` once everything queued was sent.
 */
export function orderedOutput(
  out: Writable,
  err: Writable,
  highWater = 2 * 1024 * 1024,
  gate: SocketGate = OPEN_GATE,
): { stdout: RelaySink; stderr: RelaySink; flushed(cb: () => void): void } {
  const queue: Array<{ to: Writable; data: Buffer }> = [];
  const drains = new EventEmitter();
  let queued = 0;
  let busy = false;
  let needDrain = false;
  let idle: (() => void) | undefined;
  const pump = (): void => {
    if (busy) return;
    const next = queue.shift();
    if (!next) {
      const done = idle;
      idle = undefined;
      done?.();
      return;
    }
    busy = true;
    // the next chunk once this one is on its way: in the SSH window AND the client's socket has room (gate)
    next.to.write(next.data, () =>
      gate.wait(() => {
        busy = false;
        queued -= next.data.length;
        if (needDrain && queued <= highWater / 2) {
          needDrain = false;
          drains.emit('drain');
        }
        pump();
      }),
    );
  };
  const sink = (to: Writable): RelaySink => ({
    write: (data) => {
      queue.push({ to, data });
      queued += data.length;
      pump();
      if (queued < highWater) return true;
      needDrain = true;
      return false;
    },
    once: (e, cb) => drains.once(e, cb),
  });
  return {
    stdout: sink(out),
    stderr: sink(err),
    flushed: (cb) => {
      if (!busy && queue.length === 0) cb();
      else idle = cb;
    },
  };
}

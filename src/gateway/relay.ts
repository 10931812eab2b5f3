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
 * The two output streams of one SSH channel (stdout, stderr) written one chunk at a time, in order. ssh2 keeps one
 * pending chunk per stream while the peer's window is full but resumes only one of them when the window opens
 * again, so stdout and stderr written concurrently to a full window can leave stderr stuck for good; written in turn
 * (each chunk after the previous one's callback) there is never more than one. Each side is a relay sink whose
 * write answers false once `highWater` bytes wait. `flushed` runs `cb` once everything queued was sent.
 */
export function orderedOutput(out: Writable, err: Writable, highWater = 2 * 1024 * 1024): { stdout: RelaySink; stderr: RelaySink; flushed(cb: () => void): void } {
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
    next.to.write(next.data, () => {
      busy = false;
      queued -= next.data.length;
      if (needDrain && queued <= highWater / 2) {
        needDrain = false;
        drains.emit('drain');
      }
      pump();
    });
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

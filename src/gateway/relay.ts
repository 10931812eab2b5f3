import type { Readable } from 'node:stream';

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
}

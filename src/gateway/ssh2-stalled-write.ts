/**
 * A fix for ssh2 1.17's channel writes stalled on a full window (lib/Channel.js, lib/server.js and lib/client.js,
 * CHANNEL_WINDOW_ADJUST). A write the peer's window cannot take whole keeps its rest in `_chunk` / `_chunkcb` (stderr:
 * `_chunkErr` / `_chunkcbErr`); when the window opens, ssh2 writes that rest with its callback — and never clears
 * them. The next stall of the OTHER stream (stderr after stdout, or stdout after stderr) is then resumed by the stale
 * fields, which ssh2 checks first: the old rest of stdout is sent a second time, its callback runs twice (the stream
 * behind it sends ahead), and the stalled stream is never resumed. Through the gateway that duplicated megabytes of a
 * command's output when its stderr stalled after its stdout had (test/e2e/gateway-channels.e2e-spec.ts, "a client
 * that never reads"). Clearing a stream's pending fields before each of its writes leaves only the current stall's.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports -- ssh2 ships no types for its internal modules
const { Channel } = require('ssh2/lib/Channel') as { Channel: { prototype: { _write: WriteFn } } };

type WriteFn = (data: Buffer, encoding: BufferEncoding | null, cb: () => void) => void;

interface StalledFields {
  _chunk?: Buffer;
  _chunkcb?: () => void;
  _chunkErr?: Buffer;
  _chunkcbErr?: () => void;
}

const patched = new WeakSet<object>();

function wrap(proto: { _write: WriteFn }, clear: (self: unknown) => void): void {
  if (patched.has(proto)) return;
  patched.add(proto);
  const original = proto._write;
  proto._write = function (this: unknown, data, encoding, cb) {
    clear(this);
    return original.call(this, data, encoding, cb);
  };
}

/** Patches ssh2's channel (stdout) writes at once, and its server-side stderr writes through the first server channel. */
export function fixStalledWrites(serverChannel?: { stderr?: unknown }): void {
  wrap(Channel.prototype, (self) => {
    const c = self as StalledFields;
    c._chunk = undefined;
    c._chunkcb = undefined;
  });
  const stderr = serverChannel?.stderr;
  if (stderr && typeof stderr === 'object') {
    wrap(Object.getPrototypeOf(stderr) as { _write: WriteFn }, (self) => {
      const c = (self as { _channel: StalledFields })._channel;
      c._chunkErr = undefined;
      c._chunkcbErr = undefined;
    });
  }
}

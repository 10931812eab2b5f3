import { fixStalledWrites } from './ssh2-stalled-write';

// eslint-disable-next-line @typescript-eslint/no-require-imports -- ssh2 ships no types for its internal modules
const { Channel } = require('ssh2/lib/Channel') as { Channel: new (client: unknown, info: unknown, opts: unknown) => TestChannel };

interface TestChannel {
  outgoing: { window: number };
  _waitWindow: boolean;
  _chunk?: Buffer;
  _chunkcb?: () => void;
  _chunkErr?: Buffer;
  _chunkcbErr?: () => void;
  _write(data: Buffer, enc: null, cb: () => void): void;
  stderr: { _write(data: Buffer, enc: null, cb: () => void): void };
}

/** A server-side ssh2 channel whose protocol records what it sends, and whose peer grants `window` bytes. */
function channel(window: number) {
  const sent: string[] = [];
  const protocol = {
    channelData: (_id: number, d: Buffer) => sent.push(`out:${d.toString()}`),
    channelExtData: (_id: number, d: Buffer) => sent.push(`err:${d.toString()}`),
  };
  const c = new Channel({ _protocol: protocol }, { type: 'session', incoming: { id: 1, window: 1 << 20, packetSize: 32768, state: 'open' }, outgoing: { id: 2, window, packetSize: 32768, state: 'open' } }, { server: true });
  /** What ssh2 (lib/server.js, CHANNEL_WINDOW_ADJUST) does when the peer grants `amount` more bytes. */
  const windowAdjust = (amount: number) => {
    c.outgoing.window += amount;
    if (!c._waitWindow) return;
    c._waitWindow = false;
    if (c._chunk) c._write(c._chunk, null, c._chunkcb!);
    else if (c._chunkcb) c._chunkcb();
    else if (c._chunkErr) c.stderr._write(c._chunkErr, null, c._chunkcbErr!);
    else if (c._chunkcbErr) c._chunkcbErr();
  };
  return { c, sent, windowAdjust };
}

describe("ssh2's stalled channel writes (fixStalledWrites)", () => {
  it('a stdout stall, then a stderr stall: each rest is sent once, each callback runs once, and stderr is resumed', () => {
    const { c, sent, windowAdjust } = channel(4);
    fixStalledWrites(c);
    const calls: string[] = [];
    c._write(Buffer.from('abcdef'), null, () => calls.push('out'));
    windowAdjust(2); // the rest of stdout goes, its callback runs
    c.stderr._write(Buffer.from('XYZ'), null, () => calls.push('err')); // the window is 0 again: stderr stalls
    windowAdjust(10);
    expect(sent).toEqual(['out:abcd', 'out:ef', 'err:XYZ']);
    expect(calls).toEqual(['out', 'err']);
  });
});

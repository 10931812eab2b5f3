import { PassThrough, Writable } from 'node:stream';
import { orderedOutput, relay, RelaySink } from './relay';

/** A sink that holds up to `room` bytes until `drain()` is called. */
function slowSink(room: number) {
  const got: Buffer[] = [];
  let held = 0;
  const listeners: Array<() => void> = [];
  const sink: RelaySink & { drain(): void; got: Buffer[] } = {
    got,
    write(d) {
      got.push(d);
      held += d.length;
      return held < room;
    },
    once(_e, cb) {
      listeners.push(cb);
    },
    drain() {
      held = 0;
      for (const cb of listeners.splice(0)) cb();
    },
  };
  return sink;
}

describe('relay', () => {
  it('pauses the source while a sink is above its mark and resumes when every such sink drained', () => {
    const source = new PassThrough();
    const fast = slowSink(Infinity);
    const slow = slowSink(4);
    const slower = slowSink(4);
    relay(source, [fast, slow, slower]);
    source.write(Buffer.from('abcdef'));
    expect(source.isPaused()).toBe(true);
    slow.drain();
    expect(source.isPaused()).toBe(true);
    slower.drain();
    expect(source.isPaused()).toBe(false);
    expect(Buffer.concat(fast.got).toString()).toBe('abcdef');
  });

  it('ordered output: stdout and stderr reach the channel one chunk at a time, in the order they came; flushed waits for all', async () => {
    const order: string[] = [];
    const pending: Array<() => void> = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const writable = (name: string) =>
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          inFlight++;
          maxInFlight = Math.max(maxInFlight, inFlight);
          order.push(`${name}:${chunk.toString()}`);
          pending.push(() => {
            inFlight--;
            cb();
          });
        },
      });
    const out = orderedOutput(writable('out'), writable('err'), 8);
    expect(out.stdout.write(Buffer.from('1'))).toBe(true);
    out.stderr.write(Buffer.from('2'));
    expect(out.stdout.write(Buffer.from('345678'))).toBe(false);
    let drained = false;
    out.stdout.once('drain', () => (drained = true));
    let flushed = false;
    out.flushed(() => (flushed = true));
    while (pending.length) {
      pending.shift()!();
      await new Promise((r) => setImmediate(r));
    }
    expect(order).toEqual(['out:1', 'err:2', 'out:345678']);
    expect(maxInFlight).toBe(1);
    expect(drained).toBe(true);
    expect(flushed).toBe(true);
  });
});

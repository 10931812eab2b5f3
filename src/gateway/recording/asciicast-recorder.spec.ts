import { createHash } from 'node:crypto';
import { AsciicastRecorder, ChunkSink, DEFAULT_RECORDER_LIMITS, RecorderLimits } from './asciicast-recorder';
import { RecordingStart } from './recording.types';

/** A sink that keeps chunks in memory; `gate` lets a test hold or fail writes. */
class MemorySink implements ChunkSink {
  chunks: string[] = [];
  totals: Array<{ size: number; chunks: number }> = [];
  sealed?: { size: number; sha256: string; chunks: number };
  failed?: string;
  gate: (seq: number) => Promise<void> = () => Promise.resolve();

  async write(seq: number, text: string, totals: { size: number; chunks: number }): Promise<void> {
    await this.gate(seq);
    expect(seq).toBe(this.chunks.length);
    this.chunks.push(text);
    this.totals.push(totals);
  }
  async seal(s: { size: number; sha256: string; chunks: number }): Promise<void> {
    this.sealed = s;
  }
  async fail(reason: string): Promise<void> {
    this.failed = reason;
  }
  get text(): string {
    return this.chunks.join('');
  }
  /** The asciicast lines, parsed (header first). */
  get lines(): unknown[] {
    return this.text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as unknown);
  }
}

const start = (o: Partial<RecordingStart> = {}): RecordingStart => ({
  sessionId: '00000000-0000-4000-8000-000000000001',
  width: 80,
  height: 24,
  term: 'xterm-256color',
  recordInput: false,
  startedAt: new Date('2026-11-30T12:00:00Z'),
  ...o,
});
const limits = (o: Partial<RecorderLimits> = {}): RecorderLimits => ({ ...DEFAULT_RECORDER_LIMITS, flushMs: 60_000, ...o });
const events = (sink: MemorySink) => sink.lines.slice(1) as Array<[number, string, string]>;
const sha = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');
const tick = () => new Promise((r) => setImmediate(r));

describe('AsciicastRecorder', () => {
  it('writes an asciicast v2 header and output events; the seal is the size and SHA-256 of the stored stream', async () => {
    const sink = new MemorySink();
    const rec = new AsciicastRecorder(start(), sink, limits());
    expect(rec.output(Buffer.from('hello\r\n'))).toBe(true);
    rec.output(Buffer.from('world'));
    const seal = await rec.finish();
    expect(sink.lines[0]).toEqual({ version: 2, width: 80, height: 24, timestamp: 1796040000, env: { TERM: 'xterm-256color' } });
    expect(events(sink).map(([, k, t]) => [k, t])).toEqual([
      ['o', 'hello\r\n'],
      ['o', 'world'],
    ]);
    const times = events(sink).map(([t]) => t);
    expect(times.every((t) => typeof t === 'number' && t >= 0)).toBe(true);
    expect(times).toEqual([...times].sort((a, b) => a - b));
    expect(seal).toEqual({ size: Buffer.byteLength(sink.text), sha256: sha(sink.text) });
    expect(sink.sealed).toEqual({ ...seal, chunks: sink.chunks.length });
    expect(sink.failed).toBeUndefined();
  });

  it('writes chunks of whole lines once enough is pending, in order, with running totals', async () => {
    const sink = new MemorySink();
    const rec = new AsciicastRecorder(start(), sink, limits({ chunkBytes: 200 }));
    for (let i = 0; i < 50; i++) rec.output(Buffer.from(`line ${i} `.repeat(5)));
    await tick();
    expect(sink.chunks.length).toBeGreaterThan(3); // written before finish: the chunk size, not the end, decides
    const seal = await rec.finish();
    expect(sink.chunks.every((c) => c.endsWith('\n'))).toBe(true);
    expect(sink.chunks.slice(0, -1).every((c) => Buffer.byteLength(c) >= 200 && Buffer.byteLength(c) < 200 + 120)).toBe(true);
    expect(events(sink)).toHaveLength(50);
    expect(sink.totals.map((t) => t.chunks)).toEqual(sink.chunks.map((_, i) => i + 1));
    expect(sink.totals[sink.totals.length - 1].size).toBe(seal.size);
    expect(seal.sha256).toBe(sha(sink.text));
  });

  it('flushes what is pending on its timer (an idle session is stored within flushMs)', async () => {
    const sink = new MemorySink();
    const rec = new AsciicastRecorder(start(), sink, limits({ flushMs: 20 }));
    rec.output(Buffer.from('$ '));
    await new Promise((r) => setTimeout(r, 80));
    expect(sink.text).toContain('"$ "');
    await rec.finish();
  });

  it('decodes UTF-8 as a stream: a character split across packets (and across chunks) is one character, never U+FFFD', async () => {
    const sink = new MemorySink();
    const rec = new AsciicastRecorder(start(), sink, limits({ chunkBytes: 1 }));
    const euro = Buffer.from('€', 'utf8'); // e2 82 ac
    const smile = Buffer.from('😀', 'utf8'); // 4 bytes
    rec.output(Buffer.concat([Buffer.from('price: '), euro.subarray(0, 1)]));
    await tick(); // the first chunk is written before the character's rest arrives
    expect(sink.chunks.length).toBeGreaterThanOrEqual(1);
    rec.output(euro.subarray(1, 2));
    rec.output(Buffer.concat([euro.subarray(2), Buffer.from(' '), smile.subarray(0, 3)]));
    rec.output(smile.subarray(3));
    await rec.finish();
    expect(sink.chunks.length).toBeGreaterThan(2);
    const text = events(sink)
      .map(([, , t]) => t)
      .join('');
    expect(text).toBe('price: € 😀');
    expect(sink.text).not.toContain('\ufffd');
  });

  it('a character cut short at the end is written as U+FFFD (what was sent, no more)', async () => {
    const sink = new MemorySink();
    const rec = new AsciicastRecorder(start(), sink, limits());
    rec.output(Buffer.from([0x61, 0xe2, 0x82]));
    await rec.finish();
    expect(events(sink).map(([, , t]) => t)).toEqual(['a', '\ufffd']);
  });

  it('records resize and marker events; input only when the policy says so', async () => {
    const sink = new MemorySink();
    const rec = new AsciicastRecorder(start(), sink, limits());
    rec.marker('shell');
    rec.output(Buffer.from('$ '));
    expect(rec.input(Buffer.from('secret typing'))).toBe(true);
    rec.resize(120, 40);
    rec.marker('exec: ls -l "/tmp"');
    await rec.finish();
    expect(events(sink).map(([, k, t]) => [k, t])).toEqual([
      ['m', 'shell'],
      ['o', '$ '],
      ['r', '120x40'],
      ['m', 'exec: ls -l "/tmp"'],
    ]);
    expect(sink.text).not.toContain('secret typing');

    const withInput = new MemorySink();
    const rec2 = new AsciicastRecorder(start({ recordInput: true }), withInput, limits());
    rec2.input(Buffer.from('ls\r'));
    rec2.output(Buffer.from('ls\r\n'));
    await rec2.finish();
    expect(events(withInput).map(([, k, t]) => [k, t])).toEqual([
      ['i', 'ls\r'],
      ['o', 'ls\r\n'],
    ]);
  });

  it("the first terminal size, before anything is shown, is the header's; later ones are resize events", async () => {
    const sink = new MemorySink();
    const rec = new AsciicastRecorder(start(), sink, limits());
    rec.resize(132, 43); // the pty request
    rec.marker('shell');
    rec.output(Buffer.from('$ '));
    rec.resize(100, 30); // a window change
    await rec.finish();
    expect(sink.lines[0]).toMatchObject({ width: 132, height: 43 });
    expect(events(sink).map(([, k, t]) => [k, t])).toEqual([
      ['m', 'shell'],
      ['o', '$ '],
      ['r', '100x30'],
    ]);

    const empty = new MemorySink();
    await new AsciicastRecorder(start(), empty, limits()).finish(); // nothing happened: the header alone
    expect(empty.lines).toEqual([expect.objectContaining({ version: 2, width: 80, height: 24 })]);
  });

  it('answers false above the high-water mark and emits drain once the store caught up', async () => {
    const sink = new MemorySink();
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    sink.gate = (seq) => (seq === 0 ? held : Promise.resolve());
    const rec = new AsciicastRecorder(start(), sink, limits({ chunkBytes: 1024, highWaterBytes: 8 * 1024, capBytes: 64 * 1024 }));
    const answers: boolean[] = [];
    for (let i = 0; i < 20; i++) answers.push(rec.output(Buffer.alloc(1000, 'x')));
    expect(answers.slice(0, 5).every(Boolean)).toBe(true);
    expect(answers[answers.length - 1]).toBe(false);
    const drained = new Promise<void>((r) => rec.once('drain', r));
    // twenty paused channels wait for the same drain, and all are told
    const channels = Array.from({ length: 20 }, () => new Promise<void>((r) => rec.once('drain', r)));
    release();
    await drained;
    await Promise.all(channels);
    expect(rec.bufferedBytes).toBeLessThanOrEqual(4 * 1024);
    const seal = await rec.finish();
    expect(seal.sha256).toBe(sha(sink.text));
  });

  it('fails closed when the buffer passes its cap (the store is stuck): onFailure once, finish rejects, the row marked failed', async () => {
    const sink = new MemorySink();
    sink.gate = () => new Promise<void>(() => undefined); // never written
    const rec = new AsciicastRecorder(start(), sink, limits({ chunkBytes: 1024, highWaterBytes: 4 * 1024, capBytes: 16 * 1024 }));
    const failures: Error[] = [];
    rec.onFailure((e) => failures.push(e));
    for (let i = 0; i < 40; i++) rec.output(Buffer.alloc(1000, 'y'));
    expect(failures).toHaveLength(1);
    expect(failures[0].message).toMatch(/cap of 16384 bytes/);
    expect(sink.failed).toMatch(/cap/);
    await expect(rec.finish()).rejects.toThrow(/cap/);
    // told at once when registered after the failure too
    const late = await new Promise<Error>((r) => rec.onFailure(r));
    expect(late).toBe(failures[0]);
    expect(sink.sealed).toBeUndefined();
  });

  it('retries a failed chunk write, then fails closed', async () => {
    const flaky = new MemorySink();
    let tries = 0;
    flaky.gate = () => (++tries === 1 ? Promise.reject(new Error('connection reset')) : Promise.resolve());
    const ok = new AsciicastRecorder(start(), flaky, limits());
    ok.output(Buffer.from('survives one failed try'));
    await ok.finish();
    expect(tries).toBe(2);
    expect(flaky.failed).toBeUndefined();

    const broken = new MemorySink();
    broken.gate = () => Promise.reject(Object.assign(new Error('insert failed: value "s3cr3t"'), { code: '23514' }));
    const rec = new AsciicastRecorder(start(), broken, limits({ attempts: 3 }));
    const failed = new Promise<Error>((r) => rec.onFailure(r));
    rec.output(Buffer.from('lost'));
    await expect(rec.finish()).rejects.toThrow(/chunk 0 could not be written: Error 23514/);
    expect((await failed).message).not.toContain('s3cr3t'); // the reason names the error, never its text
    expect(broken.failed).toMatch(/chunk 0/);
  });

  it('a write that hangs past the write timeout fails the recording', async () => {
    const sink = new MemorySink();
    sink.gate = () => new Promise<void>(() => undefined);
    const rec = new AsciicastRecorder(start(), sink, limits({ writeTimeoutMs: 50 }));
    const failed = new Promise<Error>((r) => rec.onFailure(r));
    rec.output(Buffer.from('$ '));
    await expect(rec.finish()).rejects.toThrow(/longer than 50 ms/);
    expect((await failed).message).toMatch(/longer than 50 ms/);
  });

  it('ignores events after finish and answers the same seal again', async () => {
    const sink = new MemorySink();
    const rec = new AsciicastRecorder(start(), sink, limits());
    rec.output(Buffer.from('a'));
    const first = await rec.finish();
    rec.output(Buffer.from('late'));
    rec.marker('late');
    expect(await rec.finish()).toBe(first);
    expect(sink.text).not.toContain('late');
  });
});

import { createHash, Hash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { TextDecoder } from 'node:util';
import { Recorder, RecordingSeal, RecordingStart } from './recording.types';

/** Where a recording's chunks go (the database in the vault; anything in a unit test). Calls come one at a time, in order. */
export interface ChunkSink {
  /** Stores chunk `seq` (0, 1, 2, …): `text` is whole asciicast lines; `totals` what is stored once it is written. */
  write(seq: number, text: string, totals: { size: number; chunks: number }): Promise<void>;
  /** Marks the recording complete with its size, hash and chunk count. */
  seal(seal: RecordingSeal & { chunks: number }): Promise<void>;
  /** Marks the recording failed (best effort: the store may be what failed). `reason` never holds recorded text. */
  fail(reason: string): Promise<void>;
}

export interface RecorderLimits {
  /** A chunk is written once this many bytes are pending … */
  chunkBytes: number;
  /** … or this long after the last write, whatever is pending. */
  flushMs: number;
  /** Above this many unwritten bytes `output`/`input` answer false (the caller pauses its source until 'drain'). */
  highWaterBytes: number;
  /** Above this many unwritten bytes the recording fails (the session is ended: fail closed). */
  capBytes: number;
  /** Tries per chunk before the recording fails (a transient database error is retried). */
  attempts: number;
  /** One try of a chunk write that takes longer than this counts as failed. */
  writeTimeoutMs: number;
}

export const DEFAULT_RECORDER_LIMITS: RecorderLimits = {
  chunkBytes: 256 * 1024,
  flushMs: 2000,
  highWaterBytes: 4 * 1024 * 1024,
  capBytes: 16 * 1024 * 1024,
  attempts: 3,
  writeTimeoutMs: 15_000,
};

const RETRY_BASE_MS = 100;

/** The largest terminal dimension a recording holds (the header's bound too): a client may claim 4,294,967,295 columns. */
export const MAX_TERMINAL_SIZE = 10_000;
const terminalSize = (n: number) => Math.min(Math.trunc(n), MAX_TERMINAL_SIZE);

/** Seconds since the start with microsecond precision, as asciicast writes them. */
const seconds = (ms: number) => Math.round(Math.max(0, ms) * 1000) / 1e6;

/** A short, secret-free name for what went wrong (an error message may quote SQL parameters). */
function reasonOf(e: unknown): string {
  if (e instanceof RecordingError) return e.message;
  const code = (e as { code?: unknown })?.code;
  const name = e instanceof Error ? e.constructor.name : typeof e;
  return typeof code === 'string' ? `${name} ${code}` : name;
}

/** Why a recording failed, in words safe for logs and audit events. */
export class RecordingError extends Error {}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RecordingError(`a chunk write took longer than ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * One session's recording as an asciicast v2 stream (https://docs.asciinema.org/manual/asciicast/v2/): a header line,
 * then one JSON line per event. Output (and input, when recorded) is decoded as UTF-8 with a streaming decoder, so a
 * character split across two packets is one character. Lines are hashed (SHA-256) as they are made, kept in a bounded
 * buffer, and written to the sink in chunks of whole lines, one write at a time and in order, so the chunks
 * concatenated are exactly the hashed stream.
 *
 * Never blocking the session: `output` answers at once; above the high-water mark it answers false and the caller
 * pauses its source until 'drain'. Fail closed: a chunk that cannot be written (after retries), a write that hangs,
 * or a buffer past its cap fails the recording, and the `onFailure` callbacks are called once.
 */
export class AsciicastRecorder implements Recorder {
  // every paused channel of the session waits for the one drain: more than EventEmitter's default 10 is normal
  private readonly events = new EventEmitter().setMaxListeners(0);
  private readonly hash: Hash = createHash('sha256');
  private readonly outDecoder = new TextDecoder('utf-8');
  private readonly inDecoder = new TextDecoder('utf-8');
  private readonly t0 = performance.now();
  private readonly failureCallbacks: Array<(err: Error) => void> = [];
  private readonly timer: NodeJS.Timeout;
  private pending: string[] = [];
  private pendingBytes = 0;
  /** Bytes made but not yet written (pending plus the chunk being written). */
  private buffered = 0;
  private size = 0;
  private seq = 0;
  private writing = false;
  private needDrain = false;
  /** The header's terminal size while the header is not written yet (a resize before any event changes it). */
  private header?: { width: number; height: number };
  private failure?: Error;
  private finishing?: Promise<RecordingSeal>;
  private idle?: () => void;

  constructor(
    private readonly start: RecordingStart,
    private readonly sink: ChunkSink,
    private readonly limits: RecorderLimits = DEFAULT_RECORDER_LIMITS,
  ) {
    this.header = { width: start.width, height: start.height };
    this.timer = setInterval(() => {
      this.writeHeader();
      this.kick();
    }, limits.flushMs);
    this.timer.unref();
  }

  output(data: Buffer): boolean {
    return this.event('o', this.outDecoder, data);
  }

  input(data: Buffer): boolean {
    if (!this.start.recordInput) return true;
    return this.event('i', this.inDecoder, data);
  }

  /** A size from the client (pty-req, window-change: any uint32): kept within what the header allows, 0 (unknown) skipped. */
  resize(width: number, height: number): void {
    if (this.closed() || !(width >= 1 && height >= 1)) return;
    // the first terminal size (the pty request) before anything was shown is the header's: the player starts at it
    if (this.header) this.header = { width: terminalSize(width), height: terminalSize(height) };
    else this.append(JSON.stringify([this.now(), 'r', `${terminalSize(width)}x${terminalSize(height)}`]));
  }

  marker(label: string): void {
    if (this.closed()) return;
    this.append(JSON.stringify([this.now(), 'm', label]));
  }

  once(event: 'drain', cb: () => void): void {
    this.events.once(event, cb);
  }

  onFailure(cb: (err: Error) => void): void {
    const failed = this.failure;
    if (failed) queueMicrotask(() => cb(failed));
    else this.failureCallbacks.push(cb);
  }

  finish(): Promise<RecordingSeal> {
    this.finishing ??= this.seal();
    return this.finishing;
  }

  /** Unwritten bytes (for tests and metrics). */
  get bufferedBytes(): number {
    return this.buffered;
  }

  // ---- internals --------------------------------------------------------------------------------------------------

  private closed(): boolean {
    return this.failure !== undefined || this.finishing !== undefined;
  }

  private now(): number {
    return seconds(performance.now() - this.t0);
  }

  private event(kind: 'o' | 'i', decoder: TextDecoder, data: Buffer): boolean {
    if (this.closed()) return true;
    const text = decoder.decode(data, { stream: true });
    if (text.length > 0) this.append(JSON.stringify([this.now(), kind, text]));
    if (this.failure) return true;
    if (this.buffered < this.limits.highWaterBytes) return true;
    this.needDrain = true;
    return false;
  }

  /** The header line, once: before the first event, at the first flush, or at the end. */
  private writeHeader(): void {
    const h = this.header;
    if (!h) return;
    this.header = undefined;
    const env: Record<string, string> = { TERM: this.start.term ?? 'xterm' };
    this.line(JSON.stringify({ version: 2, width: h.width, height: h.height, timestamp: Math.floor(this.start.startedAt.getTime() / 1000), env }));
  }

  /** One event line (after the header). */
  private append(line: string): void {
    this.writeHeader();
    this.line(line);
  }

  private line(line: string): void {
    const text = line + '\n';
    const bytes = Buffer.byteLength(text, 'utf8');
    this.hash.update(text, 'utf8');
    this.size += bytes;
    this.pending.push(text);
    this.pendingBytes += bytes;
    this.buffered += bytes;
    if (this.buffered > this.limits.capBytes) {
      this.fail(new RecordingError(`the recording buffer passed its cap of ${this.limits.capBytes} bytes (the store is too slow)`));
      return;
    }
    if (this.pendingBytes >= this.limits.chunkBytes) this.kick();
  }

  /** Starts writing the next chunk unless one is being written (then its end starts the next). */
  private kick(): void {
    if (this.writing || this.failure || this.pending.length === 0) return;
    let take = 0;
    let bytes = 0;
    while (take < this.pending.length && bytes < this.limits.chunkBytes) bytes += Buffer.byteLength(this.pending[take++], 'utf8');
    const text = this.pending.slice(0, take).join('');
    this.pending = this.pending.slice(take);
    this.pendingBytes -= bytes;
    this.writing = true;
    void this.writeChunk(text, bytes);
  }

  private async writeChunk(text: string, bytes: number): Promise<void> {
    const seq = this.seq;
    const totals = { size: this.size - this.buffered + bytes, chunks: seq + 1 };
    for (let attempt = 1; ; attempt++) {
      try {
        await withTimeout(this.sink.write(seq, text, totals), this.limits.writeTimeoutMs);
        break;
      } catch (e) {
        if (this.failure) return;
        if (attempt >= this.limits.attempts || e instanceof RecordingError) {
          this.fail(new RecordingError(`chunk ${seq} could not be written: ${reasonOf(e)}`));
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, RETRY_BASE_MS * 2 ** (attempt - 1)));
        if (this.failure) return;
      }
    }
    this.seq++;
    this.buffered -= bytes;
    this.writing = false;
    if (this.needDrain && this.buffered <= this.limits.highWaterBytes / 2) {
      this.needDrain = false;
      this.events.emit('drain');
    }
    if (this.pendingBytes >= this.limits.chunkBytes || (this.finishing && this.pending.length > 0)) this.kick();
    else if (this.pending.length === 0) this.idle?.();
  }

  private async seal(): Promise<RecordingSeal> {
    if (this.failure) throw this.failure;
    this.writeHeader();
    // what the decoders still hold (a character cut short at the end) is written as U+FFFD
    const rest = this.outDecoder.decode();
    if (rest) this.append(JSON.stringify([this.now(), 'o', rest]));
    const restIn = this.inDecoder.decode();
    if (restIn && this.start.recordInput) this.append(JSON.stringify([this.now(), 'i', restIn]));
    clearInterval(this.timer);
    await new Promise<void>((resolve, reject) => {
      if (this.failure) return reject(this.failure);
      this.idle = resolve;
      this.failureCallbacks.push(reject);
      if (!this.writing && this.pending.length === 0) resolve();
      else this.kick();
    });
    const result = { size: this.size, sha256: this.hash.digest('hex') };
    try {
      await withTimeout(this.sink.seal({ ...result, chunks: this.seq }), this.limits.writeTimeoutMs);
    } catch (e) {
      const err = new RecordingError(`the recording could not be sealed: ${reasonOf(e)}`);
      this.fail(err);
      throw err;
    }
    return result;
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    clearInterval(this.timer);
    this.pending = [];
    void this.sink.fail(err.message).catch(() => undefined);
    for (const cb of this.failureCallbacks.splice(0)) {
      try {
        cb(err);
      } catch {
        // a callback that throws must not keep the others from being told
      }
    }
  }
}

import { Injectable, Logger } from '@nestjs/common';
import { createHash } from 'node:crypto';
import { Counter } from 'prom-client';
import { DataSource } from 'typeorm';
import { Clock } from '../../common/clock';
import type { Queryable } from '../../database/claimed-work';
import { SecretBoxService, SecretRef } from '../../crypto/secret-box.service';
import { MetricsService } from '../../metrics/metrics.service';
import { AsciicastRecorder, ChunkSink, DEFAULT_RECORDER_LIMITS, RecorderLimits } from './asciicast-recorder';
import { RecordingStore } from './recording-store';
import { Recorder, RecordingStart } from './recording.types';

export type { Recorder, RecordingSeal, RecordingStart } from './recording.types';

/** Where chunk `seq` of a session's recording lives: its ciphertext is bound to both (moved or swapped, it fails). */
export const chunkRef = (sessionId: string, seq: number): SecretRef => ({ table: 'session_recording_chunks', rowId: `${sessionId}:${seq}`, column: 'data' });

/** Chunks read per query when a recording is replayed or verified. */
const READ_BATCH = 32;

/** What the stored chunks of a recording hold, decrypted and hashed. */
export interface StoredDigest {
  size: number;
  sha256: string;
  chunks: number;
  /** What could not be read (a chunk that fails to decrypt, a gap in the sequence); empty when all read. */
  problems: string[];
}

/** Starts session recordings (asciicast v2, written in encrypted chunks, sealed with size and SHA-256) and reads them back. */
@Injectable()
export class RecordingService {
  private readonly logger = new Logger(RecordingService.name);
  private readonly ended: Counter<'outcome'>;
  private readonly written: Counter;

  constructor(
    private readonly store: RecordingStore,
    private readonly box: SecretBoxService,
    private readonly clock: Clock,
    private readonly dataSource: DataSource,
    metrics: MetricsService,
  ) {
    this.ended = new Counter({
      name: 'vault_session_recordings_total',
      help: 'Session recordings this instance ended, by outcome (complete: sealed; failed: could not be written, the session was ended)',
      labelNames: ['outcome'] as const,
      registers: [metrics.registry],
    });
    for (const outcome of ['complete', 'failed']) this.ended.inc({ outcome }, 0);
    this.written = new Counter({
      name: 'vault_session_recording_bytes_total',
      help: 'Bytes of session recordings (asciicast, before encryption) this instance wrote to the database',
      registers: [metrics.registry],
    });
  }

  /** Creates the recording row; rejects when it cannot (the gateway then refuses the connection). `limits`: tests. */
  async start(o: RecordingStart, limits: Partial<RecorderLimits> = {}): Promise<Recorder> {
    const width = clampSize(o.width, 80);
    const height = clampSize(o.height, 24);
    await this.store.create({ sessionId: o.sessionId, width, height, recordInput: o.recordInput, startedAt: o.startedAt });
    const recorder = new AsciicastRecorder({ ...o, width, height, term: termOf(o.term) }, this.sinkFor(o.sessionId), { ...DEFAULT_RECORDER_LIMITS, ...limits });
    recorder.onFailure((err) => this.logger.warn({ sessionId: o.sessionId, reason: err.message }, 'session recording failed'));
    return recorder;
  }

  /**
   * The recordings of sessions ended without their recorder (the instance that held them was lost): marked failed,
   * in the caller's transaction, so no recording stays `recording` for ever. What was written is kept (and readable).
   */
  abandon(db: Queryable, sessionIds: string[]): Promise<void> {
    return this.store.abandon(db, sessionIds, 'the instance recording the session was lost before it ended', this.clock.now());
  }

  /** The plaintext asciicast, chunk by chunk in order (a chunk that does not decrypt throws). */
  async *plaintext(sessionId: string): AsyncGenerator<string> {
    for await (const chunk of this.decrypted(sessionId)) {
      if (chunk.problem) throw new Error(chunk.problem);
      yield chunk.text;
    }
  }

  /** Decrypts and hashes every stored chunk, noting what cannot be read instead of stopping at it. */
  async digest(sessionId: string): Promise<StoredDigest> {
    const hash = createHash('sha256');
    const problems: string[] = [];
    let size = 0;
    let chunks = 0;
    for await (const chunk of this.decrypted(sessionId)) {
      chunks++;
      if (chunk.problem) {
        problems.push(chunk.problem);
        continue;
      }
      const bytes = Buffer.from(chunk.text, 'utf8');
      if (bytes.length !== chunk.size) problems.push(`chunk ${chunk.seq} holds ${bytes.length} bytes, its row says ${chunk.size}`);
      hash.update(bytes);
      size += bytes.length;
    }
    return { size, sha256: hash.digest('hex'), chunks, problems };
  }

  private async *decrypted(sessionId: string): AsyncGenerator<{ seq: number; text: string; size: number; problem?: string }> {
    let after = -1;
    for (;;) {
      const batch = await this.store.chunks(this.dataSource, sessionId, after, READ_BATCH);
      for (const c of batch) {
        if (c.seq !== after + 1) yield { seq: c.seq, text: '', size: 0, problem: `chunks ${after + 1}…${c.seq - 1} are missing` };
        after = c.seq;
        let text: string;
        try {
          text = this.box.decrypt(chunkRef(sessionId, c.seq), c.data);
        } catch {
          yield { seq: c.seq, text: '', size: c.size, problem: `chunk ${c.seq} does not decrypt (changed, moved or from another recording)` };
          continue;
        }
        yield { seq: c.seq, text, size: c.size };
      }
      if (batch.length < READ_BATCH) return;
    }
  }

  private sinkFor(sessionId: string): ChunkSink {
    return {
      write: async (seq, text, totals) => {
        const size = Buffer.byteLength(text, 'utf8');
        await this.store.appendChunk(sessionId, { seq, data: this.box.encrypt(chunkRef(sessionId, seq), text), size }, totals);
        this.written.inc(size);
      },
      seal: async (s) => {
        await this.store.seal(sessionId, { ...s, endedAt: this.clock.now() });
        this.ended.inc({ outcome: 'complete' });
      },
      fail: (reason) => {
        this.ended.inc({ outcome: 'failed' });
        return this.store.markFailed(sessionId, reason, this.clock.now());
      },
    };
  }
}

/** A terminal size from the client, kept sane (a PTY request may say 0 for "unknown"). */
function clampSize(n: number, fallback: number): number {
  return Number.isInteger(n) && n > 0 ? Math.min(n, 10_000) : fallback;
}

/** TERM as the client sent it, if it looks like a terminal name (it is shown by players). */
function termOf(term: string | undefined): string {
  return term && /^[A-Za-z0-9._+-]{1,64}$/.test(term) ? term : 'xterm';
}

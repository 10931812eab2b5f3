import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { Queryable } from '../../database/claimed-work';

export type RecordingStatus = 'recording' | 'complete' | 'failed';
export const RECORDING_STATUSES: RecordingStatus[] = ['recording', 'complete', 'failed'];

/** A recording's row (never its chunks). */
export interface RecordingRow {
  sessionId: string;
  status: RecordingStatus;
  width: number;
  height: number;
  recordInput: boolean;
  startedAt: Date;
  endedAt: Date | null;
  /** Bytes of plaintext asciicast stored (the sealed size once complete); a decimal string (bigint). */
  size: string;
  chunkCount: number;
  sha256: string | null;
  failure: string | null;
}

/** One stored chunk: the ciphertext and the size of its plaintext. */
export interface StoredChunk {
  seq: number;
  data: Buffer;
  size: number;
}

/** The columns of RecordingRow, for statements that join the recording (`alias`: its alias). */
export const recordingColumns = (alias: string) => `${alias}.session_id AS "sessionId", ${alias}.status, ${alias}.width, ${alias}.height,
  ${alias}.record_input AS "recordInput", ${alias}.started_at AS "startedAt", ${alias}.ended_at AS "endedAt", ${alias}.size::text AS size,
  ${alias}.chunk_count AS "chunkCount", ${alias}.sha256, ${alias}.failure`;

/**
 * Every statement on `session_recordings` and `session_recording_chunks`. A recording moves recording → complete
 * (sealed) or recording → failed, each transition guarded in its WHERE; chunks are only ever appended.
 */
@Injectable()
export class RecordingStore {
  constructor(private readonly dataSource: DataSource) {}

  async create(row: { sessionId: string; width: number; height: number; recordInput: boolean; startedAt: Date }): Promise<void> {
    await this.dataSource.query(
      `INSERT INTO session_recordings (session_id, width, height, record_input, started_at) VALUES ($1, $2, $3, $4, $5)`,
      [row.sessionId, row.width, row.height, row.recordInput, row.startedAt],
    );
  }

  /** Appends chunk `seq` and moves the recording's running totals, in one transaction (only while it records). */
  async appendChunk(sessionId: string, chunk: StoredChunk, totals: { size: number; chunks: number }): Promise<void> {
    await this.dataSource.transaction(async (em) => {
      const [, updated]: [unknown, number] = await em.query(
        `UPDATE session_recordings SET size = $2, chunk_count = $3 WHERE session_id = $1 AND status = 'recording'`,
        [sessionId, totals.size, totals.chunks],
      );
      if (updated !== 1) throw new Error('the recording is not being recorded');
      await em.query(`INSERT INTO session_recording_chunks (session_id, seq, data, size) VALUES ($1, $2, $3, $4)`, [sessionId, chunk.seq, chunk.data, chunk.size]);
    });
  }

  /** recording → complete, with what the chunks hold. */
  async seal(sessionId: string, s: { size: number; sha256: string; chunks: number; endedAt: Date }): Promise<void> {
    const [, updated]: [unknown, number] = await this.dataSource.query(
      `UPDATE session_recordings SET status = 'complete', size = $2, sha256 = $3, chunk_count = $4, ended_at = $5
        WHERE session_id = $1 AND status = 'recording'
          AND (SELECT count(*) FROM session_recording_chunks c WHERE c.session_id = $1) = $4`,
      [sessionId, s.size, s.sha256, s.chunks, s.endedAt],
    );
    if (updated !== 1) throw new Error('the recording could not be sealed (not recording, or chunks missing)');
  }

  /** recording → failed (a no-op for one already complete or failed). */
  async markFailed(sessionId: string, reason: string, endedAt: Date): Promise<void> {
    await this.dataSource.query(`UPDATE session_recordings SET status = 'failed', failure = $2, ended_at = $3 WHERE session_id = $1 AND status = 'recording'`, [
      sessionId,
      reason.slice(0, 500),
      endedAt,
    ]);
  }

  /** recording → failed for recordings nobody will finish (their instance was lost), in the caller's transaction. */
  async abandon(db: Queryable, sessionIds: string[], reason: string, endedAt: Date): Promise<void> {
    if (sessionIds.length === 0) return;
    await db.query(`UPDATE session_recordings SET status = 'failed', failure = $2, ended_at = $3 WHERE session_id = ANY($1::uuid[]) AND status = 'recording'`, [
      sessionIds,
      reason,
      endedAt,
    ]);
  }

  async find(db: Queryable, sessionId: string): Promise<RecordingRow | null> {
    const rows = (await db.query(`SELECT ${recordingColumns('r')} FROM session_recordings r WHERE r.session_id = $1`, [sessionId])) as RecordingRow[];
    return rows[0] ?? null;
  }

  /** The recordings of these sessions (those that have one). */
  async findMany(db: Queryable, sessionIds: string[]): Promise<Map<string, RecordingRow>> {
    if (sessionIds.length === 0) return new Map();
    const rows = (await db.query(`SELECT ${recordingColumns('r')} FROM session_recordings r WHERE r.session_id = ANY($1::uuid[])`, [sessionIds])) as RecordingRow[];
    return new Map(rows.map((r) => [r.sessionId, r]));
  }

  /** Up to `limit` chunks after `afterSeq`, in order. */
  async chunks(db: Queryable, sessionId: string, afterSeq: number, limit: number): Promise<StoredChunk[]> {
    return (await db.query(`SELECT seq, data, size FROM session_recording_chunks WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, [sessionId, afterSeq, limit])) as StoredChunk[];
  }
}

import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Recordings of SSH gateway sessions (issue 16): one row per gateway session (`session_recordings`, keyed by the
 * session) and its asciicast v2 text in chunks (`session_recording_chunks`), each chunk encrypted with the keyring and
 * bound to (session id, chunk seq), so a chunk moved to another place or session fails to decrypt. A complete
 * recording carries its size and the SHA-256 of the plaintext stream; the same hash is in the `gateway.session_ended`
 * audit event, which the audit chain vouches for. A recording is evidence: removing its session is refused.
 */
export class SessionRecordings1766000000001 implements MigrationInterface {
  name = 'SessionRecordings1766000000001';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE session_recordings (
        session_id uuid PRIMARY KEY REFERENCES gateway_sessions (id) ON DELETE RESTRICT,
        status text NOT NULL DEFAULT 'recording' CHECK (status IN ('recording', 'complete', 'failed')),
        format text NOT NULL DEFAULT 'asciicast-v2',
        width integer NOT NULL CHECK (width > 0),
        height integer NOT NULL CHECK (height > 0),
        record_input boolean NOT NULL,
        started_at timestamptz NOT NULL,
        ended_at timestamptz,
        size bigint NOT NULL DEFAULT 0 CHECK (size >= 0),
        chunk_count integer NOT NULL DEFAULT 0 CHECK (chunk_count >= 0),
        sha256 text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
        failure text,
        CONSTRAINT session_recordings_sealed CHECK (status <> 'complete' OR (sha256 IS NOT NULL AND ended_at IS NOT NULL))
      )`);
    await q.query(`
      CREATE TABLE session_recording_chunks (
        session_id uuid NOT NULL REFERENCES session_recordings (session_id) ON DELETE RESTRICT,
        seq integer NOT NULL CHECK (seq >= 0),
        data bytea NOT NULL,
        size integer NOT NULL CHECK (size >= 0),
        written_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (session_id, seq)
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE session_recording_chunks');
    await q.query('DROP TABLE session_recordings');
  }
}

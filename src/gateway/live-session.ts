import type { Client, Connection } from 'ssh2';
import type { SessionEndReason } from './gateway-store';
import type { Recorder, RecordingSeal } from './recording/recording.service';

/** Records the end of a session (row, audit event): called once per session. */
export type SessionEnded = (id: string, reason: SessionEndReason, seal: RecordingSeal | null) => Promise<void>;

/**
 * One live gateway session on this instance: the client's connection, the one upstream connection, its recorder.
 * `end` is idempotent: the first reason wins; both connections are closed, the recording is sealed (its size and
 * hash go into `gateway.session_ended`), and the end is recorded. A recording that cannot be sealed turns the reason
 * into `recording_failed` (fail closed, audited).
 */
export class LiveGatewaySession {
  recorder?: Recorder;
  private ending?: Promise<void>;

  constructor(
    readonly id: string,
    private readonly client: Connection,
    private readonly upstream: Client,
    private readonly ended: SessionEnded,
  ) {}

  end(reason: SessionEndReason): Promise<void> {
    this.ending ??= this.close(reason);
    return this.ending;
  }

  private async close(reason: SessionEndReason): Promise<void> {
    this.client.end();
    this.upstream.end();
    let seal: RecordingSeal | null = null;
    let final = reason;
    if (this.recorder) {
      try {
        seal = await this.recorder.finish();
      } catch {
        final = 'recording_failed';
      }
    } else if (reason !== 'recording_failed') {
      final = 'error';
    }
    await this.ended(this.id, final, seal);
  }
}

import { Injectable, Logger } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { Clock } from '../common/clock';
import { errorType } from '../database/claimed-work';
import { UnitOfWork } from '../database/unit-of-work';
import { GatewayStore, SessionEndReason } from './gateway-store';
import { LiveGatewaySession } from './live-session';
import { RecordingService, RecordingSeal } from './recording/recording.service';

/** How often each instance asks the database which of its live sessions must end. */
const POLL_MS = 1000;
/**
 * Fail closed: when the database could not be asked this long, this instance can no longer learn of a check-in, revoke
 * or terminate made on another instance, so its live sessions end (`error`).
 */
const FAIL_CLOSED_MS = 30_000;
/** Housekeeping: stamp this instance's sessions, end those of instances that died, forget old tickets. */
const HOUSEKEEPING_MS = 30_000;
/** A live session nobody stamped for this long lost its instance. */
const LOST_AFTER_SECONDS = 120;
/** Spent or expired tickets are kept this long after they expired (then only their id lives on in their session). */
const TICKET_KEEP_SECONDS = 3600;

/**
 * The live gateway sessions of this instance and how they end. Every second, while it holds any, the instance asks
 * the database which must end — the checkout checked in, revoked or past its lease, the one-time account no longer
 * active, an admin's terminate — and closes them (both sides) with that reason. The end is recorded once: the row and
 * `gateway.session_ended` with the recording's size and hash. Every 30 s (housekeeping) its sessions are stamped,
 * sessions of an instance that died are ended (`error`, audited, their recordings marked failed) and old tickets
 * forgotten. At shutdown every live session ends (`shutdown`) before the database closes.
 */
@Injectable()
export class GatewaySessionTracker {
  private readonly logger = new Logger('SshGateway');
  private readonly live = new Map<string, LiveGatewaySession>();
  private poll?: NodeJS.Timeout;
  private housekeeper?: NodeJS.Timeout;
  private polling = false;
  /** When the last poll succeeded (or the poll started), monotonic ms. */
  private polledAt = performance.now();
  /** Tests shorten it. */
  failClosedMs = FAIL_CLOSED_MS;

  constructor(
    private readonly dataSource: DataSource,
    private readonly uow: UnitOfWork,
    private readonly store: GatewayStore,
    private readonly recordings: RecordingService,
    private readonly clock: Clock,
  ) {}

  /** Starts the housekeeping timer (the gateway listens). */
  start(): void {
    this.housekeeper ??= setInterval(() => void this.housekeeping().catch((e: unknown) => this.logger.warn({ err: errorType(e) }, 'SSH gateway housekeeping failed')), HOUSEKEEPING_MS);
    this.housekeeper.unref();
  }

  /** Ends every live session (reason `shutdown`) and stops the timers. */
  async stop(): Promise<void> {
    if (this.poll) clearInterval(this.poll);
    if (this.housekeeper) clearInterval(this.housekeeper);
    await Promise.all([...this.live.values()].map((s) => s.end('shutdown')));
  }

  /** The ids of this instance's live sessions. */
  ids(): string[] {
    return [...this.live.keys()];
  }

  get size(): number {
    return this.live.size;
  }

  /** A session opened on this instance: watched until it ends (its end is recorded through `ended`). */
  add(session: LiveGatewaySession): void {
    this.live.set(session.id, session);
    if (this.poll) return;
    this.polledAt = performance.now();
    this.poll = setInterval(() => void this.sweep(), POLL_MS);
    this.poll.unref();
  }

  /** Records the end once (row + `gateway.session_ended` with the recording's hash); the session closed both sides. */
  readonly ended = async (id: string, reason: SessionEndReason, seal: RecordingSeal | null): Promise<void> => {
    try {
      await this.uow.run(async ({ em, audit }) => {
        const recorded = await this.store.end(em, id, reason, this.clock.now());
        if (!recorded) return;
        await audit({
          type: 'gateway.session_ended',
          actor: null,
          subjectType: 'gateway_session',
          subjectId: id,
          outcome: recorded === 'recording_failed' || recorded === 'error' ? 'failure' : 'success',
          details: { sessionId: id, reason: recorded, recording: seal },
        });
      });
    } catch (e) {
      this.logger.error({ sessionId: id, reason, err: errorType(e) }, 'the end of a gateway session could not be recorded');
    } finally {
      this.live.delete(id);
    }
  };

  /**
   * Every 30 s on each instance: its live sessions are stamped; sessions whose instance died (not stamped for two
   * minutes) are ended with reason `error` and audited; tickets that expired an hour ago are forgotten.
   */
  async housekeeping(): Promise<void> {
    await this.store.touch(this.dataSource, this.ids());
    const now = this.clock.now();
    await this.uow.run(async ({ em, audit }) => {
      const lost = await this.store.endLost(em, LOST_AFTER_SECONDS, now);
      // their recordings will never be finished: marked failed, not left `recording`
      if (lost.length) await this.recordings.abandon(em, lost.map((l) => l.id));
      for (const one of lost) {
        const details = { sessionId: one.id, reason: 'error', because: 'instance_lost', instanceId: one.instanceId, recording: null };
        await audit({ type: 'gateway.session_ended', actor: null, subjectType: 'gateway_session', subjectId: one.id, outcome: 'failure', details });
      }
    });
    await this.store.purgeTickets(this.dataSource, new Date(now.getTime() - TICKET_KEEP_SECONDS * 1000));
  }

  /**
   * One poll: the live sessions of this instance that must end, closed with their reason. When the database has not
   * answered a poll for `failClosedMs` (down, or a poll hanging), every live session ends (`error`): a check-in on
   * another instance must not be outlived.
   */
  private async sweep(): Promise<void> {
    if (this.live.size === 0) {
      clearInterval(this.poll);
      this.poll = undefined;
      return;
    }
    if (performance.now() - this.polledAt > this.failClosedMs) {
      this.logger.error({ sessions: this.live.size }, 'SSH gateway: the database has not answered the end poll for too long; live sessions are ended (fail closed)');
      this.polledAt = performance.now();
      for (const session of this.live.values()) void session.end('error');
      return;
    }
    if (this.polling) return;
    this.polling = true;
    try {
      const due = await this.store.dueToEnd(this.dataSource, this.ids(), this.clock.now());
      this.polledAt = performance.now();
      for (const { id, reason } of due) void this.live.get(id)?.end(reason);
    } catch (e) {
      this.logger.warn({ err: errorType(e) }, 'SSH gateway: checking live sessions failed; retried in a second');
    } finally {
      this.polling = false;
    }
  }
}

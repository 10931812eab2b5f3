import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { Counter, Gauge } from 'prom-client';
import { APP_CONFIG, AppConfig } from '../config/config';
import { SecretBoxService } from '../crypto/secret-box.service';
import { backoffSeconds, ClaimedWork, errorType } from '../database/claimed-work';
import { UnitOfWork } from '../database/unit-of-work';
import { MetricsService } from '../metrics/metrics.service';
import { render } from './events';
import { NotificationStore, PassOver, TakenDelivery } from './notification-store';
import { DeliveryError, OutgoingDelivery, Sender, SENDERS } from './senders/sender';

/** Where a channel's secret ciphertext is bound (associated data). */
export const channelSecretRef = (id: string) => ({ table: 'notification_channels', rowId: id, column: 'secret' });

const DELIVERY_BACKOFF = { baseSeconds: 15, capSeconds: 3600 };
/**
 * Batches sent at once by one instance, and at most this many of them to one channel (the SMTP server is one). A batch
 * is up to BATCH deliveries of one channel, sent one after another.
 */
const WORKERS = 8;
const PER_CHANNEL = WORKERS / 2;
const BATCH = 10;
/** The one retryable failure that does not open its channel's circuit (NotificationStore.takeDue reads the same). */
const OPENS_NO_CIRCUIT = 'SMTP_TEMPORARY';
/** At most one `alert.delivery_failed` per channel in this window. */
const FAILURE_ALERT_WINDOW_SECONDS = 15 * 60;
/** Failures nobody needs to be alerted about: there is no one left to tell. */
const QUIET_CODES = new Set(['RECIPIENT_DISABLED', 'CHANNEL_DELETED', 'RECIPIENT_DELETED']);

/** The circuit key of a delivery: its channel, or `smtp` for anything sent through the vault's SMTP server. */
const circuitKey = (d: { channelKind: string; channelId: string | null }): string => (d.channelKind === 'email' || d.channelId === null ? 'smtp' : d.channelId);

/**
 * Sends what the outbox holds, at least once, from any instance: each delivery is claimed (SKIP LOCKED), sent with a
 * deadline, and recorded as sent only by the instance that still holds its claim; a failure is retried with capped,
 * jittered backoff, and after VAULT_NOTIFY_MAX_ATTEMPTS the delivery is `failed` (audited, counted, and the
 * administrators are told through the other channels). The idempotency key (the delivery id) is the same on every
 * attempt, so a receiver drops the duplicates a crash between sending and recording can cause.
 *
 * A sweep is a pool of WORKERS that each take a batch of up to BATCH deliveries of ONE channel (claimed in one
 * statement, sent one after another, recorded sent in one statement: a burst of e-mail costs the database two
 * statements per batch, not two per message), so a receiver that hangs until the deadline holds up one worker and its
 * own channel's batch, never another channel's; no channel gets more than PER_CHANNEL workers. A retryable failure
 * (timeout, unreachable, 5xx) opens the channel's circuit for that delivery's backoff (NotificationStore.takeDue): the
 * rest of its batch is given back, the channel's deliveries are passed over and the rest go on. At shutdown no new
 * batch is taken; those in flight end by their deadlines.
 */
@Injectable()
export class NotificationDeliverer implements OnModuleInit, OnModuleDestroy, BeforeApplicationShutdown {
  private readonly logger = new Logger(NotificationDeliverer.name);
  private readonly senders: Map<string, Sender>;
  private sent?: Counter<'kind' | 'outcome'>;
  private pending = false;
  private nudged: Promise<void> | null = null;
  private stopping = false;
  /** Batches being sent now, per circuit key. */
  private readonly inFlight = new Map<string, number>();
  /** Takes run one at a time on this instance, so the busy channels they pass over are counted right. */
  private takes: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly store: NotificationStore,
    private readonly work: ClaimedWork,
    private readonly uow: UnitOfWork,
    private readonly secrets: SecretBoxService,
    private readonly metrics: MetricsService,
    @Inject(SENDERS) senders: Sender[],
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    this.senders = new Map(senders.map((s) => [s.kind, s]));
  }

  onModuleInit(): void {
    const registry = this.metrics.registry;
    this.sent = (registry.getSingleMetric('vault_notifications_total') as Counter<'kind' | 'outcome'>) ??
      new Counter({ name: 'vault_notifications_total', help: 'Notification deliveries by channel kind and outcome (sent, retry, failed)', labelNames: ['kind', 'outcome'] as const, registers: [registry] });
    if (registry.getSingleMetric('vault_notification_queue')) return;
    const queue = () => this.store.queue();
    let last = { pending: 0, oldestSeconds: 0 };
    const read = async () => (last = await queue().catch(() => last));
    new Gauge({ name: 'vault_notification_queue', help: 'Notification deliveries waiting to be sent (all instances)', registers: [registry], async collect() { this.set((await read()).pending); } });
    new Gauge({ name: 'vault_notification_oldest_pending_seconds', help: 'Age of the oldest notification not delivered yet', registers: [registry], async collect() { this.set((await read()).oldestSeconds); } });
  }

  /** Tests replace a channel kind's sender (a receiver that fails on purpose) through this. */
  register(sender: Sender): void {
    this.senders.set(sender.kind, sender);
  }

  /** After a commit that wrote to the outbox: deliver soon (nudges while one runs are folded into one more sweep). */
  nudge(): void {
    if (this.pending || this.stopping) return;
    this.pending = true;
    const previous = this.nudged;
    const run: Promise<void> = (async () => {
      await previous;
      await new Promise((r) => setImmediate(r));
      this.pending = false;
      await this.sweep().catch((e: unknown) => this.logger.warn({ err: errorType(e) }, 'notification delivery sweep failed; the scheduler retries'));
    })().finally(() => {
      if (this.nudged === run) this.nudged = null;
    });
    this.nudged = run;
  }

  /** Resolves when the sweeps nudged so far have run (shutdown, tests). */
  async idle(): Promise<void> {
    while (this.nudged) await this.nudged;
  }

  /** Shutdown begins: nothing new is taken (what is not taken is not claimed: another instance, or the next start, sends it). */
  onModuleDestroy(): void {
    this.stopping = true;
  }

  /** Before the database closes: the sends in flight end (by their deadline at the latest) and are recorded. */
  beforeApplicationShutdown(): Promise<void> {
    this.stopping = true;
    return this.idle();
  }

  /** Delivers everything due, up to `limit` (the scheduler's sweep and every nudge): WORKERS drains share the take. */
  async sweep(limit = 500): Promise<number> {
    let taken = 0;
    // nothing due (none passed over as busy): the other workers end without asking again (a change committed since
    // nudges another sweep)
    let exhausted = false;
    const skipped = new Set<string>();
    const take = (skip: readonly string[]): Promise<TakenDelivery[] | null> => {
      for (const key of skip) skipped.add(key);
      const next = this.takes.then(async () => {
        if (this.stopping || exhausted || taken >= limit) return null;
        const passOver = this.passOver();
        const batch = await this.store.takeDue(this.claimSeconds(), [...skipped], passOver, Math.min(BATCH, limit - taken));
        if (batch.length === 0) {
          if (!passOver.smtp && passOver.channels.length === 0) exhausted = true;
          return null;
        }
        taken += batch.length;
        const key = circuitKey(batch[0]);
        this.inFlight.set(key, (this.inFlight.get(key) ?? 0) + 1);
        return batch;
      });
      this.takes = next.catch(() => undefined);
      return next;
    };
    const run = async (batch: TakenDelivery[]): Promise<void> => {
      try {
        await this.deliverBatch(batch);
      } finally {
        const key = circuitKey(batch[0]);
        const n = (this.inFlight.get(key) ?? 1) - 1;
        if (n > 0) this.inFlight.set(key, n);
        else this.inFlight.delete(key);
      }
    };
    const workers = await Promise.allSettled(
      Array.from({ length: WORKERS }, () => this.work.drain<TakenDelivery[]>({ name: 'notifications', take, key: (b) => b[0].id, run, batchSize: 1, limit })),
    );
    const failed = workers.find((w): w is PromiseRejectedResult => w.status === 'rejected');
    if (failed) throw failed.reason;
    return taken;
  }

  /** The channels a take passes over besides open circuits: those with PER_CHANNEL batches in flight here. */
  private passOver(): PassOver {
    const busy = new Set([...this.inFlight].filter(([, n]) => n >= PER_CHANNEL).map(([key]) => key));
    return { smtp: busy.delete('smtp'), channels: [...busy] };
  }

  /** Long enough for a whole batch, each send by its deadline. */
  private claimSeconds(): number {
    return Math.ceil(this.config.notify.timeoutMs / 1000) * (BATCH + 2) + 30;
  }

  /**
   * One circuit's batch, one delivery after another (on one SMTP connection); those sent are recorded in one statement
   * at the end. A failure worth a retry opens the circuit: the rest of the batch is given back (no attempt counted) and
   * waits with the channel.
   */
  private async deliverBatch(batch: TakenDelivery[]): Promise<void> {
    const sent: TakenDelivery[] = [];
    try {
      for (let i = 0; i < batch.length; i++) {
        const d = batch[i];
        // shutting down: what is not sent yet is given back (another instance, or the next start, sends it)
        if (this.stopping) {
          await this.store.release(batch.slice(i).map((r) => r.id));
          return;
        }
        // taken as the channel was disabled (paused): given back, no attempt counted
        if (d.channelId !== null && d.channelEnabled === false) {
          await this.store.release([d.id]);
          continue;
        }
        const error = await this.attempt(d);
        if (!error) {
          sent.push(d);
          continue;
        }
        await this.failed(d, error);
        // a deferral of one recipient (greylisting) leaves the circuit closed: the batch goes on
        if (error.retryable && error.code !== OPENS_NO_CIRCUIT) {
          await this.store.release(batch.slice(i + 1).map((r) => r.id));
          return;
        }
      }
    } finally {
      // one statement, no transaction of its own: nothing else is written with it
      const n = await this.store.markSent(sent.map((d) => d.id));
      if (n > 0) this.sent?.inc({ kind: sent[0].channelKind, outcome: 'sent' }, n);
    }
  }

  /** Sends one delivery by its deadline: null when sent, else why not. */
  private async attempt(d: TakenDelivery): Promise<DeliveryError | null> {
    try {
      const sender = this.senders.get(d.channelKind);
      if (!sender) throw new DeliveryError('CHANNEL_UNSUPPORTED', `no sender for ${d.channelKind}`, false);
      if (d.channelId === null && d.recipientUserId === null) {
        // the channel (ON DELETE SET NULL) or the person was deleted after the change was queued: nowhere to send it
        throw d.channelKind === 'email'
          ? new DeliveryError('RECIPIENT_DELETED', 'the recipient no longer exists', false)
          : new DeliveryError('CHANNEL_DELETED', 'the channel was deleted before it was delivered', false);
      }
      // a person disabled since the change is not told (the recorded address stays: the log shows who was to be told)
      if (d.recipientDisabled) throw new DeliveryError('RECIPIENT_DISABLED', 'the recipient is disabled', false);
      if (d.channelId === null && !this.config.smtp) throw new DeliveryError('SMTP_NOT_CONFIGURED', 'no SMTP server is configured (VAULT_SMTP_HOST)', false);
      const outgoing: OutgoingDelivery = {
        id: d.id,
        eventType: d.eventType,
        to: d.channelId === null ? d.recipient : undefined,
        channel: {
          id: d.channelId,
          name: d.channelName ?? 'e-mail',
          kind: d.channelKind,
          config: d.channelConfig ?? {},
          secret: d.channelId && d.channelSecret ? this.channelSecret(d.channelId, d.channelSecret) : null,
        },
      };
      const message = render(d, { id: d.eventId, type: d.eventType, subjectType: d.subjectType, subjectId: d.subjectId, createdAt: new Date(d.createdAt), payload: d.payload }, this.config.notify.publicUrl);
      this.work.crash('notify-before-send');
      await sender.send(outgoing, message, AbortSignal.timeout(this.config.notify.timeoutMs));
      this.work.crash('notify-after-send');
      return null;
    } catch (e) {
      return e instanceof DeliveryError ? e : new DeliveryError(e instanceof Error && e.name === 'TimeoutError' ? 'TIMEOUT' : 'SEND_FAILED', 'the message could not be sent', true);
    }
  }

  /** The channel's secret; one that no longer decrypts (key lost, row tampered with) is not worth a retry. */
  private channelSecret(channelId: string, ciphertext: Buffer): string {
    try {
      return this.secrets.decrypt(channelSecretRef(channelId), ciphertext);
    } catch {
      throw new DeliveryError('CHANNEL_SECRET_UNREADABLE', "the channel's secret could not be decrypted: set it again", false);
    }
  }

  private async failed(d: TakenDelivery, error: DeliveryError): Promise<void> {
    const attempt = d.attempts + 1;
    const giveUp = !error.retryable || attempt >= this.config.notify.maxAttempts;
    await this.uow.run(async ({ em, audit, notify }) => {
      const attempts = await this.store.markFailed(em, d.id, { giveUp, backoffSeconds: backoffSeconds(attempt, DELIVERY_BACKOFF), error: `${error.code}: ${error.message}` });
      if (attempts === null) return; // another instance took it over
      this.sent?.inc({ kind: d.channelKind, outcome: giveUp ? 'failed' : 'retry' });
      const where = { deliveryId: d.id, eventType: d.eventType, kind: d.channelKind, code: error.code, attempts };
      if (!giveUp) {
        this.logger.warn(where, 'a notification could not be delivered; retried after a backoff');
        return;
      }
      this.logger.warn(where, 'a notification could not be delivered and is given up (failed)');
      await audit({ type: 'notification.failed', actor: null, subjectType: 'notification', subjectId: d.id, outcome: 'failure', details: { eventType: d.eventType, channelKind: d.channelKind, channel: d.channelName ?? 'e-mail', code: error.code, attempts } });
      // administrators hear of it through the other channels (never about a failed alert of this kind — no loop — nor a
      // test message, whose sender watches the delivery log, nor a recipient that is gone), once per channel per window
      if (
        d.eventType !== 'alert.delivery_failed' &&
        d.eventType !== 'notification.test' &&
        !QUIET_CODES.has(error.code) &&
        (await this.store.mayAlertDeliveryFailed(em, d.channelId, FAILURE_ALERT_WINDOW_SECONDS))
      ) {
        await notify({
          type: 'alert.delivery_failed',
          subjectType: 'channel',
          subjectId: d.channelId,
          to: d.channelId === null ? { none: true } : { roles: ['admin'] },
          exceptChannelId: d.channelId ?? undefined,
          facts: { summary: `a ${d.eventType} notification to ${d.channelName ?? 'an e-mail recipient'} failed ${attempts} times`, code: error.code, count: attempts },
        });
      }
    });
  }
}

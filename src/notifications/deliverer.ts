import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { Counter, Gauge } from 'prom-client';
import { APP_CONFIG, AppConfig } from '../config/config';
import { SecretBoxService } from '../crypto/secret-box.service';
import { backoffSeconds, ClaimedWork, errorType } from '../database/claimed-work';
import { UnitOfWork } from '../database/unit-of-work';
import { MetricsService } from '../metrics/metrics.service';
import { render } from './events';
import { NotificationStore, TakenDelivery } from './notification-store';
import { DeliveryError, OutgoingDelivery, Sender, SENDERS } from './senders/sender';

/** Where a channel's secret ciphertext is bound (associated data). */
export const channelSecretRef = (id: string) => ({ table: 'notification_channels', rowId: id, column: 'secret' });

const DELIVERY_BACKOFF = { baseSeconds: 15, capSeconds: 3600 };

/**
 * Sends what the outbox holds, at least once, from any instance: each delivery is claimed (SKIP LOCKED), sent with a
 * deadline, and recorded as sent only by the instance that still holds its claim; a failure is retried with capped,
 * jittered backoff, and after VAULT_NOTIFY_MAX_ATTEMPTS the delivery is `failed` (audited, counted, and the
 * administrators are told through the other channels). The idempotency key (the delivery id) is the same on every
 * attempt, so a receiver drops the duplicates a crash between sending and recording can cause.
 */
@Injectable()
export class NotificationDeliverer implements OnModuleInit, BeforeApplicationShutdown {
  private readonly logger = new Logger(NotificationDeliverer.name);
  private readonly senders: Map<string, Sender>;
  private sent?: Counter<'kind' | 'outcome'>;
  private pending = false;
  private nudged: Promise<void> | null = null;

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
    if (this.pending) return;
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

  beforeApplicationShutdown(): Promise<void> {
    return this.idle();
  }

  /** Delivers everything due, a batch at a time (the scheduler's sweep and every nudge). */
  sweep(limit = 500): Promise<number> {
    return this.work.drain<TakenDelivery>({
      name: 'notifications',
      take: (skip) => this.store.takeDue(this.claimSeconds(), skip),
      key: (d) => d.id,
      run: (d) => this.deliver(d),
      batchSize: 8,
      limit,
    });
  }

  private claimSeconds(): number {
    return Math.ceil(this.config.notify.timeoutMs / 1000) * 3 + 30;
  }

  private async deliver(d: TakenDelivery): Promise<void> {
    let error: DeliveryError | null = null;
    try {
      const sender = this.senders.get(d.channelKind);
      if (!sender) throw new DeliveryError('CHANNEL_UNSUPPORTED', `no sender for ${d.channelKind}`, false);
      if (d.channelId !== null && d.channelEnabled === false) throw new DeliveryError('CHANNEL_DISABLED', 'the channel is disabled', false);
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
          secret: d.channelId && d.channelSecret ? this.secrets.decrypt(channelSecretRef(d.channelId), d.channelSecret) : null,
        },
      };
      const message = render(d, { id: d.eventId, type: d.eventType, subjectType: d.subjectType, subjectId: d.subjectId, createdAt: new Date(d.createdAt), payload: d.payload }, this.config.notify.publicUrl);
      this.work.crash('notify-before-send');
      await sender.send(outgoing, message, AbortSignal.timeout(this.config.notify.timeoutMs));
      this.work.crash('notify-after-send');
    } catch (e) {
      error = e instanceof DeliveryError ? e : new DeliveryError(e instanceof Error && e.name === 'TimeoutError' ? 'TIMEOUT' : 'SEND_FAILED', 'the message could not be sent', true);
    }
    if (!error) {
      await this.uow.run(async ({ em }) => {
        if (await this.store.markSent(em, d.id)) this.sent?.inc({ kind: d.channelKind, outcome: 'sent' });
      });
      return;
    }
    await this.failed(d, error);
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
      // test message, whose sender watches the delivery log)
      if (d.eventType !== 'alert.delivery_failed' && d.eventType !== 'notification.test') {
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

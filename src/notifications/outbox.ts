import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '../config/config';
import { Tx, TxParticipant, UnitOfWork } from '../database/unit-of-work';
import { NOTIFICATION_TYPES, NotifyInput } from './events';
import { NotificationDeliverer } from './deliverer';
import { NotificationStore, RoutedChannel } from './notification-store';

/**
 * What `tx.notify` does: writes the event and its deliveries in this transaction (the outbox). `onlyChannel`: this
 * channel alone, whatever the routes say (a test message; read by the caller in the same transaction).
 */
export type NotifyFn = (input: NotifyOptions) => Promise<string>;
type NotifyOptions = NotifyInput & { exceptChannelId?: string; onlyChannel?: RoutedChannel };

declare module '../database/unit-of-work' {
  interface Tx {
    /** Writes a notification to the outbox in this transaction (the notifications module joins every unit of work). */
    notify: NotifyFn;
  }
}

/**
 * The transactional outbox (INVARIANT 22): a participant of every unit of work. `tx.notify(…)` writes the event and one
 * delivery per recipient and routed channel in the caller's transaction — who is told is decided now (the approvers of
 * a request are those who may approve it at this moment) and recorded — and the deliverer is nudged after commit.
 * The request path only inserts: a slow or dead SMTP server or webhook never slows it.
 */
@Injectable()
export class NotificationOutbox implements TxParticipant {
  constructor(
    uow: UnitOfWork,
    private readonly store: NotificationStore,
    private readonly deliverer: NotificationDeliverer,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    uow.register(this);
  }

  join(tx: Tx): void {
    let nudge = false;
    tx.notify = async (input) => {
      const { id, pending } = await this.write(tx, input);
      // nothing to send (no address, muted, no SMTP server): the deliverer is not woken for it
      if (pending > 0 && !nudge) {
        nudge = true;
        tx.afterCommit(() => this.deliverer.nudge());
      }
      return id;
    };
  }

  private async write(tx: Tx, input: NotifyOptions): Promise<{ id: string; pending: number }> {
    if (!(input.type in NOTIFICATION_TYPES)) throw new Error(`unknown notification type ${input.type}`);
    const id = randomUUID();
    const { pending } = await this.store.writeEvent(tx.em, {
      id,
      type: input.type,
      subjectType: input.subjectType,
      subjectId: input.subjectId ?? null,
      targetId: input.targetId ?? null,
      payload: input.facts,
      to: input.to,
      optional: NOTIFICATION_TYPES[input.type].optional,
      // people's e-mail needs the vault's SMTP server: without one, they are recorded as undeliverable now, not retried
      smtp: this.config.smtp !== undefined,
      onlyChannelId: input.onlyChannel?.id,
      exceptChannelId: input.exceptChannelId,
    });
    return { id, pending };
  }
}

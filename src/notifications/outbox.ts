import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '../config/config';
import { Tx, TxParticipant, UnitOfWork } from '../database/unit-of-work';
import { UsersService } from '../identity/users.service';
import { NOTIFICATION_TYPES, NotifyInput } from './events';
import { NotificationDeliverer } from './deliverer';
import { NewDelivery, NotificationStore, RoutedChannel } from './notification-store';

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
    private readonly users: UsersService,
    private readonly deliverer: NotificationDeliverer,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    uow.register(this);
  }

  join(tx: Tx): void {
    let nudge = false;
    tx.notify = async (input) => {
      const id = await this.write(tx, input);
      if (!nudge) {
        nudge = true;
        tx.afterCommit(() => this.deliverer.nudge());
      }
      return id;
    };
  }

  private async write(tx: Tx, input: NotifyOptions): Promise<string> {
    if (!(input.type in NOTIFICATION_TYPES)) throw new Error(`unknown notification type ${input.type}`);
    const id = randomUUID();
    await this.store.insertEvent(tx.em, { id, type: input.type, subjectType: input.subjectType, subjectId: input.subjectId ?? null, targetId: input.targetId ?? null, payload: input.facts });
    const optional = NOTIFICATION_TYPES[input.type].optional;
    const deliveries: NewDelivery[] = [];
    for (const person of await this.users.contacts(tx.em, input.to)) {
      const status = !person.email ? 'no_address' : optional && person.muted.includes(input.type) ? 'muted' : 'pending';
      deliveries.push({ id: randomUUID(), channelId: null, channelKind: 'email', recipientUserId: person.id, recipient: person.email ?? person.username, status });
    }
    for (const channel of input.onlyChannel ? [input.onlyChannel] : await this.store.routedChannels(tx.em, input.type, input.targetId ?? null)) {
      if (channel.id === input.exceptChannelId) continue;
      deliveries.push({ id: randomUUID(), channelId: channel.id, channelKind: channel.kind, recipientUserId: null, recipient: channel.name, status: 'pending' });
    }
    // people's e-mail needs the vault's SMTP server: without one, they are recorded as undeliverable now, not retried
    if (!this.config.smtp) for (const d of deliveries) if (d.channelId === null && d.status === 'pending') d.status = 'no_address';
    await this.store.insertDeliveries(tx.em, id, deliveries);
    return id;
  }
}

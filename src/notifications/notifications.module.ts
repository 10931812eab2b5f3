import { Global, Module } from '@nestjs/common';
import { IdentityModule } from '../identity/identity.module';
import { NotificationDeliverer } from './deliverer';
import { NotificationStore } from './notification-store';
import { NotificationOutbox } from './outbox';
import { SENDER_PROVIDERS } from './senders';

/**
 * Notifications (issue 14): the outbox (a participant of every unit of work: `tx.notify`), the deliverer, the senders
 * and (notifications.controller.ts) channels, routes and the delivery log. Global: every module's transactions write
 * to the outbox.
 */
@Global()
@Module({
  imports: [IdentityModule],
  providers: [NotificationStore, NotificationDeliverer, NotificationOutbox, ...SENDER_PROVIDERS],
  exports: [NotificationStore, NotificationDeliverer, NotificationOutbox],
})
export class NotificationsModule {}

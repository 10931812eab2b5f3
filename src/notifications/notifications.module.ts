import { Global, Module } from '@nestjs/common';
import { IdentityModule } from '../identity/identity.module';
import { ChannelStore } from './channel-store';
import { NotificationDeliverer } from './deliverer';
import { DeliveryLog } from './delivery-log';
import { DeliveryLogController, NotificationChannelsController, NotificationRoutesController } from './notifications.controller';
import { NotificationsService } from './notifications.service';
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
  controllers: [NotificationChannelsController, NotificationRoutesController, DeliveryLogController],
  providers: [NotificationStore, NotificationDeliverer, NotificationOutbox, ...SENDER_PROVIDERS, ChannelStore, DeliveryLog, NotificationsService],
  exports: [NotificationStore, NotificationDeliverer, NotificationOutbox],
})
export class NotificationsModule {}

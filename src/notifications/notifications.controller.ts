import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { Actor } from '../common/actor';
import { ApiErrors } from '../common/api-errors';
import { ApiAnswer, pageOf } from '../common/api-responses';
import { CurrentActor, RequiresMfa, Roles } from '../common/auth.decorators';
import { Page } from '../common/pagination';
import { UuidPipe } from '../common/validation';
import {
  ChannelListQuery, CreateChannelDto, CreateRouteDto, DeliveryListQuery, NotificationChannelView, NotificationDeliveryView, NotificationRouteView, NotificationTestView,
  RouteListQuery, UpdateChannelDto,
} from './notifications.dto';
import { NotificationsService } from './notifications.service';

@ApiTags('Notifications')
@Controller('v1/notification-channels')
export class NotificationChannelsController {
  constructor(private readonly notifications: NotificationsService) {}

  @ApiOperation({
    summary: 'Add a notification channel (e-mail addresses, a signed webhook, Slack or Teams)',
    description:
      'email: `config.to` (addresses; sent through the vault\'s SMTP server, VAULT_SMTP_*), no secret. webhook: `config.url` (https, or http to a loopback host) and `secret`, the signing secret (at least 16 characters). slack, teams: no config; `secret` is the incoming-webhook URL (https). The secret is stored encrypted and never returned (`secretSet`). A channel receives the events its routes take.',
  })
  @ApiErrors('CHANNEL_NAME_TAKEN', 'CHANNEL_CONFIG_INVALID', 'EMAIL_DOMAIN_NOT_ALLOWED')
  @ApiAnswer(NotificationChannelView)
  @Roles('admin')
  @RequiresMfa()
  @Post()
  create(@CurrentActor() actor: Actor, @Body() dto: CreateChannelDto): Promise<NotificationChannelView> {
    return this.notifications.createChannel(actor, dto);
  }

  @ApiOperation({ summary: 'List notification channels (by name; never their secrets)' })
  @ApiAnswer(pageOf(NotificationChannelView))
  @Roles('admin', 'auditor')
  @Get()
  list(@Query() q: ChannelListQuery): Promise<Page<NotificationChannelView>> {
    return this.notifications.listChannels(q);
  }

  @ApiOperation({ summary: 'Read a notification channel (never its secret)' })
  @ApiAnswer(NotificationChannelView)
  @Roles('admin', 'auditor')
  @Get(':id')
  get(@Param('id', UuidPipe) id: string): Promise<NotificationChannelView> {
    return this.notifications.getChannel(id);
  }

  @ApiOperation({
    summary: 'Change a notification channel: name, config (replaced as a whole), secret (replaced), enabled',
    description: "What the channel's kind asks for is checked against the result: 400 CHANNEL_CONFIG_INVALID, nothing changed.",
  })
  @ApiErrors('CHANNEL_NAME_TAKEN', 'CHANNEL_CONFIG_INVALID', 'EMAIL_DOMAIN_NOT_ALLOWED')
  @ApiAnswer(NotificationChannelView)
  @Roles('admin')
  @RequiresMfa()
  @Patch(':id')
  update(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string, @Body() dto: UpdateChannelDto): Promise<NotificationChannelView> {
    return this.notifications.updateChannel(actor, id, dto);
  }

  @ApiOperation({ summary: 'Delete a notification channel and its routes (its pending deliveries fail with CHANNEL_DELETED; the log keeps them)' })
  @Roles('admin')
  @RequiresMfa()
  @Delete(':id')
  @HttpCode(204)
  remove(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<void> {
    return this.notifications.deleteChannel(actor, id);
  }

  @ApiOperation({
    summary: 'Send a test message to this channel alone',
    description: 'Writes a `notification.test` event delivered only to this channel, whatever its routes say, and answers its delivery id; `GET /v1/notifications?eventType=notification.test` shows how it went.',
  })
  @ApiErrors('CHANNEL_DISABLED')
  @ApiAnswer(NotificationTestView)
  @Roles('admin')
  @RequiresMfa()
  @Post(':id/test')
  @HttpCode(202)
  test(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<NotificationTestView> {
    return this.notifications.testChannel(actor, id);
  }
}

@ApiTags('Notifications')
@Controller('v1/notification-routes')
export class NotificationRoutesController {
  constructor(private readonly notifications: NotificationsService) {}

  @ApiOperation({
    summary: 'Route events to a channel',
    description: '`eventTypes` empty or absent: every type. `targetIds` absent: events about any target and about none; given: only events about those targets.',
  })
  @ApiAnswer(NotificationRouteView)
  @Roles('admin')
  @RequiresMfa()
  @Post()
  create(@CurrentActor() actor: Actor, @Body() dto: CreateRouteDto): Promise<NotificationRouteView> {
    return this.notifications.createRoute(actor, dto);
  }

  @ApiOperation({ summary: 'List notification routes (oldest first)' })
  @ApiAnswer(pageOf(NotificationRouteView))
  @Roles('admin', 'auditor')
  @Get()
  list(@Query() q: RouteListQuery): Promise<Page<NotificationRouteView>> {
    return this.notifications.listRoutes(q);
  }

  @ApiOperation({ summary: 'Read a notification route' })
  @ApiAnswer(NotificationRouteView)
  @Roles('admin', 'auditor')
  @Get(':id')
  get(@Param('id', UuidPipe) id: string): Promise<NotificationRouteView> {
    return this.notifications.getRoute(id);
  }

  @ApiOperation({ summary: 'Delete a notification route' })
  @Roles('admin')
  @RequiresMfa()
  @Delete(':id')
  @HttpCode(204)
  remove(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<void> {
    return this.notifications.deleteRoute(actor, id);
  }
}

@ApiTags('Notifications')
@Controller('v1/notifications')
export class DeliveryLogController {
  constructor(private readonly notifications: NotificationsService) {}

  @ApiOperation({
    summary: 'The delivery log: every message the vault sent or tried to send, newest first',
    description:
      'Each delivery: event type, subject and summary, channel (kind and name; none for a person\'s e-mail), recipient (address, or the channel\'s name), attempts, status (pending, sent, failed, muted, no_address), last error (a code and a short reason, never a secret), times. Filters: status, eventType, channelId, recipientUserId, since.',
  })
  @ApiAnswer(pageOf(NotificationDeliveryView))
  @Roles('admin', 'auditor')
  @Get()
  list(@Query() q: DeliveryListQuery): Promise<Page<NotificationDeliveryView>> {
    return this.notifications.deliveries(q);
  }
}

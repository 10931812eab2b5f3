import { randomUUID } from 'node:crypto';
import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { Actor } from '../common/actor';
import { APP_CONFIG, AppConfig } from '../config/config';
import { DomainException, Errors } from '../common/errors';
import { Page } from '../common/pagination';
import { SecretBoxService } from '../crypto/secret-box.service';
import { UnitOfWork } from '../database/unit-of-work';
import { UsersService } from '../identity/users.service';
import { ChannelRecord, ChannelStore, mapChannel, mapRoute, shownConfig } from './channel-store';
import { channelSecretRef } from './deliverer';
import { DeliveryLog } from './delivery-log';
import { NOTIFICATION_TYPES, OPTIONAL_TYPES } from './events';
import {
  ChannelListQuery, channelProblem, CreateChannelDto, CreateRouteDto, DeliveryListQuery, NotificationChannelView, NotificationDeliveryView, NotificationRouteView,
  NotificationTestView, RouteListQuery, UpdateChannelDto,
} from './notifications.dto';
import { EgressPolicy } from './senders/egress';
import type { ChannelConfig, ChannelKind } from './senders/sender';

/** What an audit event says of a channel: never its secret, only whether one is stored; a URL without its query. */
const publicChannel = (c: Pick<ChannelRecord, 'name' | 'kind' | 'config' | 'enabled'>) => ({ name: c.name, kind: c.kind, config: shownConfig(c.config), enabled: c.enabled });

/** Only the fields given: `{ to }` or `{ url }` (class-transformer leaves absent ones undefined). */
const plainConfig = (c: ChannelConfig): ChannelConfig => ({ ...(c.to !== undefined ? { to: c.to } : {}), ...(c.url !== undefined ? { url: c.url } : {}) });

/**
 * Channels, routes, the test message and the delivery log (`/v1/notification-channels`, `/v1/notification-routes`,
 * `/v1/notifications`). Secrets are write-only: encrypted bound to (notification_channels, id, secret), never in an
 * answer, an audit event or a log line (events say `hasSecret` / `secretChanged`).
 */
@Injectable()
export class NotificationsService implements OnModuleInit {
  private readonly egress: EgressPolicy;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly dataSource: DataSource,
    private readonly uow: UnitOfWork,
    private readonly channels: ChannelStore,
    private readonly log: DeliveryLog,
    private readonly secrets: SecretBoxService,
    private readonly users: UsersService,
  ) {
    this.egress = new EgressPolicy(config.notify.allowedHosts);
  }

  /**
   * What the kind's rules cannot know: a webhook, Slack or Teams URL whose host is an internal address (or
   * `localhost`) not listed in VAULT_NOTIFY_ALLOWED_HOSTS (400 CHANNEL_CONFIG_INVALID), an e-mail channel's address
   * outside VAULT_NOTIFY_EMAIL_DOMAINS (400 EMAIL_DOMAIN_NOT_ALLOWED). A host name is checked when a message is sent.
   */
  private checkDestination(kind: ChannelKind, config: ChannelConfig, secretGiven: string | undefined): void {
    if (kind === 'email') {
      for (const to of config.to ?? []) this.users.checkEmailDomain(to, 'config.to');
      return;
    }
    const urlProblem = kind === 'webhook' && config.url !== undefined ? this.egress.literalProblem(config.url) : null;
    if (urlProblem) throw new DomainException('CHANNEL_CONFIG_INVALID', `config.url ${urlProblem}`);
    // the problem says what is wrong without the value (it is a secret)
    const secretProblem = kind !== 'webhook' && secretGiven !== undefined ? this.egress.literalProblem(secretGiven) : null;
    if (secretProblem) throw new DomainException('CHANNEL_CONFIG_INVALID', `secret: the ${kind} incoming-webhook URL ${secretProblem}`);
  }

  /** Identity checks what a user mutes against these (it is a lower layer and cannot import them). */
  onModuleInit(): void {
    this.users.registerNotificationKinds(Object.keys(NOTIFICATION_TYPES), OPTIONAL_TYPES);
  }

  async createChannel(actor: Actor, dto: CreateChannelDto): Promise<NotificationChannelView> {
    const id = randomUUID();
    const config = plainConfig(dto.config);
    this.checkDestination(dto.kind, config, dto.secret);
    const channel = await this.uow.run(async ({ em, audit }) => {
      const row = await this.channels.insertChannel(em, {
        id,
        name: dto.name,
        kind: dto.kind,
        config,
        secret: dto.secret !== undefined ? this.secrets.encrypt(channelSecretRef(id), dto.secret) : null,
        enabled: dto.enabled ?? true,
      });
      await audit({ type: 'notification.channel_created', actor, subjectType: 'notification_channel', subjectId: id, details: { ...publicChannel(row), hasSecret: row.secret !== null } });
      return row;
    });
    return mapChannel(channel);
  }

  listChannels(q: ChannelListQuery): Promise<Page<NotificationChannelView>> {
    return this.channels.listChannels(q);
  }

  async getChannel(id: string): Promise<NotificationChannelView> {
    return mapChannel(await this.channels.channel(this.dataSource.manager, id));
  }

  /**
   * `config` replaces the stored one as a whole, `secret` the stored secret. What the channel's kind asks for is checked
   * against the result (400 CHANNEL_CONFIG_INVALID, nothing changed): the kind is the stored one.
   */
  async updateChannel(actor: Actor, id: string, dto: UpdateChannelDto): Promise<NotificationChannelView> {
    const channel = await this.uow.run(async ({ em, audit }) => {
      const current = await this.channels.channel(em, id, 'update');
      const config = dto.config !== undefined ? plainConfig(dto.config) : current.config;
      const problem = channelProblem(current.kind, config, { given: dto.secret, stored: current.secret !== null });
      if (problem) throw new DomainException('CHANNEL_CONFIG_INVALID', problem);
      if (dto.config !== undefined || dto.secret !== undefined) this.checkDestination(current.kind, config, dto.secret);
      const changes = {
        ...(dto.name !== undefined ? { name: dto.name } : {}),
        ...(dto.config !== undefined ? { config } : {}),
        ...(dto.enabled !== undefined ? { enabled: dto.enabled } : {}),
        ...(dto.secret !== undefined ? { secret: this.secrets.encrypt(channelSecretRef(id), dto.secret) } : {}),
      };
      if (Object.keys(changes).length === 0) return current;
      const next = await this.channels.updateChannel(em, id, changes);
      await audit({
        type: 'notification.channel_updated',
        actor,
        subjectType: 'notification_channel',
        subjectId: id,
        details: { before: publicChannel(current), after: publicChannel(next), secretChanged: dto.secret !== undefined },
      });
      return next;
    });
    return mapChannel(channel);
  }

  /** Its routes go with it; deliveries still pending to it are failed (`CHANNEL_DELETED`); the log keeps the rest. */
  async deleteChannel(actor: Actor, id: string): Promise<void> {
    await this.uow.run(async ({ em, audit }) => {
      const current = await this.channels.channel(em, id, 'update');
      const { routes, abandoned } = await this.channels.deleteChannel(em, id);
      await audit({ type: 'notification.channel_deleted', actor, subjectType: 'notification_channel', subjectId: id, details: { ...publicChannel(current), routes, abandonedDeliveries: abandoned } });
    });
  }

  /**
   * Writes a `notification.test` event delivered to this channel alone (whatever its routes say) and answers its
   * delivery: the deliverer sends it after the commit, and the delivery log shows how it went.
   */
  async testChannel(actor: Actor, id: string): Promise<NotificationTestView> {
    return this.uow.run(async ({ em, audit, notify }) => {
      const channel = await this.channels.channel(em, id, 'share');
      if (!channel.enabled) throw Errors.conflict('CHANNEL_DISABLED', 'the channel is disabled: enable it (PATCH enabled: true) before testing it');
      const eventId = await notify({
        type: 'notification.test',
        subjectType: 'channel',
        subjectId: id,
        to: { none: true },
        onlyChannel: { id, name: channel.name, kind: channel.kind },
        facts: { summary: `Test message for channel ${channel.name}, sent by ${actor.name}`, requester: actor.name },
      });
      const [delivery] = await this.log.ofEvent(em, eventId);
      await audit({ type: 'notification.test_sent', actor, subjectType: 'notification_channel', subjectId: id, details: { name: channel.name, kind: channel.kind, eventId, deliveryId: delivery.id } });
      return { eventId, deliveryId: delivery.id, status: delivery.status };
    });
  }

  async createRoute(actor: Actor, dto: CreateRouteDto): Promise<NotificationRouteView> {
    const route = await this.uow.run(async ({ em, audit }) => {
      const channel = await this.channels.channel(em, dto.channelId, 'share');
      const row = await this.channels.insertRoute(em, { id: randomUUID(), channelId: channel.id, eventTypes: dto.eventTypes ?? [], targetIds: dto.targetIds ?? null });
      await audit({
        type: 'notification.route_created',
        actor,
        subjectType: 'notification_route',
        subjectId: row.id,
        details: { channelId: channel.id, channel: channel.name, eventTypes: row.eventTypes, targetIds: row.targetIds },
      });
      return row;
    });
    return mapRoute(route);
  }

  listRoutes(q: RouteListQuery): Promise<Page<NotificationRouteView>> {
    return this.channels.listRoutes(q);
  }

  async getRoute(id: string): Promise<NotificationRouteView> {
    return mapRoute(await this.channels.route(this.dataSource.manager, id));
  }

  async deleteRoute(actor: Actor, id: string): Promise<void> {
    await this.uow.run(async ({ em, audit }) => {
      const route = await this.channels.deleteRoute(em, id);
      await audit({
        type: 'notification.route_deleted',
        actor,
        subjectType: 'notification_route',
        subjectId: id,
        details: { channelId: route.channelId, channel: route.channelName, eventTypes: route.eventTypes, targetIds: route.targetIds },
      });
    });
  }

  deliveries(q: DeliveryListQuery): Promise<Page<NotificationDeliveryView>> {
    return this.log.list(q);
  }
}

import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { Errors } from '../common/errors';
import { decodeCursor, DEFAULT_PAGE_SIZE, Page, toPage } from '../common/pagination';
import { isUniqueViolation } from '../database/queries';
import type { ChannelListQuery, NotificationChannelView, NotificationRouteView, RouteListQuery } from './notifications.dto';
import type { ChannelConfig, ChannelKind } from './senders/sender';

/** A channel row; `secret` is the ciphertext (bound to notification_channels, id, secret), never shown. */
export interface ChannelRecord {
  id: string;
  name: string;
  kind: ChannelKind;
  config: ChannelConfig;
  secret: Buffer | null;
  enabled: boolean;
  createdAt: Date;
  updatedAt: Date;
  version: number;
}

export interface RouteRecord {
  id: string;
  channelId: string;
  channelName: string;
  eventTypes: string[];
  targetIds: string[] | null;
  createdAt: Date;
}

const CHANNEL_COLUMNS = 'id, name, kind, config, secret, enabled, created_at AS "createdAt", updated_at AS "updatedAt", version';
const ROUTE_COLUMNS = `r.id, r.channel_id AS "channelId", c.name AS "channelName", r.event_types AS "eventTypes", r.target_ids AS "targetIds", r.created_at AS "createdAt"`;
/** A route's creation time in microseconds (exact, unlike a JavaScript date): its keyset position with its id. */
const ROUTE_KEY = '(extract(epoch FROM r.created_at) * 1000000)::bigint';

/**
 * A webhook URL as the API and the audit log show it: without its query (`https://host/path?…`), where a receiver's
 * token often is. The whole URL is what the vault posts to; a credential belongs in the signing secret (write-only).
 */
export function shownUrl(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : `${url.slice(0, q)}?…`;
}

/** A channel's config as shown: the webhook URL without its query. */
export const shownConfig = (c: ChannelConfig): ChannelConfig => (c.url !== undefined ? { ...c, url: shownUrl(c.url) } : c);

export function mapChannel(c: ChannelRecord): NotificationChannelView {
  return {
    id: c.id,
    name: c.name,
    kind: c.kind,
    config: shownConfig(c.config),
    secretSet: c.secret !== null,
    enabled: c.enabled,
    createdAt: c.createdAt.toISOString(),
    updatedAt: c.updatedAt.toISOString(),
  };
}

export function mapRoute(r: RouteRecord): NotificationRouteView {
  return { id: r.id, channelId: r.channelId, channelName: r.channelName, eventTypes: r.eventTypes, targetIds: r.targetIds, createdAt: r.createdAt.toISOString() };
}

const nameTaken = async <T>(work: () => Promise<T>): Promise<T> => {
  try {
    return await work();
  } catch (e) {
    if (isUniqueViolation(e)) throw Errors.conflict('CHANNEL_NAME_TAKEN', 'a notification channel with this name already exists');
    throw e;
  }
};

/**
 * Every statement of the channels and routes API on `notification_channels` and `notification_routes` (the outbox's
 * routing reads are in notification-store.ts).
 */
@Injectable()
export class ChannelStore {
  constructor(private readonly dataSource: DataSource) {}

  async insertChannel(em: EntityManager, c: Pick<ChannelRecord, 'id' | 'name' | 'kind' | 'config' | 'secret' | 'enabled'>): Promise<ChannelRecord> {
    const [row]: ChannelRecord[] = await nameTaken(() =>
      em.query(`INSERT INTO notification_channels (id, name, kind, config, secret, enabled) VALUES ($1, $2, $3, $4::jsonb, $5, $6) RETURNING ${CHANNEL_COLUMNS}`, [
        c.id,
        c.name,
        c.kind,
        JSON.stringify(c.config),
        c.secret,
        c.enabled,
      ]),
    );
    return row;
  }

  /** One channel, or 404; `lock`: held until the transaction ends (`update` to change it, `share` to use it). */
  async channel(em: EntityManager, id: string, lock?: 'update' | 'share'): Promise<ChannelRecord> {
    const [row]: ChannelRecord[] = await em.query(`SELECT ${CHANNEL_COLUMNS} FROM notification_channels WHERE id = $1${lock ? ` FOR ${lock.toUpperCase()}` : ''}`, [id]);
    if (!row) throw Errors.notFound('notification channel');
    return row;
  }

  /** Channels by name (keyset), optionally of one kind. */
  async listChannels(q: ChannelListQuery): Promise<Page<NotificationChannelView>> {
    const limit = q.limit ?? DEFAULT_PAGE_SIZE;
    const [after] = decodeCursor(q.cursor, ['string']) ?? [null];
    const rows: ChannelRecord[] = await this.dataSource.query(
      `SELECT ${CHANNEL_COLUMNS} FROM notification_channels WHERE ($1::text IS NULL OR name > $1) AND ($2::text IS NULL OR kind = $2) ORDER BY name LIMIT $3`,
      [after, q.kind ?? null, limit + 1],
    );
    return toPage(rows, limit, (c) => [c.name], mapChannel);
  }

  /** Changes the given fields (`secret`: a new ciphertext), bumps the version and stamps `updated_at`. */
  async updateChannel(em: EntityManager, id: string, changes: Partial<Pick<ChannelRecord, 'name' | 'config' | 'secret' | 'enabled'>>): Promise<ChannelRecord> {
    const sets: string[] = [];
    const params: unknown[] = [id];
    const set = (column: string, value: unknown, cast = '') => {
      params.push(value);
      sets.push(`${column} = $${params.length}${cast}`);
    };
    if (changes.name !== undefined) set('name', changes.name);
    if (changes.config !== undefined) set('config', JSON.stringify(changes.config), '::jsonb');
    if (changes.secret !== undefined) set('secret', changes.secret);
    if (changes.enabled !== undefined) set('enabled', changes.enabled);
    const [rows]: [ChannelRecord[], number] = await nameTaken(() =>
      em.query(`UPDATE notification_channels SET ${[...sets, 'version = version + 1', 'updated_at = now()'].join(', ')} WHERE id = $1 RETURNING ${CHANNEL_COLUMNS}`, params),
    );
    if (!rows[0]) throw Errors.notFound('notification channel');
    return rows[0];
  }

  /**
   * Deletes a channel and its routes (the deliveries stay in the log). Its deliveries still pending are failed first
   * (`CHANNEL_DELETED`): with the channel gone they would have nowhere to go. Answers how many routes and pending
   * deliveries went with it.
   */
  async deleteChannel(em: EntityManager, id: string): Promise<{ routes: number; abandoned: number }> {
    const [, abandoned]: [unknown, number] = await em.query(
      `UPDATE notification_deliveries SET status = 'failed', last_error = 'CHANNEL_DELETED: the channel was deleted before it was delivered', claimed_until = NULL
        WHERE channel_id = $1 AND status = 'pending'`,
      [id],
    );
    const [{ routes }]: Array<{ routes: number }> = await em.query('SELECT count(*)::int AS routes FROM notification_routes WHERE channel_id = $1', [id]);
    const [, deleted]: [unknown, number] = await em.query('DELETE FROM notification_channels WHERE id = $1', [id]);
    if (deleted !== 1) throw Errors.notFound('notification channel');
    return { routes, abandoned };
  }

  async insertRoute(em: EntityManager, r: { id: string; channelId: string; eventTypes: string[]; targetIds: string[] | null }): Promise<RouteRecord> {
    await em.query('INSERT INTO notification_routes (id, channel_id, event_types, target_ids) VALUES ($1, $2, $3::text[], $4::uuid[])', [r.id, r.channelId, r.eventTypes, r.targetIds]);
    return this.route(em, r.id);
  }

  /** One route with its channel's name, or 404. */
  async route(em: EntityManager, id: string): Promise<RouteRecord> {
    const [row]: RouteRecord[] = await em.query(`SELECT ${ROUTE_COLUMNS} FROM notification_routes r JOIN notification_channels c ON c.id = r.channel_id WHERE r.id = $1`, [id]);
    if (!row) throw Errors.notFound('notification route');
    return row;
  }

  /** Routes in the order they were made (keyset), optionally of one channel. */
  async listRoutes(q: RouteListQuery): Promise<Page<NotificationRouteView>> {
    const limit = q.limit ?? DEFAULT_PAGE_SIZE;
    const [afterKey, afterId] = decodeCursor(q.cursor, ['int64', 'uuid']) ?? [null, null];
    const rows: Array<RouteRecord & { key: string }> = await this.dataSource.query(
      `SELECT ${ROUTE_COLUMNS}, ${ROUTE_KEY}::text AS key FROM notification_routes r JOIN notification_channels c ON c.id = r.channel_id
        WHERE ($1::bigint IS NULL OR (${ROUTE_KEY}, r.id) > ($1::bigint, $2::uuid)) AND ($3::uuid IS NULL OR r.channel_id = $3)
        ORDER BY ${ROUTE_KEY}, r.id LIMIT $4`,
      [afterKey, afterId, q.channelId ?? null, limit + 1],
    );
    return toPage(rows, limit, (r) => [r.key, r.id], mapRoute);
  }

  async deleteRoute(em: EntityManager, id: string): Promise<RouteRecord> {
    const route = await this.route(em, id);
    await em.query('DELETE FROM notification_routes WHERE id = $1', [id]);
    return route;
  }
}

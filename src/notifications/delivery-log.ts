import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { decodeCursor, DEFAULT_PAGE_SIZE, Page, toPage } from '../common/pagination';
import type { DeliveryStatus } from './notification-store';
import type { DeliveryListQuery, NotificationDeliveryView } from './notifications.dto';
import type { ChannelKind } from './senders/sender';

interface DeliveryRow {
  id: string;
  seq: string;
  eventId: string;
  eventType: string;
  subjectType: string;
  subjectId: string | null;
  summary: string | null;
  channelId: string | null;
  channelKind: ChannelKind;
  channelName: string | null;
  recipientUserId: string | null;
  recipient: string;
  status: DeliveryStatus;
  attempts: number;
  lastError: string | null;
  nextAttemptAt: Date;
  createdAt: Date;
  sentAt: Date | null;
}

function mapDelivery(d: DeliveryRow): NotificationDeliveryView {
  return {
    id: d.id,
    eventId: d.eventId,
    eventType: d.eventType,
    subject: { type: d.subjectType, id: d.subjectId },
    summary: d.summary ?? '',
    channel: { id: d.channelId, kind: d.channelKind, name: d.channelName },
    recipientUserId: d.recipientUserId,
    recipient: d.recipient,
    status: d.status,
    attempts: d.attempts,
    lastError: d.lastError,
    nextAttemptAt: d.status === 'pending' ? d.nextAttemptAt.toISOString() : null,
    createdAt: d.createdAt.toISOString(),
    sentAt: d.sentAt?.toISOString() ?? null,
  };
}

const COLUMNS = `d.id, d.seq::text AS seq, d.event_id AS "eventId", e.type AS "eventType", e.subject_type AS "subjectType", e.subject_id AS "subjectId",
  e.payload->>'summary' AS summary, d.channel_id AS "channelId", d.channel_kind AS "channelKind", c.name AS "channelName",
  d.recipient_user_id AS "recipientUserId", d.recipient, d.status, d.attempts, d.last_error AS "lastError",
  d.next_attempt_at AS "nextAttemptAt", d.created_at AS "createdAt", d.sent_at AS "sentAt"`;
const FROM = 'notification_deliveries d JOIN notification_events e ON e.id = d.event_id LEFT JOIN notification_channels c ON c.id = d.channel_id';

/** The delivery log (`GET /v1/notifications`): reads only, newest first. */
@Injectable()
export class DeliveryLog {
  constructor(private readonly dataSource: DataSource) {}

  async list(q: DeliveryListQuery): Promise<Page<NotificationDeliveryView>> {
    const limit = q.limit ?? DEFAULT_PAGE_SIZE;
    const [before] = decodeCursor(q.cursor, ['int64']) ?? [null];
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (clause: (p: string) => string, value: unknown) => {
      if (value === undefined || value === null) return;
      params.push(value);
      where.push(clause(`$${params.length}`));
    };
    add((p) => `d.seq < ${p}::bigint`, before);
    add((p) => `d.status = ${p}`, q.status);
    add((p) => `e.type = ${p}`, q.eventType);
    add((p) => `d.channel_id = ${p}::uuid`, q.channelId);
    add((p) => `d.recipient_user_id = ${p}::uuid`, q.recipientUserId);
    add((p) => `d.created_at >= ${p}::timestamptz`, q.since);
    params.push(limit + 1);
    const rows: DeliveryRow[] = await this.dataSource.query(
      `SELECT ${COLUMNS} FROM ${FROM} ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY d.seq DESC LIMIT $${params.length}`,
      params,
    );
    return toPage(rows, limit, (d) => [d.seq], mapDelivery);
  }

  /** The deliveries of one event (in the caller's transaction: the test message it just wrote). */
  async ofEvent(em: EntityManager, eventId: string): Promise<NotificationDeliveryView[]> {
    const rows: DeliveryRow[] = await em.query(`SELECT ${COLUMNS} FROM ${FROM} WHERE d.event_id = $1 ORDER BY d.seq`, [eventId]);
    return rows.map(mapDelivery);
  }
}

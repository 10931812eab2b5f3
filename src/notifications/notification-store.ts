import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { ClaimedWork, Queryable } from '../database/claimed-work';
import { sqlColumn } from '../database/sql-names';
import { NOTIFICATION_TYPES, NotificationFacts, NotificationType } from './events';
import type { ChannelConfig, ChannelKind } from './senders/sender';

export type DeliveryStatus = 'pending' | 'sent' | 'failed' | 'muted' | 'no_address';

export interface NewDelivery {
  id: string;
  channelId: string | null;
  channelKind: ChannelKind;
  recipientUserId: string | null;
  recipient: string;
  status: DeliveryStatus;
}

/** A delivery taken by this instance, with what sending it needs. */
export interface TakenDelivery {
  id: string;
  attempts: number;
  channelId: string | null;
  channelKind: ChannelKind;
  recipient: string;
  eventId: string;
  eventType: string;
  subjectType: string;
  subjectId: string | null;
  createdAt: Date;
  payload: NotificationFacts;
  channelName: string | null;
  channelConfig: ChannelConfig | null;
  channelSecret: Buffer | null;
  channelEnabled: boolean | null;
}

export interface RoutedChannel {
  id: string;
  name: string;
  kind: ChannelKind;
}

/**
 * The owner of the outbox tables (`notification_events`, `notification_deliveries`) and of routing reads on
 * `notification_routes`/`notification_channels`: every statement on them is here or in channel-store.ts.
 */
@Injectable()
export class NotificationStore {
  constructor(
    private readonly dataSource: DataSource,
    private readonly work: ClaimedWork,
  ) {}

  async insertEvent(em: EntityManager, e: { id: string; type: string; subjectType: string; subjectId: string | null; targetId: string | null; payload: NotificationFacts }): Promise<void> {
    await em.query('INSERT INTO notification_events (id, type, subject_type, subject_id, target_id, payload) VALUES ($1, $2, $3, $4, $5, $6::jsonb)', [
      e.id,
      e.type,
      e.subjectType,
      e.subjectId,
      e.targetId,
      JSON.stringify(e.payload),
    ]);
  }

  /** All of an event's deliveries in one statement. */
  async insertDeliveries(em: EntityManager, eventId: string, rows: NewDelivery[]): Promise<void> {
    if (rows.length === 0) return;
    const params: unknown[] = [eventId];
    const values = rows.map((r) => {
      const at = params.length;
      params.push(r.id, r.channelId, r.channelKind, r.recipientUserId, r.recipient, r.status);
      return `($${at + 1}, $1, $${at + 2}, $${at + 3}, $${at + 4}, $${at + 5}, $${at + 6})`;
    });
    await em.query(
      `INSERT INTO notification_deliveries (id, event_id, channel_id, channel_kind, recipient_user_id, recipient, status) VALUES ${values.join(', ')}`,
      params,
    );
  }

  /**
   * Of these subjects, those an event of `type` was already written about (a reminder is written once per item). Run
   * it after the items are locked: a new statement sees what a sweep that held them before has committed.
   */
  async notifiedAmong(em: EntityManager, type: NotificationType, subjectIds: readonly string[]): Promise<Set<string>> {
    if (subjectIds.length === 0) return new Set();
    const rows: Array<{ id: string }> = await em.query('SELECT DISTINCT subject_id AS id FROM notification_events WHERE type = $1 AND subject_id = ANY ($2::text[])', [
      type,
      [...subjectIds],
    ]);
    return new Set(rows.map((r) => r.id));
  }

  /** The enabled channels whose routes take this event type (and target). */
  async routedChannels(em: EntityManager, type: string, targetId: string | null): Promise<RoutedChannel[]> {
    return em.query(
      `SELECT DISTINCT c.id, c.name, c.kind FROM notification_routes r JOIN notification_channels c ON c.id = r.channel_id
        WHERE c.enabled AND (cardinality(r.event_types) = 0 OR $1 = ANY (r.event_types))
          AND (r.target_ids IS NULL OR ($2::uuid IS NOT NULL AND $2::uuid = ANY (r.target_ids)))
        ORDER BY c.name`,
      [type, targetId],
    );
  }

  /** Claims one pending delivery that is due (SKIP LOCKED), with its event and channel. */
  async takeDue(claimSeconds: number, skip: readonly string[]): Promise<TakenDelivery | null> {
    const [row] = await this.work.claimBatch<{ id: string }>(this.dataSource, {
      table: 'notification_deliveries',
      where: "status = 'pending' AND next_attempt_at <= now() AND (claimed_until IS NULL OR claimed_until < now()) AND NOT (id = ANY ($1::uuid[]))",
      orderBy: 'next_attempt_at',
      limit: 1,
      seconds: claimSeconds,
      returning: 'id',
      params: [skip],
    });
    if (!row) return null;
    const [taken]: TakenDelivery[] = await this.dataSource.query(
      `SELECT d.id, d.attempts, d.channel_id AS "channelId", d.channel_kind AS "channelKind", d.recipient,
              e.id AS "eventId", e.type AS "eventType", e.subject_type AS "subjectType", e.subject_id AS "subjectId",
              e.created_at AS "createdAt", e.payload,
              c.name AS "channelName", c.config AS "channelConfig", c.secret AS "channelSecret", c.enabled AS "channelEnabled"
         FROM notification_deliveries d JOIN notification_events e ON e.id = d.event_id
         LEFT JOIN notification_channels c ON c.id = d.channel_id
        WHERE d.id = $1`,
      [row.id],
    );
    return taken ?? null;
  }

  /** pending → sent, only while this instance holds the claim. */
  async markSent(em: EntityManager, id: string): Promise<boolean> {
    const [, n]: [unknown, number] = await em.query(
      "UPDATE notification_deliveries SET status = 'sent', sent_at = now(), attempts = attempts + 1, claimed_until = NULL, last_error = NULL WHERE id = $1 AND status = 'pending' AND claimed_by = $2",
      [id, this.work.instanceId],
    );
    return n === 1;
  }

  /** A failed attempt: retried after `backoffSeconds`, or `failed` for good; only while this instance holds the claim. */
  async markFailed(em: EntityManager, id: string, o: { giveUp: boolean; backoffSeconds: number; error: string }): Promise<number | null> {
    const [rows]: [Array<{ attempts: number }>, number] = await em.query(
      `UPDATE notification_deliveries SET attempts = attempts + 1, last_error = $3, claimed_until = NULL,
              status = CASE WHEN $4 THEN 'failed' ELSE 'pending' END,
              next_attempt_at = now() + make_interval(secs => $5)
        WHERE id = $1 AND status = 'pending' AND claimed_by = $2 RETURNING attempts`,
      [id, this.work.instanceId, o.error.slice(0, 300), o.giveUp, o.backoffSeconds],
    );
    return rows[0]?.attempts ?? null;
  }

  /** The queue for the metrics: pending deliveries and the age of the oldest. */
  async queue(q: Queryable = this.dataSource): Promise<{ pending: number; oldestSeconds: number }> {
    const [row] = (await q.query(
      "SELECT count(*)::int AS pending, COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float AS oldest FROM notification_deliveries WHERE status = 'pending'",
    )) as Array<{ pending: number; oldest: number }>;
    return { pending: row.pending, oldestSeconds: row.oldest };
  }
}

/**
 * SQL fragment for other owners' statements (a reminder sweep picks only what was not reminded yet): true when an
 * event of `type` about the row whose id is in `idColumn` was written. A boolean expression; the name of the table
 * stays in this folder.
 */
export function notifiedSql(type: NotificationType, idColumn: string): string {
  if (!(type in NOTIFICATION_TYPES)) throw new Error(`unknown notification type ${type}`);
  return `EXISTS (SELECT 1 FROM notification_events n_sent WHERE n_sent.type = '${type}' AND n_sent.subject_id = (${sqlColumn(idColumn)})::text)`;
}

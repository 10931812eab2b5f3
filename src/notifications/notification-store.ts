import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { ClaimedWork, Queryable } from '../database/claimed-work';
import { sqlColumn } from '../database/sql-names';
import { userDisabledSql } from '../identity/user-standing';
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
  /** A person's e-mail: who (null for a channel, or when the user is gone). */
  recipientUserId: string | null;
  /** The person it is addressed to is disabled now (checked on every attempt). */
  recipientDisabled: boolean;
}

/** What a take passes over besides open circuits: channels busy on this instance (`smtp`: every e-mail). */
export interface PassOver {
  channels: readonly string[];
  smtp: boolean;
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

  /**
   * All of an event's deliveries in one statement: one array parameter per column (unnest), so a role of any size
   * fits (a row of parameters per recipient would overflow PostgreSQL's 65,535 at ~11,000 recipients).
   */
  async insertDeliveries(em: EntityManager, eventId: string, rows: NewDelivery[]): Promise<void> {
    if (rows.length === 0) return;
    await em.query(
      `INSERT INTO notification_deliveries (id, event_id, channel_id, channel_kind, recipient_user_id, recipient, status)
       SELECT t.id, $1, t.channel_id, t.channel_kind, t.recipient_user_id, t.recipient, t.status
         FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::uuid[], $6::text[], $7::text[]) AS t(id, channel_id, channel_kind, recipient_user_id, recipient, status)`,
      [
        eventId,
        rows.map((r) => r.id),
        rows.map((r) => r.channelId),
        rows.map((r) => r.channelKind),
        rows.map((r) => r.recipientUserId),
        rows.map((r) => r.recipient),
        rows.map((r) => r.status),
      ],
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

  /**
   * The enabled channels whose routes take this event type (and target), locked FOR KEY SHARE until the caller's
   * transaction ends: a channel deleted meanwhile waits for the change to commit (and its delete then fails what
   * was queued for it) instead of the insert of its deliveries failing the change on the foreign key.
   */
  async routedChannels(em: EntityManager, type: string, targetId: string | null): Promise<RoutedChannel[]> {
    const rows: RoutedChannel[] = await em.query(
      `SELECT c.id, c.name, c.kind FROM notification_routes r JOIN notification_channels c ON c.id = r.channel_id
        WHERE c.enabled AND (cardinality(r.event_types) = 0 OR $1 = ANY (r.event_types))
          AND (r.target_ids IS NULL OR ($2::uuid IS NOT NULL AND $2::uuid = ANY (r.target_ids)))
        ORDER BY c.name
        FOR KEY SHARE OF c`,
      [type, targetId],
    );
    const seen = new Set<string>(); // a channel with several matching routes is told once (no DISTINCT with a lock)
    return rows.filter((c) => !seen.has(c.id) && seen.add(c.id));
  }

  /**
   * Claims one pending delivery that is due (SKIP LOCKED), with its event and channel. Passed over:
   * - deliveries of a disabled channel (paused: taken again once it is enabled);
   * - deliveries of a channel whose circuit is open: one of its deliveries failed in a way worth a retry (a timeout,
   *   unreachable, 5xx …) and waits out its backoff — the channel's other deliveries wait as long, instead of each
   *   spending a timeout. People's e-mail and e-mail channels are one channel here (the vault's SMTP server); an SMTP
   *   deferral of one recipient (SMTP_TEMPORARY, e.g. greylisting) does not open it. The circuit is read from the
   *   table, so every instance sees it, and a backoff made to pass (next_attempt_at) closes it;
   * - `passOver`: channels busy on this instance (as many sends in flight as one channel may have).
   * So one slow or dead receiver never holds up the others.
   */
  async takeDue(claimSeconds: number, skip: readonly string[], passOver: PassOver = { channels: [], smtp: false }): Promise<TakenDelivery | null> {
    const backingOff = "b.status = 'pending' AND b.attempts > 0 AND b.next_attempt_at > now() AND b.last_error NOT LIKE 'SMTP_TEMPORARY:%'";
    const [row] = await this.work.claimBatch<{ id: string }>(this.dataSource, {
      table: 'notification_deliveries d',
      where: `d.status = 'pending' AND d.next_attempt_at <= now() AND (d.claimed_until IS NULL OR d.claimed_until < now()) AND NOT (d.id = ANY ($1::uuid[]))
              AND (d.channel_id IS NULL OR EXISTS (SELECT 1 FROM notification_channels c_on WHERE c_on.id = d.channel_id AND c_on.enabled))
              AND CASE WHEN d.channel_kind = 'email'
                       THEN NOT ($3::boolean OR EXISTS (SELECT 1 FROM notification_deliveries b WHERE ${backingOff} AND b.channel_kind = 'email'))
                       ELSE d.channel_id IS NULL OR NOT (d.channel_id = ANY ($2::uuid[] || ARRAY (SELECT b.channel_id FROM notification_deliveries b
                                                                                              WHERE ${backingOff} AND b.channel_id IS NOT NULL)))
                  END`,
      orderBy: 'd.next_attempt_at',
      limit: 1,
      seconds: claimSeconds,
      returning: 'd.id',
      params: [skip, passOver.channels, passOver.smtp],
    });
    if (!row) return null;
    // recipientDisabled is read on every attempt: a person disabled since the change is not told any more (the
    // recorded address stays as it was: the log shows who was to be told)
    const [taken]: TakenDelivery[] = await this.dataSource.query(
      `SELECT d.id, d.attempts, d.channel_id AS "channelId", d.channel_kind AS "channelKind", d.recipient,
              d.recipient_user_id AS "recipientUserId", ${userDisabledSql('d.recipient_user_id')} AS "recipientDisabled",
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

  /** Gives a taken delivery back without an attempt (its channel was disabled as it was taken): paused with it. */
  async release(id: string): Promise<void> {
    await this.dataSource.query("UPDATE notification_deliveries SET claimed_until = NULL WHERE id = $1 AND status = 'pending' AND claimed_by = $2", [id, this.work.instanceId]);
  }

  /**
   * Whether an `alert.delivery_failed` about this channel (null: the SMTP server, people's e-mail) may be written now:
   * false when one was written in the last `windowSeconds`. Serialised per channel (a transaction-scoped advisory
   * lock, then a new statement sees what the previous holder committed), so failures on several workers or
   * instances at once write one alert.
   */
  async mayAlertDeliveryFailed(em: EntityManager, channelId: string | null, windowSeconds: number): Promise<boolean> {
    await em.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`alert.delivery_failed:${channelId ?? 'smtp'}`]);
    const [row]: Array<{ recent: boolean }> = await em.query(
      `SELECT EXISTS (SELECT 1 FROM notification_events WHERE type = 'alert.delivery_failed' AND subject_id IS NOT DISTINCT FROM $1::text
                        AND created_at > now() - make_interval(secs => $2)) AS recent`,
      [channelId, windowSeconds],
    );
    return !row.recent;
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

import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { ClaimedWork, Queryable } from '../database/claimed-work';
import { sqlColumn } from '../database/sql-names';
import { contactsSql, userDisabledSql } from '../identity/user-standing';
import { NOTIFICATION_TYPES, NotificationFacts, NotificationType, Recipients } from './events';
import type { ChannelConfig, ChannelKind } from './senders/sender';

export type DeliveryStatus = 'pending' | 'sent' | 'failed' | 'muted' | 'no_address';

/** An event for the outbox, with whom to tell (see NotificationStore.writeEvent). */
export interface NewEvent {
  id: string;
  type: NotificationType;
  subjectType: string;
  subjectId: string | null;
  targetId: string | null;
  payload: NotificationFacts;
  to: Recipients;
  /** The kind may be muted by its recipients. */
  optional: boolean;
  /** An SMTP server is configured (people's e-mail can be sent). */
  smtp: boolean;
  onlyChannelId?: string;
  exceptChannelId?: string;
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

  /**
   * The outbox write, in ONE statement (the request path pays one round trip): the event, then one delivery per person
   * in `to` (their address and mutes as they are now: `no_address` without one — or without an SMTP server —, `muted`
   * when the kind is optional and they muted it, else `pending`) and one per channel routed to this type and target
   * (or `onlyChannel` alone: a test message), but `exceptChannelId`. The channels are locked FOR KEY SHARE until the
   * caller's transaction ends: a channel deleted meanwhile waits for the change to commit (and its delete then fails
   * what was queued for it) instead of the insert failing the change on the foreign key. Answers how many deliveries
   * are pending (nothing to nudge the deliverer for when none is).
   */
  async writeEvent(em: EntityManager, e: NewEvent): Promise<{ pending: number }> {
    const params: unknown[] = [];
    const p = (value: unknown) => `$${params.push(value)}`;
    const channels = e.onlyChannelId
      ? `SELECT c.id, c.name, c.kind FROM notification_channels c WHERE c.id = ${p(e.onlyChannelId)}::uuid FOR KEY SHARE`
      : `SELECT c.id, c.name, c.kind FROM notification_channels c
          WHERE c.enabled AND EXISTS (SELECT 1 FROM notification_routes r WHERE r.channel_id = c.id
                  AND (cardinality(r.event_types) = 0 OR ${p(e.type)} = ANY (r.event_types))
                  AND (r.target_ids IS NULL OR (${p(e.targetId)}::uuid IS NOT NULL AND ${p(e.targetId)}::uuid = ANY (r.target_ids))))
          FOR KEY SHARE`;
    const [row]: Array<{ pending: number }> = await em.query(
      `WITH ev AS (
         INSERT INTO notification_events (id, type, subject_type, subject_id, target_id, payload)
         VALUES (${p(e.id)}::uuid, ${p(e.type)}, ${p(e.subjectType)}, ${p(e.subjectId)}, ${p(e.targetId)}::uuid, ${p(JSON.stringify(e.payload))}::jsonb) RETURNING id),
       people AS (${contactsSql(e.to, p)}),
       channels AS (${channels}),
       rows AS (
         INSERT INTO notification_deliveries (id, event_id, channel_id, channel_kind, recipient_user_id, recipient, status)
         SELECT gen_random_uuid(), ev.id, NULL, 'email', people.id, COALESCE(people.email, people.username),
                CASE WHEN people.email IS NULL THEN 'no_address'
                     WHEN ${p(e.optional)}::boolean AND ${p(e.type)} = ANY (people.muted) THEN 'muted'
                     WHEN NOT ${p(e.smtp)}::boolean THEN 'no_address' ELSE 'pending' END
           FROM ev, people
         UNION ALL
         SELECT gen_random_uuid(), ev.id, channels.id, channels.kind, NULL, channels.name, 'pending'
           FROM ev, channels WHERE channels.id IS DISTINCT FROM ${p(e.exceptChannelId)}::uuid
         RETURNING status)
       SELECT count(*) FILTER (WHERE status = 'pending')::int AS pending FROM rows`,
      params,
    );
    return { pending: row.pending };
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
   * Claims up to `limit` pending deliveries that are due (SKIP LOCKED), with their events and channels, all for ONE
   * circuit (the channel of the first one due; people's e-mail and e-mail channels are one circuit, the vault's SMTP
   * server): the deliverer sends them one after another on one connection and records them in one statement, so a
   * burst of e-mails costs the database two statements per batch instead of two per e-mail. Passed over:
   * - deliveries of a disabled channel (paused: taken again once it is enabled);
   * - deliveries of a channel whose circuit is open: one of its deliveries failed in a way worth a retry (a timeout,
   *   unreachable, 5xx …) and waits out its backoff — the channel's other deliveries wait as long, instead of each
   *   spending a timeout. An SMTP deferral of one recipient (SMTP_TEMPORARY, e.g. greylisting) does not open it. The
   *   circuit is read from the table, so every instance sees it, and a backoff made to pass (next_attempt_at) closes it;
   * - `passOver`: channels busy on this instance (as many batches in flight as one channel may have).
   * So one slow or dead receiver never holds up the others. Oldest first; empty when nothing is due.
   */
  async takeDue(claimSeconds: number, skip: readonly string[], passOver: PassOver = { channels: [], smtp: false }, limit = 1): Promise<TakenDelivery[]> {
    const backingOff = "b.status = 'pending' AND b.attempts > 0 AND b.next_attempt_at > now() AND b.last_error NOT LIKE 'SMTP_TEMPORARY:%'";
    const circuit = (a: string) => `(CASE WHEN ${a}.channel_kind = 'email' OR ${a}.channel_id IS NULL THEN 'smtp' ELSE ${a}.channel_id::text END)`;
    const due = (a: string) => `${a}.status = 'pending' AND ${a}.next_attempt_at <= now() AND (${a}.claimed_until IS NULL OR ${a}.claimed_until < now()) AND NOT (${a}.id = ANY ($1::uuid[]))
              AND (${a}.channel_id IS NULL OR EXISTS (SELECT 1 FROM notification_channels c_on WHERE c_on.id = ${a}.channel_id AND c_on.enabled))
              AND CASE WHEN ${a}.channel_kind = 'email'
                       THEN NOT ($3::boolean OR EXISTS (SELECT 1 FROM notification_deliveries b WHERE ${backingOff} AND b.channel_kind = 'email'))
                       ELSE ${a}.channel_id IS NULL OR NOT (${a}.channel_id = ANY ($2::uuid[] || ARRAY (SELECT b.channel_id FROM notification_deliveries b
                                                                                              WHERE ${backingOff} AND b.channel_id IS NOT NULL)))
                  END`;
    // one circuit per batch: the first due delivery's (a batch of one needs no such condition)
    const oneCircuit = limit > 1 ? ` AND ${circuit('d')} = (SELECT ${circuit('f')} FROM notification_deliveries f WHERE ${due('f')} ORDER BY f.next_attempt_at LIMIT 1)` : '';
    // recipientDisabled is read on every attempt: a person disabled since the change is not told any more (the
    // recorded address stays as it was: the log shows who was to be told)
    return this.work.claimBatch<TakenDelivery>(this.dataSource, {
      table: 'notification_deliveries d',
      where: due('d') + oneCircuit,
      orderBy: 'd.next_attempt_at',
      limit,
      seconds: claimSeconds,
      returning: 'd.id, d.attempts, d.channel_id, d.channel_kind, d.recipient, d.recipient_user_id, d.event_id, d.next_attempt_at',
      select: `SELECT d.id, d.attempts, d.channel_id AS "channelId", d.channel_kind AS "channelKind", d.recipient,
                      d.recipient_user_id AS "recipientUserId", ${userDisabledSql('d.recipient_user_id')} AS "recipientDisabled",
                      e.id AS "eventId", e.type AS "eventType", e.subject_type AS "subjectType", e.subject_id AS "subjectId",
                      e.created_at AS "createdAt", e.payload,
                      c.name AS "channelName", c.config AS "channelConfig", c.secret AS "channelSecret", c.enabled AS "channelEnabled"
                 FROM claimed d JOIN notification_events e ON e.id = d.event_id
                 LEFT JOIN notification_channels c ON c.id = d.channel_id
                ORDER BY d.next_attempt_at, d.id`,
      params: [skip, passOver.channels, passOver.smtp],
    });
  }

  /**
   * Gives taken deliveries back without an attempt: their channel was disabled as they were taken (paused with it), or
   * a delivery before them in their batch opened the circuit (they wait with the channel).
   */
  async release(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.dataSource.query("UPDATE notification_deliveries SET claimed_until = NULL WHERE id = ANY ($1::uuid[]) AND status = 'pending' AND claimed_by = $2", [
      [...ids],
      this.work.instanceId,
    ]);
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

  /** pending → sent, only those this instance still holds the claim of (one statement for a batch); answers how many. */
  async markSent(ids: readonly string[]): Promise<number> {
    if (ids.length === 0) return 0;
    const [, n]: [unknown, number] = await this.dataSource.query(
      "UPDATE notification_deliveries SET status = 'sent', sent_at = now(), attempts = attempts + 1, claimed_until = NULL, last_error = NULL WHERE id = ANY ($1::uuid[]) AND status = 'pending' AND claimed_by = $2",
      [[...ids], this.work.instanceId],
    );
    return n;
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

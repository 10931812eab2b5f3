import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Notifications (issue 14): who may be told (users' e-mail and muted kinds), where messages go (channels and routes),
 * and the transactional outbox — an event written in the same transaction as the change it describes, with one
 * delivery per recipient and channel, each delivered at least once by any instance (claimed) and retried with backoff.
 */
export class Notifications1764000000000 implements MigrationInterface {
  name = 'Notifications1764000000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE users ADD COLUMN email text, ADD COLUMN muted_notifications text[] NOT NULL DEFAULT '{}'`);
    await q.query(`
      CREATE TABLE notification_channels (
        id uuid PRIMARY KEY,
        name text NOT NULL UNIQUE,
        kind text NOT NULL CHECK (kind IN ('email', 'webhook', 'slack', 'teams')),
        config jsonb NOT NULL DEFAULT '{}',
        secret bytea,
        enabled boolean NOT NULL DEFAULT true,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        version integer NOT NULL DEFAULT 1
      )`);
    await q.query(`
      CREATE TABLE notification_routes (
        id uuid PRIMARY KEY,
        channel_id uuid NOT NULL REFERENCES notification_channels (id) ON DELETE CASCADE,
        event_types text[] NOT NULL DEFAULT '{}',
        target_ids uuid[],
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`
      CREATE TABLE notification_events (
        id uuid PRIMARY KEY,
        seq bigserial NOT NULL UNIQUE,
        type text NOT NULL,
        subject_type text NOT NULL,
        subject_id text,
        target_id uuid,
        payload jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`
      CREATE TABLE notification_deliveries (
        id uuid PRIMARY KEY,
        seq bigserial NOT NULL UNIQUE,
        event_id uuid NOT NULL REFERENCES notification_events (id) ON DELETE CASCADE,
        channel_id uuid REFERENCES notification_channels (id) ON DELETE SET NULL,
        channel_kind text NOT NULL CHECK (channel_kind IN ('email', 'webhook', 'slack', 'teams')),
        recipient_user_id uuid REFERENCES users (id) ON DELETE SET NULL,
        recipient text NOT NULL,
        status text NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'muted', 'no_address')),
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at timestamptz NOT NULL DEFAULT now(),
        claimed_by text,
        claimed_until timestamptz,
        last_error text,
        created_at timestamptz NOT NULL DEFAULT now(),
        sent_at timestamptz
      )`);
    await q.query(`CREATE INDEX notification_deliveries_due_idx ON notification_deliveries (next_attempt_at) WHERE status = 'pending'`);
    await q.query(`CREATE INDEX notification_deliveries_event_idx ON notification_deliveries (event_id)`);
    // reminders are written once per item: the sweeps look for an earlier one by subject and type
    await q.query(`CREATE INDEX notification_events_subject_idx ON notification_events (subject_id, type)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE notification_deliveries');
    await q.query('DROP TABLE notification_events');
    await q.query('DROP TABLE notification_routes');
    await q.query('DROP TABLE notification_channels');
    await q.query('ALTER TABLE users DROP COLUMN muted_notifications, DROP COLUMN email');
  }
}

import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The SSH gateway (issue 16): its one host key (private half encrypted like every secret), single-use connection
 * tickets (stored as SHA-256 only, bound to the user, the checkout or one-time account and optionally a public key),
 * and the gateway sessions they opened. A one-time account keeps its password (encrypted) while it is active, so the
 * gateway can log in with it; it is cleared when the account ends.
 */
export class SshGateway1766000000000 implements MigrationInterface {
  name = 'SshGateway1766000000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE gateway_host_keys (
        id integer PRIMARY KEY CHECK (id = 1),
        public_key text NOT NULL,
        private_key bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`
      CREATE TABLE gateway_tickets (
        id uuid PRIMARY KEY,
        ticket_hash bytea NOT NULL UNIQUE,
        user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        checkout_id uuid REFERENCES checkouts (id) ON DELETE CASCADE,
        ephemeral_id uuid REFERENCES ephemeral_accounts (id) ON DELETE CASCADE,
        mode text NOT NULL CHECK (mode IN ('publickey', 'password')),
        public_key bytea,
        issued_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL,
        used_at timestamptz,
        CHECK ((checkout_id IS NULL) <> (ephemeral_id IS NULL)),
        CHECK ((mode = 'publickey') = (public_key IS NOT NULL))
      )`);
    await q.query('CREATE INDEX gateway_tickets_expires_idx ON gateway_tickets (expires_at)');
    // history: kept when the checkout, account or target is deleted (like the audit log), hence no foreign keys there
    await q.query(`
      CREATE TABLE gateway_sessions (
        id uuid PRIMARY KEY,
        seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
        ticket_id uuid NOT NULL,
        user_id uuid NOT NULL,
        checkout_id uuid,
        ephemeral_id uuid,
        target_id uuid NOT NULL,
        account text NOT NULL,
        instance_id text NOT NULL,
        client_address text,
        started_at timestamptz NOT NULL,
        ended_at timestamptz,
        end_reason text CHECK (end_reason IN ('client_closed', 'upstream_closed', 'checked_in', 'expired', 'revoked', 'terminated',
                                              'recording_failed', 'shutdown', 'error')),
        end_requested_at timestamptz,
        end_requested_by uuid,
        -- the instance holding it stamps it while it lives: a session not seen for a while lost its instance
        seen_at timestamptz NOT NULL DEFAULT now(),
        CHECK ((checkout_id IS NULL) <> (ephemeral_id IS NULL)),
        CHECK ((ended_at IS NULL) = (end_reason IS NULL))
      )`);
    await q.query('CREATE INDEX gateway_sessions_live_idx ON gateway_sessions (instance_id) WHERE ended_at IS NULL');
    await q.query('CREATE INDEX gateway_sessions_checkout_idx ON gateway_sessions (checkout_id) WHERE checkout_id IS NOT NULL');
    await q.query('CREATE INDEX gateway_sessions_ephemeral_idx ON gateway_sessions (ephemeral_id) WHERE ephemeral_id IS NOT NULL');
    await q.query('CREATE INDEX gateway_sessions_user_idx ON gateway_sessions (user_id, seq)');
    await q.query('CREATE INDEX gateway_sessions_target_idx ON gateway_sessions (target_id, seq)');
    await q.query('ALTER TABLE ephemeral_accounts ADD COLUMN secret bytea');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE ephemeral_accounts DROP COLUMN secret');
    await q.query('DROP TABLE gateway_sessions');
    await q.query('DROP TABLE gateway_tickets');
    await q.query('DROP TABLE gateway_host_keys');
  }
}

import { MigrationInterface, QueryRunner } from 'typeorm';

/** Keyring, users and login tokens, targets, accounts, and the audit log with its chain head. */
export class Foundation1763798400000 implements MigrationInterface {
  name = 'Foundation1763798400000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE keyring_keys (
        purpose text NOT NULL CHECK (purpose IN ('data', 'audit')),
        version integer NOT NULL CHECK (version > 0),
        wrapped bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        rewrapped_at timestamptz,
        PRIMARY KEY (purpose, version)
      )`);
    await q.query(`
      CREATE TABLE users (
        id uuid PRIMARY KEY,
        username text NOT NULL UNIQUE,
        password_hash text NOT NULL,
        roles text[] NOT NULL DEFAULT '{}',
        disabled boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`
      CREATE TABLE access_tokens (
        id uuid PRIMARY KEY,
        user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        token_hash bytea NOT NULL UNIQUE,
        expires_at timestamptz NOT NULL,
        revoked_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query('CREATE INDEX access_tokens_user_idx ON access_tokens (user_id)');
    await q.query(`
      CREATE TABLE targets (
        id uuid PRIMARY KEY,
        name text NOT NULL UNIQUE,
        type text NOT NULL CHECK (type IN ('ssh', 'postgres', 'mysql')),
        host text NOT NULL,
        port integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
        admin_username text NOT NULL,
        admin_secret bytea NOT NULL,
        admin_credentials text[] NOT NULL,
        options jsonb NOT NULL DEFAULT '{}',
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        version integer NOT NULL DEFAULT 1
      )`);
    await q.query(`
      CREATE TABLE accounts (
        id uuid PRIMARY KEY,
        target_id uuid NOT NULL REFERENCES targets (id) ON DELETE RESTRICT,
        username text NOT NULL,
        status text NOT NULL DEFAULT 'available'
          CHECK (status IN ('available', 'checked_out', 'rotating', 'needs_attention')),
        password_secret bytea NOT NULL,
        policy jsonb NOT NULL,
        last_rotated_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        version integer NOT NULL DEFAULT 1,
        UNIQUE (target_id, username)
      )`);
    await q.query(`
      CREATE TABLE audit_events (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL,
        type text NOT NULL,
        actor_id text,
        subject_type text NOT NULL,
        subject_id text,
        outcome text NOT NULL,
        details jsonb NOT NULL DEFAULT '{}',
        mac bytea NOT NULL,
        seq bigint UNIQUE,
        chain_hash bytea
      )`);
    await q.query('CREATE INDEX audit_events_unsealed_idx ON audit_events (id) WHERE seq IS NULL');
    await q.query('CREATE INDEX audit_events_subject_idx ON audit_events (subject_type, subject_id, id)');
    await q.query(`
      CREATE TABLE audit_chain_head (
        id smallint PRIMARY KEY CHECK (id = 1),
        seq bigint NOT NULL,
        hash bytea NOT NULL,
        mac bytea NOT NULL
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE audit_chain_head');
    await q.query('DROP TABLE audit_events');
    await q.query('DROP TABLE accounts');
    await q.query('DROP TABLE targets');
    await q.query('DROP TABLE access_tokens');
    await q.query('DROP TABLE users');
    await q.query('DROP TABLE keyring_keys');
  }
}

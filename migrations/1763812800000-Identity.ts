import { MigrationInterface, QueryRunner } from 'typeorm';

/** TOTP enrollment and the burned time step per user, service tokens, and failure counters for throttling. */
export class Identity1763812800000 implements MigrationInterface {
  name = 'Identity1763812800000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE users
        ADD COLUMN mfa_secret bytea,
        ADD COLUMN mfa_pending_secret bytea,
        ADD COLUMN mfa_enrolled_at timestamptz,
        ADD COLUMN mfa_last_step bigint NOT NULL DEFAULT 0`);
    await q.query(`
      CREATE TABLE service_tokens (
        id uuid PRIMARY KEY,
        name text NOT NULL,
        roles text[] NOT NULL,
        token_hash bytea NOT NULL UNIQUE,
        expires_at timestamptz,
        created_by uuid REFERENCES users (id) ON DELETE SET NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        revoked_at timestamptz
      )`);
    await q.query(`
      CREATE TABLE auth_throttle (
        key text PRIMARY KEY,
        failures integer NOT NULL,
        window_start timestamptz NOT NULL
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE auth_throttle');
    await q.query('DROP TABLE service_tokens');
    await q.query(`
      ALTER TABLE users
        DROP COLUMN mfa_secret,
        DROP COLUMN mfa_pending_secret,
        DROP COLUMN mfa_enrolled_at,
        DROP COLUMN mfa_last_step`);
  }
}

import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Write-ahead rotation records (INVARIANT 7): a rotation row holding the new password, encrypted, is
 * committed before the password touches the target; recovery reads these rows.
 */
export class Rotation1763827200000 implements MigrationInterface {
  name = 'Rotation1763827200000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE accounts
        ALTER COLUMN password_secret DROP NOT NULL,
        ADD COLUMN next_rotation_at timestamptz,
        ADD COLUMN rotation_failures integer NOT NULL DEFAULT 0,
        ADD COLUMN last_verified_at timestamptz`);
    await q.query("CREATE INDEX accounts_due_idx ON accounts (next_rotation_at) WHERE status = 'available'");
    await q.query(`
      CREATE TABLE rotations (
        id uuid PRIMARY KEY,
        account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
        reason text NOT NULL CHECK (reason IN ('manual', 'scheduled', 'onboard', 'checkin', 'drift', 'retry')),
        status text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'discarded')),
        pending_secret bytea,
        error_code text,
        requested_by text,
        claimed_by text NOT NULL,
        claimed_until timestamptz NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        finished_at timestamptz
      )`);
    await q.query("CREATE UNIQUE INDEX rotations_one_pending_idx ON rotations (account_id) WHERE status = 'pending'");
    await q.query('CREATE INDEX rotations_account_idx ON rotations (account_id, created_at DESC)');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE rotations');
    await q.query('DROP INDEX accounts_due_idx');
    await q.query('ALTER TABLE accounts DROP COLUMN next_rotation_at, DROP COLUMN rotation_failures, DROP COLUMN last_verified_at');
    await q.query('DELETE FROM accounts WHERE password_secret IS NULL');
    await q.query('ALTER TABLE accounts ALTER COLUMN password_secret SET NOT NULL');
  }
}

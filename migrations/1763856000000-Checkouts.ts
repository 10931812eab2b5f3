import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Checkouts (operators borrowing a shared credential) and their approvals. One open checkout per account is
 * enforced twice: the account row flips `available → checked_out` under its row lock, and a partial unique
 * index refuses a second open checkout row. `accounts.must_rotate` keeps an account that was checked out from
 * being handed out again before its post-check-in rotation has succeeded.
 */
export class Checkouts1763856000000 implements MigrationInterface {
  name = 'Checkouts1763856000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE accounts ADD COLUMN must_rotate boolean NOT NULL DEFAULT false');
    await q.query(`
      CREATE TABLE checkouts (
        id uuid PRIMARY KEY,
        seq bigserial NOT NULL UNIQUE,
        account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
        requester_id uuid NOT NULL REFERENCES users (id),
        status text NOT NULL CHECK (status IN ('pending_approval', 'active', 'returned', 'expired', 'revoked', 'denied')),
        justification text NOT NULL,
        ttl_seconds integer NOT NULL CHECK (ttl_seconds > 0),
        break_glass boolean NOT NULL DEFAULT false,
        approvals_required integer NOT NULL CHECK (approvals_required >= 0),
        rotate_after_checkin boolean NOT NULL,
        requested_at timestamptz NOT NULL,
        approval_deadline timestamptz,
        activated_at timestamptz,
        expires_at timestamptz,
        ended_at timestamptz,
        ended_by text,
        end_reason text,
        rotation_id uuid,
        cleanup text NOT NULL DEFAULT 'none' CHECK (cleanup IN ('none', 'pending', 'done', 'failed')),
        cleanup_claimed_by text,
        cleanup_claimed_until timestamptz,
        cleanup_attempts integer NOT NULL DEFAULT 0,
        reviewed_at timestamptz,
        reviewed_by uuid REFERENCES users (id),
        review_comment text,
        version integer NOT NULL DEFAULT 1
      )`);
    await q.query("CREATE UNIQUE INDEX checkouts_one_open_idx ON checkouts (account_id) WHERE status IN ('pending_approval', 'active')");
    await q.query("CREATE INDEX checkouts_expiry_idx ON checkouts (expires_at) WHERE status = 'active'");
    await q.query("CREATE INDEX checkouts_approval_deadline_idx ON checkouts (approval_deadline) WHERE status = 'pending_approval'");
    await q.query("CREATE INDEX checkouts_cleanup_idx ON checkouts (cleanup_claimed_until) WHERE cleanup = 'pending'");
    await q.query('CREATE INDEX checkouts_requester_idx ON checkouts (requester_id, seq)');
    await q.query('CREATE INDEX checkouts_account_idx ON checkouts (account_id, seq)');
    await q.query(`
      CREATE TABLE checkout_approvals (
        checkout_id uuid NOT NULL REFERENCES checkouts (id) ON DELETE CASCADE,
        approver_id uuid NOT NULL REFERENCES users (id),
        decision text NOT NULL CHECK (decision IN ('approve', 'deny')),
        request_digest text NOT NULL,
        comment text,
        decided_at timestamptz NOT NULL,
        PRIMARY KEY (checkout_id, approver_id)
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE checkout_approvals');
    await q.query('DROP TABLE checkouts');
    await q.query('ALTER TABLE accounts DROP COLUMN must_rotate');
  }
}

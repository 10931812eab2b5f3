import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * One-time accounts for vendors. A row is the vault's intent: it is committed (status `creating`, with the
 * generated username and a claim) before the account is created on the target, so the reaper can always find
 * and remove what a dead instance may have left there (INVARIANT 11). The password is never stored.
 */
export class Ephemeral1763870400000 implements MigrationInterface {
  name = 'Ephemeral1763870400000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE ephemeral_policies (
        target_id uuid PRIMARY KEY REFERENCES targets (id) ON DELETE CASCADE,
        policy jsonb NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`
      CREATE TABLE ephemeral_accounts (
        id uuid PRIMARY KEY,
        seq bigserial NOT NULL UNIQUE,
        target_id uuid NOT NULL REFERENCES targets (id) ON DELETE CASCADE,
        vendor_id uuid NOT NULL REFERENCES users (id),
        requester_id uuid NOT NULL REFERENCES users (id),
        status text NOT NULL CHECK (status IN ('pending_approval', 'approved', 'denied', 'creating', 'active', 'revoking', 'revoked', 'expired', 'needs_attention')),
        justification text NOT NULL,
        ttl_seconds integer NOT NULL CHECK (ttl_seconds > 0),
        access jsonb NOT NULL DEFAULT '{}',
        approvals_required integer NOT NULL CHECK (approvals_required >= 0),
        requested_at timestamptz NOT NULL,
        request_deadline timestamptz NOT NULL,
        username text,
        claimed_at timestamptz,
        expires_at timestamptz,
        ended_at timestamptz,
        ended_by text,
        end_reason text,
        attempts integer NOT NULL DEFAULT 0,
        last_error text,
        claimed_by text,
        claimed_until timestamptz,
        version integer NOT NULL DEFAULT 1
      )`);
    await q.query('CREATE UNIQUE INDEX ephemeral_username_idx ON ephemeral_accounts (target_id, username) WHERE username IS NOT NULL');
    await q.query("CREATE INDEX ephemeral_due_idx ON ephemeral_accounts (expires_at) WHERE status = 'active'");
    await q.query("CREATE INDEX ephemeral_work_idx ON ephemeral_accounts (claimed_until) WHERE status IN ('creating', 'revoking')");
    await q.query("CREATE INDEX ephemeral_open_idx ON ephemeral_accounts (request_deadline) WHERE status IN ('pending_approval', 'approved')");
    await q.query('CREATE INDEX ephemeral_vendor_idx ON ephemeral_accounts (vendor_id, seq)');
    await q.query(`
      CREATE TABLE ephemeral_approvals (
        ephemeral_id uuid NOT NULL REFERENCES ephemeral_accounts (id) ON DELETE CASCADE,
        approver_id uuid NOT NULL REFERENCES users (id),
        decision text NOT NULL CHECK (decision IN ('approve', 'deny')),
        request_digest text NOT NULL,
        comment text,
        decided_at timestamptz NOT NULL,
        PRIMARY KEY (ephemeral_id, approver_id)
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE ephemeral_approvals');
    await q.query('DROP TABLE ephemeral_accounts');
    await q.query('DROP TABLE ephemeral_policies');
  }
}

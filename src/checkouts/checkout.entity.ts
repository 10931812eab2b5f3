import { Column, Entity, PrimaryColumn } from 'typeorm';

export type CheckoutStatus = 'pending_approval' | 'active' | 'returned' | 'expired' | 'revoked' | 'denied';
/** Why a checkout ended: by its requester or an admin, by the clock, by force, by an approver, unanswered, its requester disabled. */
export type CheckoutEndReason = 'checked_in' | 'expired' | 'revoked' | 'denied' | 'approval_timeout' | 'requester_disabled' | 'requester_role_removed';
/** Work owed to the target after a checkout ended: the rotation (own record) and ending live sessions. */
export type CheckoutCleanup = 'none' | 'pending' | 'done' | 'failed';

@Entity({ name: 'checkouts' })
export class CheckoutEntity {
  @PrimaryColumn({ type: 'uuid' })
  id: string;

  /** Insertion order, for keyset pages (bigint: a string in JS). */
  @Column({ type: 'bigint', insert: false, update: false })
  seq: string;

  @Column({ name: 'account_id', type: 'uuid' })
  accountId: string;

  @Column({ name: 'requester_id', type: 'uuid' })
  requesterId: string;

  @Column({ type: 'text' })
  status: CheckoutStatus;

  @Column({ type: 'text' })
  justification: string;

  /** The lease length asked for (or the policy default), in seconds from activation. */
  @Column({ name: 'ttl_seconds', type: 'integer' })
  ttlSeconds: number;

  @Column({ name: 'break_glass', type: 'boolean' })
  breakGlass: boolean;

  /** The policy's number when the request was made: a later policy change does not alter a running request. */
  @Column({ name: 'approvals_required', type: 'integer' })
  approvalsRequired: number;

  /** The policy's rotateAfterCheckin when the request was made; the end rotates if this or the current policy says so. */
  @Column({ name: 'rotate_after_checkin', type: 'boolean' })
  rotateAfterCheckin: boolean;

  @Column({ name: 'requested_at', type: 'timestamptz' })
  requestedAt: Date;

  /** Pending only: unanswered by then, the request lapses. */
  @Column({ name: 'approval_deadline', type: 'timestamptz', nullable: true })
  approvalDeadline: Date | null;

  @Column({ name: 'activated_at', type: 'timestamptz', nullable: true })
  activatedAt: Date | null;

  @Column({ name: 'expires_at', type: 'timestamptz', nullable: true })
  expiresAt: Date | null;

  @Column({ name: 'ended_at', type: 'timestamptz', nullable: true })
  endedAt: Date | null;

  /** Actor id, or 'system' for the scheduler. */
  @Column({ name: 'ended_by', type: 'text', nullable: true })
  endedBy: string | null;

  @Column({ name: 'end_reason', type: 'text', nullable: true })
  endReason: CheckoutEndReason | null;

  /** The rotation written ahead when the checkout ended (policy rotateAfterCheckin). */
  @Column({ name: 'rotation_id', type: 'uuid', nullable: true })
  rotationId: string | null;

  @Column({ type: 'text' })
  cleanup: CheckoutCleanup;

  @Column({ name: 'cleanup_claimed_by', type: 'text', nullable: true })
  cleanupClaimedBy: string | null;

  @Column({ name: 'cleanup_attempts', type: 'integer' })
  cleanupAttempts: number;

  @Column({ name: 'reviewed_at', type: 'timestamptz', nullable: true })
  reviewedAt: Date | null;

  @Column({ name: 'reviewed_by', type: 'uuid', nullable: true })
  reviewedBy: string | null;

  @Column({ name: 'review_comment', type: 'text', nullable: true })
  reviewComment: string | null;
}

@Entity({ name: 'checkout_approvals' })
export class CheckoutApprovalEntity {
  @PrimaryColumn({ name: 'checkout_id', type: 'uuid' })
  checkoutId: string;

  @PrimaryColumn({ name: 'approver_id', type: 'uuid' })
  approverId: string;

  @Column({ type: 'text' })
  decision: 'approve' | 'deny';

  /** The digest of the request as this approver saw it; counts only while the request still matches it. */
  @Column({ name: 'request_digest', type: 'text' })
  requestDigest: string;

  @Column({ type: 'text', nullable: true })
  comment: string | null;

  @Column({ name: 'decided_at', type: 'timestamptz' })
  decidedAt: Date;
}

import { Injectable } from '@nestjs/common';
import { EntityManager } from 'typeorm';
import { AuditService } from '../audit/audit.service';
import { Clock } from '../common/clock';
import { recordDecision, selfApproval } from '../approvals/approvals';
import { Errors } from '../common/errors';
import { DecisionDto } from '../approvals/approvals.dto';
import { Actor } from '../identity/actor';
import { CheckoutEntity, OPEN_STATUSES } from './checkout.entity';
import { CheckoutStore } from './checkout-store';
import { CheckoutView, ReviewDto } from './checkouts.dto';

const SECOND = 1000;

/**
 * Approvers' decisions on pending checkouts, and their after-the-fact review of break-glass ones. Never the
 * requester; each approver once; an approval counts only while the request still matches the digest it was
 * given for (so a request changed behind the API does not inherit old approvals); any one denial ends it.
 */
@Injectable()
export class ApprovalsService {
  constructor(
    private readonly audit: AuditService,
    private readonly store: CheckoutStore,
    private readonly clock: Clock,
  ) {}

  /** MFA. Activates the checkout once `approvalsRequired` distinct approvers approved this exact request. */
  async approve(actor: Actor, id: string, dto: DecisionDto): Promise<CheckoutView> {
    return this.audit.transaction(async (em, audit) => {
      const { checkout, approvals: n } = await this.decide(em, actor, id, 'approve', dto);
      const details = { accountId: checkout.accountId, approvals: n, approvalsRequired: checkout.approvalsRequired, comment: dto.comment ?? null };
      await audit({ type: 'checkout.approved', actor, subjectType: 'checkout', subjectId: id, details });
      if (n >= checkout.approvalsRequired) {
        const now = this.clock.now();
        const expiresAt = new Date(now.getTime() + checkout.ttlSeconds * SECOND);
        await em.query("UPDATE checkouts SET status = 'active', activated_at = $2, expires_at = $3, version = version + 1 WHERE id = $1", [id, now, expiresAt]);
        await audit({ type: 'checkout.activated', actor, subjectType: 'checkout', subjectId: id, details: { accountId: checkout.accountId, expiresAt: expiresAt.toISOString() } });
      }
      return this.store.view(em, await em.getRepository(CheckoutEntity).findOneByOrFail({ id }));
    });
  }

  /** MFA. One denial ends the request and frees the account (its password was never revealed). */
  async deny(actor: Actor, id: string, dto: DecisionDto): Promise<CheckoutView> {
    return this.audit.transaction(async (em, audit) => {
      const { checkout } = await this.decide(em, actor, id, 'deny', dto);
      await em.query(
        "UPDATE checkouts SET status = 'denied', ended_at = $2, ended_by = $3, end_reason = 'denied', version = version + 1 WHERE id = $1",
        [id, this.clock.now(), actor.id],
      );
      await em.query("UPDATE accounts SET status = 'available', version = version + 1 WHERE id = $1 AND status = 'checked_out'", [checkout.accountId]);
      await audit({ type: 'checkout.denied', actor, subjectType: 'checkout', subjectId: id, details: { accountId: checkout.accountId, comment: dto.comment ?? null } });
      return this.store.view(em, await em.getRepository(CheckoutEntity).findOneByOrFail({ id }));
    });
  }

  /**
   * MFA. An approver's after-the-fact review of a break-glass checkout (once; not by its requester; only once it
   * has ended: the review is the one control after the fact, so it is never given while the access still runs).
   */
  async review(actor: Actor, id: string, dto: ReviewDto): Promise<CheckoutView> {
    return this.audit.transaction(async (em, audit) => {
      const checkout = await this.store.find(em, actor, id, true);
      if (checkout.requesterId === actor.id) throw selfApproval();
      if (!checkout.breakGlass) throw Errors.conflict('NOT_BREAK_GLASS', 'only break-glass checkouts are reviewed');
      if (OPEN_STATUSES.includes(checkout.status)) throw Errors.conflict('CHECKOUT_NOT_ENDED', 'the checkout is still open; review it once it has ended (checked in, expired or revoked)');
      if (checkout.reviewedAt) throw Errors.conflict('ALREADY_REVIEWED', 'this checkout was already reviewed');
      await em.query('UPDATE checkouts SET reviewed_at = $2, reviewed_by = $3, review_comment = $4, version = version + 1 WHERE id = $1', [
        id,
        this.clock.now(),
        actor.id,
        dto.comment,
      ]);
      await audit({ type: 'checkout.reviewed', actor, subjectType: 'checkout', subjectId: id, details: { accountId: checkout.accountId, comment: dto.comment } });
      return this.store.view(em, await em.getRepository(CheckoutEntity).findOneByOrFail({ id }));
    });
  }

  /** The checks both decisions share, then the decision row (src/approvals). */
  private async decide(em: EntityManager, actor: Actor, id: string, decision: 'approve' | 'deny', dto: DecisionDto) {
    const checkout = await this.store.find(em, actor, id, true);
    const digest = this.store.digest(checkout);
    const pending = { id, requesterId: checkout.requesterId, status: checkout.status, deadline: checkout.approvalDeadline as Date, digest };
    const approvals = await recordDecision(em, CHECKOUT_DECISIONS, pending, actor, decision, dto, this.clock.now(), 'CHECKOUT_NOT_PENDING');
    return { checkout, approvals };
  }
}

const CHECKOUT_DECISIONS = { table: 'checkout_approvals', requestColumn: 'checkout_id' } as const;

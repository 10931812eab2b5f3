import { Injectable } from '@nestjs/common';
import { EntityManager } from 'typeorm';
import { AuditService } from '../audit/audit.service';
import { Clock } from '../common/clock';
import { DomainException, Errors } from '../common/errors';
import { Actor } from '../identity/actor';
import { CheckoutApprovalEntity, CheckoutEntity } from './checkout.entity';
import { CheckoutStore } from './checkout-store';
import { CheckoutView, DecisionDto, ReviewDto } from './checkouts.dto';

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
      const { checkout, digest } = await this.decide(em, actor, id, 'approve', dto);
      const [{ n }]: Array<{ n: number }> = await em.query(
        "SELECT count(*)::int AS n FROM checkout_approvals WHERE checkout_id = $1 AND decision = 'approve' AND request_digest = $2",
        [id, digest],
      );
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

  /** An approver's after-the-fact review of a break-glass checkout (once; not by its requester). */
  async review(actor: Actor, id: string, dto: ReviewDto): Promise<CheckoutView> {
    return this.audit.transaction(async (em, audit) => {
      const checkout = await this.store.find(em, actor, id, true);
      if (checkout.requesterId === actor.id) throw selfApproval();
      if (!checkout.breakGlass) throw Errors.conflict('NOT_BREAK_GLASS', 'only break-glass checkouts are reviewed');
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

  /** The checks both decisions share, then the decision row (the primary key makes it one per approver). */
  private async decide(em: EntityManager, actor: Actor, id: string, decision: 'approve' | 'deny', dto: DecisionDto) {
    const checkout = await this.store.find(em, actor, id, true);
    if (checkout.requesterId === actor.id) throw selfApproval();
    if (checkout.status !== 'pending_approval') throw Errors.conflict('CHECKOUT_NOT_PENDING', `the checkout is ${checkout.status}`);
    if ((checkout.approvalDeadline as Date) <= this.clock.now()) throw Errors.gone('EXPIRED', 'the request was not approved in time');
    const digest = this.store.digest(checkout);
    if (dto.requestDigest !== undefined && dto.requestDigest !== digest) {
      throw Errors.conflict('REQUEST_CHANGED', 'the request is not the one you reviewed; read it again');
    }
    const repo = em.getRepository(CheckoutApprovalEntity);
    if (await repo.existsBy({ checkoutId: id, approverId: actor.id })) throw Errors.conflict('ALREADY_DECIDED', 'you already decided on this request');
    await repo.insert({ checkoutId: id, approverId: actor.id, decision, requestDigest: digest, comment: dto.comment ?? null, decidedAt: this.clock.now() });
    return { checkout, digest };
  }
}

const selfApproval = () => new DomainException(403, 'SELF_APPROVAL', 'a requester never approves, denies or reviews their own request');

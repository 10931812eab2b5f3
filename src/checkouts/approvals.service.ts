import { Inject, Injectable } from '@nestjs/common';
import { EntityManager } from 'typeorm';
import { AccountStore } from '../accounts/account-store';
import { selfApproval } from '../approvals/approvals';
import { DecisionDto } from '../approvals/approvals.dto';
import { Actor } from '../common/actor';
import { Clock } from '../common/clock';
import { Errors } from '../common/errors';
import { APP_CONFIG, AppConfig } from '../config/config';
import { UnitOfWork } from '../database/unit-of-work';
import { requireApproverStepUp } from '../identity/step-up';
import { CheckoutEntity } from './checkout.entity';
import { CheckoutNotices } from './checkout-notices';
import { isOpen } from './checkout-states';
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
    private readonly uow: UnitOfWork,
    private readonly store: CheckoutStore,
    private readonly accounts: AccountStore,
    private readonly notices: CheckoutNotices,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** MFA. Activates the checkout (transition `approve`) once `approvalsRequired` distinct approvers approved this exact request. */
  async approve(actor: Actor, id: string, dto: DecisionDto): Promise<CheckoutView> {
    requireApproverStepUp(this.config);
    return this.uow.run(async (tx) => {
      const { em, audit } = tx;
      const { checkout, approvals: n } = await this.decide(em, actor, id, 'approve', dto);
      const details = { accountId: checkout.accountId, approvals: n, approvalsRequired: checkout.approvalsRequired, comment: dto.comment ?? null };
      await audit({ type: 'checkout.approved', actor, subjectType: 'checkout', subjectId: id, details });
      let current: CheckoutEntity = checkout;
      if (n >= checkout.approvalsRequired) {
        const at = this.clock.now();
        const expiresAt = new Date(at.getTime() + checkout.ttlSeconds * SECOND);
        current = (await this.store.activate(em, id, at, expiresAt)) ?? notPending(checkout);
        await audit({ type: 'checkout.activated', actor, subjectType: 'checkout', subjectId: id, details: { accountId: checkout.accountId, expiresAt: expiresAt.toISOString() } });
        await this.notices.decided(tx, current, await this.notices.names(em, checkout), { approved: true, by: actor.name });
      }
      return this.store.view(em, current);
    });
  }

  /** MFA. One denial ends the request (transition `deny`) and frees the account (its password was never revealed). */
  async deny(actor: Actor, id: string, dto: DecisionDto): Promise<CheckoutView> {
    requireApproverStepUp(this.config);
    return this.uow.run(async (tx) => {
      const { em, audit } = tx;
      const { checkout } = await this.decide(em, actor, id, 'deny', dto);
      const denied = (await this.store.deny(em, id, this.clock.now(), actor.id)) ?? notPending(checkout);
      await this.accounts.release(em, checkout.accountId);
      await audit({ type: 'checkout.denied', actor, subjectType: 'checkout', subjectId: id, details: { accountId: checkout.accountId, comment: dto.comment ?? null } });
      await this.notices.decided(tx, denied, await this.notices.names(em, checkout), { approved: false, by: actor.name, comment: dto.comment });
      return this.store.view(em, denied);
    });
  }

  /**
   * MFA. An approver's or auditor's after-the-fact review of a break-glass checkout (once; not by its requester; only
   * once it has ended: the review is the one control after the fact, so it is never given while the access still runs).
   */
  async review(actor: Actor, id: string, dto: ReviewDto): Promise<CheckoutView> {
    return this.uow.run(async ({ em, audit }) => {
      const checkout = await this.store.find(em, actor, id, true);
      if (checkout.requesterId === actor.id) throw selfApproval();
      if (!checkout.breakGlass) throw Errors.conflict('NOT_BREAK_GLASS', 'only break-glass checkouts are reviewed');
      if (isOpen(checkout.status)) throw Errors.conflict('CHECKOUT_NOT_ENDED', 'the checkout is still open; review it once it has ended (checked in, expired or revoked)');
      if (checkout.reviewedAt) throw Errors.conflict('ALREADY_REVIEWED', 'this checkout was already reviewed');
      const reviewed = await this.store.review(em, id, this.clock.now(), actor.id, dto.comment);
      if (!reviewed) throw Errors.conflict('ALREADY_REVIEWED', 'this checkout was already reviewed');
      await audit({ type: 'checkout.reviewed', actor, subjectType: 'checkout', subjectId: id, details: { accountId: checkout.accountId, comment: dto.comment } });
      return this.store.view(em, reviewed);
    });
  }

  /** The checks both decisions share, then the decision row (src/approvals, on this module's checkout_approvals). */
  private async decide(em: EntityManager, actor: Actor, id: string, decision: 'approve' | 'deny', dto: DecisionDto) {
    const checkout = await this.store.find(em, actor, id, true);
    const digest = this.store.digest(checkout);
    const pending = { id, requesterId: checkout.requesterId, status: checkout.status, deadline: checkout.approvalDeadline as Date, digest };
    const approvals = await this.store.recordDecision(em, pending, actor, decision, dto, this.clock.now());
    return { checkout, approvals };
  }
}

/** The checkout was locked and pending when decided on: a transition that did not happen is a broken invariant. */
function notPending(c: CheckoutEntity): never {
  throw Errors.conflict('CHECKOUT_NOT_PENDING', `the request is ${c.status}`);
}

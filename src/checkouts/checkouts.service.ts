import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { DataSource, EntityManager, In } from 'typeorm';
import { AccountPolicy, effectivePolicy, maxLeaseSeconds } from '../accounts/policy';
import { AuditService } from '../audit/audit.service';
import { AuditInput } from '../audit/audit.types';
import { Clock } from '../common/clock';
import { DomainException, Errors } from '../common/errors';
import { Page } from '../common/pagination';
import { APP_CONFIG, AppConfig } from '../config/config';
import { isUniqueViolation, keysetPage } from '../database/queries';
import { Actor } from '../identity/actor';
import { CheckoutApprovalEntity, CheckoutEntity } from './checkout.entity';
import { CHECKOUT_COLUMNS, CheckoutStore, CredentialRow, seesAll } from './checkout-store';
import { CheckoutListQuery, CheckoutView, CreateCheckoutDto, CredentialView, ExtendDto, mapCheckout } from './checkouts.dto';

const SECOND = 1000;

/**
 * The operator's side of a checkout: request (active at once, pending approval, or break-glass), reveal and
 * extend an active one, list and read. The MFA code of every call here was verified and burned by the MFA guard
 * before the handler runs. Exclusivity is one conditional UPDATE of the account row (`available → checked_out`):
 * of any number of concurrent requests exactly one finds the account available.
 */
@Injectable()
export class CheckoutsService {
  constructor(
    private readonly dataSource: DataSource,
    private readonly audit: AuditService,
    private readonly store: CheckoutStore,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async request(actor: Actor, dto: CreateCheckoutDto): Promise<CheckoutView & { credential?: CredentialView }> {
    return this.audit.transaction(async (em) => {
      // the one decision, also reading what the answer needs (policy, credential, target address) in the same trip
      const [taken]: [Array<CredentialRow & { policy: AccountPolicy }>, number] = await em.query(
        `UPDATE accounts a SET status = 'checked_out', version = a.version + 1 FROM targets t
          WHERE a.id = $1 AND t.id = a.target_id AND a.status = 'available' AND a.password_secret IS NOT NULL AND NOT a.must_rotate
            AND NOT EXISTS (SELECT 1 FROM checkouts c WHERE c.account_id = a.id AND c.cleanup = 'pending')
          RETURNING a.id, a.policy, a.username, a.password_secret AS "passwordSecret", t.host, t.port`,
        [dto.accountId],
      );
      if (taken.length === 0) throw await unavailable(em, dto.accountId);
      const policy = effectivePolicy(taken[0].policy);
      const breakGlass = dto.breakGlass === true;
      const ttlSeconds = leaseLength(policy, breakGlass, dto.ttlSeconds);
      const needsApproval = !breakGlass && policy.approvalsRequired > 0;
      const now = this.clock.now();
      let checkout: CheckoutEntity;
      try {
        [checkout] = await em.query(
          `INSERT INTO checkouts (id, account_id, requester_id, status, justification, ttl_seconds, break_glass, approvals_required,
                                  rotate_after_checkin, requested_at, approval_deadline, activated_at, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING ${CHECKOUT_COLUMNS}`,
          [
            randomUUID(),
            dto.accountId,
            actor.id,
            needsApproval ? 'pending_approval' : 'active',
            dto.justification,
            ttlSeconds,
            breakGlass,
            policy.approvalsRequired,
            policy.rotateAfterCheckin,
            now,
            needsApproval ? new Date(now.getTime() + this.config.checkout.approvalTimeoutSeconds * SECOND) : null,
            needsApproval ? null : now,
            needsApproval ? null : new Date(now.getTime() + ttlSeconds * SECOND),
          ],
        );
      } catch (e) {
        // the account flip above already decides; the partial unique index is the second lock on the door
        if (isUniqueViolation(e)) throw checkedOut();
        throw e;
      }
      const event = (type: string, details: Record<string, unknown> = {}): AuditInput => ({
        type: `checkout.${type}`,
        actor,
        subjectType: 'checkout',
        subjectId: checkout.id,
        details: { accountId: checkout.accountId, ...details },
      });
      const events = [event('requested', { justification: dto.justification, ttlSeconds, breakGlass, approvalsRequired: policy.approvalsRequired })];
      if (breakGlass) events.push(event('break_glass', { justification: dto.justification, approvalsSkipped: policy.approvalsRequired }));
      const view = mapCheckout(checkout, [], this.store.digest(checkout));
      if (needsApproval) {
        await this.audit.recordMany(em, events);
        return view;
      }
      const credential = this.store.decryptCredential(taken[0]);
      events.push(event('activated', { expiresAt: checkout.expiresAt?.toISOString() }), event('revealed', { via: 'checkout' }));
      await this.audit.recordMany(em, events);
      return { ...view, credential };
    });
  }

  /** The requester reads the credential of their active checkout again (MFA). */
  async reveal(actor: Actor, id: string): Promise<{ credential: CredentialView; expiresAt: string }> {
    return this.audit.transaction(async (em, audit) => {
      const checkout = await this.activeOwnCheckout(em, actor, id);
      const credential = await this.store.credential(em, checkout.accountId);
      await audit({ type: 'checkout.revealed', actor, subjectType: 'checkout', subjectId: id, details: { accountId: checkout.accountId, via: 'reveal' } });
      return { credential, expiresAt: (checkout.expiresAt as Date).toISOString() };
    });
  }

  /** Adds `ttlSeconds` to the lease, which may not outgrow the policy's maximum counted from activation (MFA). */
  async extend(actor: Actor, id: string, dto: ExtendDto): Promise<CheckoutView> {
    return this.audit.transaction(async (em, audit) => {
      const checkout = await this.activeOwnCheckout(em, actor, id);
      const [account]: Array<{ policy: AccountPolicy }> = await em.query('SELECT policy FROM accounts WHERE id = $1', [checkout.accountId]);
      const policy = effectivePolicy(account.policy);
      const maxSeconds = maxLeaseSeconds(policy, checkout.breakGlass);
      const from = checkout.expiresAt as Date;
      const to = new Date(from.getTime() + dto.ttlSeconds * SECOND);
      const limit = new Date((checkout.activatedAt as Date).getTime() + maxSeconds * SECOND);
      if (to > limit) {
        throw new DomainException('TTL_EXCEEDS_POLICY', `the policy allows this checkout until ${limit.toISOString()} at most`, { maxExpiresAt: limit.toISOString() });
      }
      await em.query('UPDATE checkouts SET expires_at = $2, version = version + 1 WHERE id = $1', [id, to]);
      await audit({ type: 'checkout.extended', actor, subjectType: 'checkout', subjectId: id, details: { accountId: checkout.accountId, from: from.toISOString(), to: to.toISOString() } });
      return this.store.view(em, await em.getRepository(CheckoutEntity).findOneByOrFail({ id }));
    });
  }

  async get(actor: Actor, id: string): Promise<CheckoutView> {
    const em = this.dataSource.manager;
    return this.store.view(em, await this.store.find(em, actor, id));
  }

  /** Oldest first (keyset on insertion order). Operators see their own; admins, approvers and auditors see all. */
  async list(actor: Actor, q: CheckoutListQuery): Promise<Page<CheckoutView>> {
    const em = this.dataSource.manager;
    const page = await keysetPage(em, CheckoutEntity, { column: 'seq', kind: 'int64' }, q, (c) => c, (qb) => {
      if (!seesAll(actor)) qb.andWhere('r.requester_id = :me', { me: actor.id });
      if (q.status) qb.andWhere('r.status = :status', { status: q.status });
      if (q.accountId) qb.andWhere('r.account_id = :accountId', { accountId: q.accountId });
      if (q.requesterId) qb.andWhere('r.requester_id = :requesterId', { requesterId: q.requesterId });
      if (q.breakGlass) qb.andWhere('r.break_glass = :bg', { bg: q.breakGlass === 'true' });
      if (q.reviewed) qb.andWhere(q.reviewed === 'true' ? 'r.reviewed_at IS NOT NULL' : 'r.reviewed_at IS NULL');
    });
    const ids = page.items.map((c) => c.id);
    const approvals = ids.length ? await em.getRepository(CheckoutApprovalEntity).find({ where: { checkoutId: In(ids) }, order: { decidedAt: 'ASC' } }) : [];
    return {
      items: page.items.map((c) => mapCheckout(c, approvals.filter((a) => a.checkoutId === c.id), this.store.digest(c))),
      nextCursor: page.nextCursor,
    };
  }

  /** Locked; the caller's own; active and not past its expiry (the sweep may not have ended it yet). */
  private async activeOwnCheckout(em: EntityManager, actor: Actor, id: string): Promise<CheckoutEntity> {
    const checkout = await this.store.find(em, actor, id, true);
    if (checkout.requesterId !== actor.id) throw Errors.forbidden('only the requester may do this');
    if (checkout.status !== 'active') throw Errors.conflict('CHECKOUT_NOT_ACTIVE', `the checkout is ${checkout.status}`);
    if ((checkout.expiresAt as Date) <= this.clock.now()) throw Errors.gone('EXPIRED', 'the checkout has expired');
    return checkout;
  }
}

/** The lease length asked for, checked against the policy (break-glass has its own, shorter limit). */
function leaseLength(policy: AccountPolicy, breakGlass: boolean, asked: number | undefined): number {
  if (breakGlass && !policy.breakGlassAllowed) {
    throw new DomainException('BREAK_GLASS_NOT_ALLOWED', "this account's policy does not allow break-glass checkouts");
  }
  const max = maxLeaseSeconds(policy, breakGlass);
  const ttl = asked ?? (breakGlass ? max : policy.checkoutTtlSeconds);
  if (ttl > max) throw new DomainException('TTL_EXCEEDS_POLICY', `ttlSeconds may be at most ${max} for this account`, { maxTtlSeconds: max });
  return ttl;
}

const checkedOut = () => Errors.conflict('ACCOUNT_CHECKED_OUT', 'the account is checked out (or awaiting approval) by someone else');

/** Why the account could not be taken: each state has its own stable code. */
async function unavailable(em: EntityManager, accountId: string): Promise<DomainException> {
  const [a]: Array<{ status: string; has_password: boolean; must_rotate: boolean; cleanup_owed: boolean }> = await em.query(
    `SELECT status, password_secret IS NOT NULL AS has_password, must_rotate,
            EXISTS (SELECT 1 FROM checkouts c WHERE c.account_id = a.id AND c.cleanup = 'pending') AS cleanup_owed
       FROM accounts a WHERE id = $1`,
    [accountId],
  );
  if (!a) return Errors.notFound('account');
  if (a.status === 'checked_out') return checkedOut();
  if (a.status === 'rotating') return Errors.conflict('ACCOUNT_ROTATING', 'the account is being rotated; try again in a moment');
  if (a.status === 'needs_attention') return Errors.conflict('ACCOUNT_NEEDS_ATTENTION', 'the account needs attention from an administrator (rotation kept failing)');
  if (!a.has_password) return Errors.conflict('ACCOUNT_NO_PASSWORD', 'the vault holds no password for this account yet');
  if (a.must_rotate) return Errors.conflict('ACCOUNT_ROTATION_PENDING', 'the account must be rotated after its last checkout before it is handed out again');
  if (a.cleanup_owed) {
    return Errors.conflict('ACCOUNT_CLEANUP_PENDING', "the previous checkout's sessions on the target are still being ended; try again shortly");
  }
  // it was freed between the attempt and this look: the caller may simply try again
  return Errors.conflict('ACCOUNT_BUSY', 'the account changed state while it was being checked out; try again');
}

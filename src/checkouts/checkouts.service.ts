import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { AccountStore } from '../accounts/account-store';
import { AccountPolicy, maxLeaseSeconds } from '../accounts/policy';
import { AuditInput } from '../audit/audit.types';
import { Actor } from '../common/actor';
import { Clock } from '../common/clock';
import { DomainException, Errors } from '../common/errors';
import { Page } from '../common/pagination';
import { APP_CONFIG, AppConfig } from '../config/config';
import { isUniqueViolation } from '../database/queries';
import { UnitOfWork } from '../database/unit-of-work';
import { requireWebauthnStepUp } from '../identity/step-up';
import { CheckoutEntity } from './checkout.entity';
import { CheckoutNames, CheckoutNotices } from './checkout-notices';
import { CheckoutStore, noCleanupOwedSql } from './checkout-store';
import { CheckoutListQuery, CheckoutView, CreateCheckoutDto, CredentialView, ExtendDto, mapCheckout } from './checkouts.dto';

const SECOND = 1000;

/**
 * The operator's side of a checkout: request (active at once, pending approval, or break-glass), reveal and
 * extend an active one, list and read. The MFA code of every call here was verified and burned by the MFA guard
 * before the handler runs. Exclusivity is one conditional UPDATE of the account row (`available → checked_out`,
 * AccountStore.takeForCheckout guarded by this module's noCleanupOwedSql): of any number of concurrent requests
 * exactly one finds the account available.
 */
@Injectable()
export class CheckoutsService {
  constructor(
    private readonly dataSource: DataSource,
    private readonly uow: UnitOfWork,
    private readonly store: CheckoutStore,
    private readonly accounts: AccountStore,
    private readonly notices: CheckoutNotices,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async request(actor: Actor, dto: CreateCheckoutDto): Promise<CheckoutView & { credential?: CredentialView }> {
    return this.uow.run(async (tx) => {
      const { em } = tx;
      // the one decision, also reading what the answer needs (policy, credential, target address) in the same trip
      const taken = await this.accounts.takeForCheckout(em, dto.accountId, noCleanupOwedSql('a.id'));
      if (!taken) throw await this.unavailable(em, dto.accountId);
      const policy = taken.policy;
      // refused before anything else: the transaction rolls back, the step-up is burned all the same (MfaService.stepUp)
      if (policy.requireWebauthn) requireWebauthnStepUp(WEBAUTHN_POLICY);
      const breakGlass = dto.breakGlass === true;
      const ttlSeconds = leaseLength(policy, breakGlass, dto.ttlSeconds);
      const needsApproval = !breakGlass && policy.approvalsRequired > 0;
      const now = this.clock.now();
      let checkout: CheckoutEntity;
      try {
        checkout = await this.store.create(em, {
          id: randomUUID(),
          accountId: dto.accountId,
          requesterId: actor.id,
          status: needsApproval ? 'pending_approval' : 'active',
          justification: dto.justification,
          ttlSeconds,
          breakGlass,
          approvalsRequired: policy.approvalsRequired,
          rotateAfterCheckin: policy.rotateAfterCheckin,
          requestedAt: now,
          approvalDeadline: needsApproval ? new Date(now.getTime() + this.config.checkout.approvalTimeoutSeconds * SECOND) : null,
          activatedAt: needsApproval ? null : now,
          expiresAt: needsApproval ? null : new Date(now.getTime() + ttlSeconds * SECOND),
        });
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
      const view = mapCheckout(checkout, [], this.store.digest(checkout), actor.name);
      // who is told (approvers, or administrators and auditors of a break-glass) is named by the owners; a plain
      // checkout that needs no approval tells no one and reads nothing more
      const names = needsApproval || breakGlass ? await this.notices.names(em, checkout, { requester: actor.name }) : null;
      if (needsApproval) {
        for (const e of events) await tx.audit(e);
        await this.notices.approvalRequested(tx, checkout, names as CheckoutNames);
        return view;
      }
      events.push(event('activated', { expiresAt: checkout.expiresAt?.toISOString(), ...(policy.brokeredOnly ? { brokeredOnly: true } : {}) }));
      // brokered only: the password stays in the vault, the operator connects through the SSH gateway
      const credential = policy.brokeredOnly ? undefined : this.accounts.credentialOf(taken);
      if (credential) events.push(event('revealed', { via: 'checkout' }));
      for (const e of events) await tx.audit(e);
      if (breakGlass) await this.notices.breakGlass(tx, checkout, names as CheckoutNames);
      return credential ? { ...view, credential } : view;
    });
  }

  /** The requester reads the credential of their active checkout again (MFA). */
  async reveal(actor: Actor, id: string): Promise<{ credential: CredentialView; expiresAt: string }> {
    return this.uow.run(async ({ em, audit }) => {
      const checkout = await this.activeOwnCheckout(em, actor, id);
      const { policy } = await this.accounts.find(em, checkout.accountId);
      if (policy.requireWebauthn) requireWebauthnStepUp(WEBAUTHN_POLICY);
      if (policy.brokeredOnly) {
        throw Errors.conflict('BROKERED_ONLY', "this account's policy is brokered only: its password never leaves the vault; connect through the SSH gateway");
      }
      const credential = await this.accounts.credential(em, checkout.accountId);
      await audit({ type: 'checkout.revealed', actor, subjectType: 'checkout', subjectId: id, details: { accountId: checkout.accountId, via: 'reveal' } });
      return { credential, expiresAt: (checkout.expiresAt as Date).toISOString() };
    });
  }

  /** Adds `ttlSeconds` to the lease, which may not outgrow the policy's maximum counted from activation (MFA). */
  async extend(actor: Actor, id: string, dto: ExtendDto): Promise<CheckoutView> {
    return this.uow.run(async ({ em, audit }) => {
      const checkout = await this.activeOwnCheckout(em, actor, id);
      const { policy } = await this.accounts.find(em, checkout.accountId);
      if (policy.requireWebauthn) requireWebauthnStepUp(WEBAUTHN_POLICY);
      const maxSeconds = maxLeaseSeconds(policy, checkout.breakGlass);
      const from = checkout.expiresAt as Date;
      const to = new Date(from.getTime() + dto.ttlSeconds * SECOND);
      const limit = new Date((checkout.activatedAt as Date).getTime() + maxSeconds * SECOND);
      if (to > limit) {
        throw new DomainException('TTL_EXCEEDS_POLICY', `the policy allows this checkout until ${limit.toISOString()} at most`, { maxExpiresAt: limit.toISOString() });
      }
      const extended = await this.store.extend(em, id, to);
      if (!extended) throw Errors.conflict('CHECKOUT_NOT_ACTIVE', 'the checkout is no longer active');
      await audit({ type: 'checkout.extended', actor, subjectType: 'checkout', subjectId: id, details: { accountId: checkout.accountId, from: from.toISOString(), to: to.toISOString() } });
      return this.store.view(em, extended);
    });
  }

  async get(actor: Actor, id: string): Promise<CheckoutView> {
    const em = this.dataSource.manager;
    return this.store.view(em, await this.store.find(em, actor, id));
  }

  /** Oldest first (keyset on insertion order). Operators see their own; admins, approvers and auditors see all. */
  list(actor: Actor, q: CheckoutListQuery): Promise<Page<CheckoutView>> {
    return this.store.page(this.dataSource.manager, actor, q);
  }

  /** Locked; the caller's own; active and not past its expiry (the sweep may not have ended it yet). */
  private async activeOwnCheckout(em: EntityManager, actor: Actor, id: string): Promise<CheckoutEntity> {
    const checkout = await this.store.find(em, actor, id, true);
    if (checkout.requesterId !== actor.id) throw Errors.forbidden('only the requester may do this');
    if (checkout.status !== 'active') throw Errors.conflict('CHECKOUT_NOT_ACTIVE', `the checkout is ${checkout.status}`);
    if ((checkout.expiresAt as Date) <= this.clock.now()) throw Errors.gone('EXPIRED', 'the checkout has expired');
    return checkout;
  }

  /** Why the account could not be taken: each state has its own stable code (the account's, then this module's). */
  private async unavailable(em: EntityManager, accountId: string): Promise<DomainException> {
    const why = await this.accounts.whyNotTakeable(em, accountId);
    if (why) return why;
    if (await this.store.cleanupOwed(em, accountId)) {
      return Errors.conflict('ACCOUNT_CLEANUP_PENDING', "the previous checkout's sessions on the target are still being ended; try again shortly");
    }
    // it was freed between the attempt and this look: the caller may simply try again
    return Errors.conflict('ACCOUNT_BUSY', 'the account changed state while it was being checked out; try again');
  }
}

const WEBAUTHN_POLICY = "this account's policy requires a security key";

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

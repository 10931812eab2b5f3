import { Inject, Injectable, Logger } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { accountSettledSql, AccountStore } from '../accounts/account-store';
import { Actor } from '../common/actor';
import { Clock } from '../common/clock';
import { DomainException, Errors } from '../common/errors';
import { APP_CONFIG, AppConfig } from '../config/config';
import { backoffSeconds, ClaimedWork, errorType, SkipItem } from '../database/claimed-work';
import { Tx, UnitOfWork } from '../database/unit-of-work';
import { RotationService } from '../rotation/rotation.service';
import { TargetsService } from '../targets/targets.service';
import { CheckoutEntity } from './checkout.entity';
import { CheckoutNotices } from './checkout-notices';
import { EndReason } from './checkout-states';
import { CheckoutStore } from './checkout-store';
import { CheckoutView, RevokeDto } from './checkouts.dto';

/** The audit event each reason writes (`checkout.<type>`). */
const EVENT_OF: Record<EndReason, string> = {
  checked_in: 'checked_in',
  expired: 'expired',
  revoked: 'revoked',
  approval_timeout: 'expired',
  requester_disabled: 'revoked',
  requester_role_removed: 'revoked',
};

/** The wait before a failed session cleanup is tried again: 15 s doubling per attempt, at most an hour (jittered). */
const CLEANUP_BACKOFF = { baseSeconds: 15, capSeconds: 3600 };

/** What is owed to the target after a checkout ended, claimed by this instance in the ending transaction. */
interface Ended {
  id: string;
  accountId: string;
  rotationId: string | null;
  cleanup: boolean;
  /** The checkout as it was closed (what the answer shows). */
  row?: CheckoutEntity;
  /** Where its sessions are ended, as read (locked) by the transaction that ended it; read again when absent. */
  account?: { targetId: string; username: string };
}

/**
 * The end of a checkout, whoever ends it (requester, admin, the clock) — docs/invariants.md 10. In one transaction: the
 * checkout is closed (a transition of checkout-states.ts), the post-check-in rotation is written ahead (the account
 * goes `rotating` and keeps `must_rotate` until a rotation succeeds), the cleanup is claimed by this instance, and the
 * event is audited. After commit: the rotation runs (new password set, logged in with, committed), then the
 * account's live sessions on the target are ended — in that order, so nobody can log in again in between. If this
 * instance dies on the way, the rotation is recovered by the rotation engine and the cleanup claim lapses and is
 * taken over by the sweep (`finishStale`).
 */
@Injectable()
export class CheckoutLifecycleService {
  private readonly logger = new Logger(CheckoutLifecycleService.name);

  constructor(
    private readonly dataSource: DataSource,
    private readonly uow: UnitOfWork,
    private readonly store: CheckoutStore,
    private readonly accounts: AccountStore,
    private readonly rotation: RotationService,
    private readonly targets: TargetsService,
    private readonly work: ClaimedWork,
    private readonly notices: CheckoutNotices,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** The requester or an admin returns the account (a pending request is withdrawn the same way). */
  async checkin(actor: Actor, id: string): Promise<CheckoutView> {
    return this.endByHand(actor, id, 'checked_in', (c) => {
      if (c.requesterId !== actor.id && !actor.roles.includes('admin')) throw Errors.forbidden('only the requester or an admin may check in');
    });
  }

  /** An admin ends a checkout by force: sessions terminated, password rotated. */
  async revoke(actor: Actor, id: string, dto: RevokeDto): Promise<CheckoutView> {
    return this.endByHand(actor, id, 'revoked', () => undefined, { reason: dto.reason ?? null });
  }

  /**
   * The scheduler: ends leases past their expiry, requests unanswered past their deadline, and anything still open
   * of a requester who was disabled meanwhile (revoked, reason `requester_disabled`) or is no operator any more
   * (revoked, reason `requester_role_removed`: losing the role ends what it granted, as disabling does). Each is taken in
   * its own transaction with `FOR UPDATE SKIP LOCKED`, so across instances each is ended exactly once; they are
   * taken a batch (the rotation concurrency) at a time and finished before the next batch is taken, so no
   * written-ahead rotation waits behind others long enough for its claim to lapse. One checkout that cannot be
   * ended is skipped for this sweep (and logged) instead of stalling every expiry behind it.
   */
  expireDue(limit = 50): Promise<number> {
    return this.work.drain<Ended>({
      name: 'checkout-expiry',
      take: (skip) => this.expireOne(skip),
      key: (e) => e.id,
      run: (e) => this.finish(e),
      batchSize: this.config.rotation.concurrency,
      limit,
    });
  }

  /**
   * Cleanup still owed (its claimant died, the target was down, or the rotation had not succeeded yet): ends the
   * account's sessions. Taken only once the account's post-check-in rotation has succeeded (accountSettledSql: not
   * `rotating`, no `must_rotate`), so the last session ending always comes after the old password is dead.
   */
  finishStale(limit = 50): Promise<number> {
    return this.work.drain<Ended>({
      name: 'checkout-cleanup',
      take: async (skip) => {
        const [claimed] = await this.store.claimOwedCleanup(this.dataSource, {
          skip,
          limit: 1,
          seconds: this.config.rotation.claimSeconds,
          accountReadySql: accountSettledSql('c.account_id'),
        });
        return claimed ? { id: claimed.id, accountId: claimed.accountId, rotationId: null, cleanup: true } : null;
      },
      key: (e) => e.id,
      run: (e) => this.finish(e),
      batchSize: this.config.rotation.concurrency,
      limit,
    });
  }

  /** Ends the oldest due checkout not in `skip` (null when none is due); SkipItem when that one cannot be ended. */
  private async expireOne(skip: readonly string[]): Promise<Ended | null> {
    let tried: string | undefined;
    try {
      return await this.uow.run(async (tx) => {
        const due = await this.store.takeDue(tx.em, this.clock.now(), skip);
        if (!due) return null;
        tried = due.checkout.id;
        return this.end(tx, due.checkout, due.reason, null);
      });
    } catch (e) {
      if (tried === undefined) throw e; // the database itself failed: the sweep stops and retries later
      throw new SkipItem(tried, e);
    }
  }

  private async endByHand(actor: Actor, id: string, reason: EndReason, check: (c: CheckoutEntity) => void, details: Record<string, unknown> = {}): Promise<CheckoutView> {
    const ended = await this.uow.run(async (tx) => {
      const checkout = await this.store.find(tx.em, actor, id, true);
      check(checkout);
      if (checkout.status !== 'active' && checkout.status !== 'pending_approval') {
        throw Errors.conflict('CHECKOUT_ENDED', `the checkout is already ${checkout.status}`);
      }
      return this.end(tx, checkout, reason, actor, details);
    });
    await this.finish(ended);
    return this.store.view(this.dataSource.manager, ended.row as CheckoutEntity);
  }

  /** Closes an open checkout inside the caller's transaction (the checkout row locked by the caller). */
  private async end(tx: Tx, checkout: CheckoutEntity, reason: EndReason, actor: Actor | null, details: Record<string, unknown> = {}): Promise<Ended> {
    const account = await this.accounts.lockForCheckin(tx.em, checkout.accountId);
    // only an active checkout revealed the password: a pending one just frees the account
    const wasActive = checkout.status === 'active';
    let rotationId: string | null = null;
    // the policy at request time or now: an admin's PATCH during a checkout cannot skip the rotation it was promised
    const rotate = checkout.rotateAfterCheckin || account.policy.rotateAfterCheckin;
    if (wasActive && rotate && account.hasPassword) {
      rotationId = await this.rotation.writeAhead(tx, account, 'checkin', actor);
      await this.accounts.markMustRotate(tx.em, checkout.accountId);
    } else {
      await this.accounts.release(tx.em, checkout.accountId);
    }
    const row = await this.store.end(tx.em, checkout.id, reason, {
      endedAt: this.clock.now(),
      endedBy: actor?.id ?? 'system',
      rotationId,
      claimedBy: this.work.instanceId,
      claimSeconds: this.config.rotation.claimSeconds,
    });
    if (!row) throw Errors.conflict('CHECKOUT_ENDED', 'the checkout has already ended');
    await tx.audit({ type: `checkout.${EVENT_OF[reason]}`, actor, subjectType: 'checkout', subjectId: checkout.id, details: { accountId: checkout.accountId, reason, wasActive, rotationId, ...details } });
    await this.notices.ended(tx, checkout, reason, { account, detail: typeof details.reason === 'string' ? details.reason : null });
    return { id: checkout.id, accountId: checkout.accountId, rotationId, cleanup: wasActive, row, account: { targetId: account.targetId, username: account.username } };
  }

  /**
   * After commit: rotate (if written ahead), then end the account's sessions. After a rotation the cleanup claim is
   * renewed first (without one it was taken a moment ago, with the end or by the sweep: nothing to renew), but the
   * sessions are ended even when it lapsed meanwhile (a slow rotation): ending them twice is harmless, leaving them open
   * is not; only the outcome is recorded by whoever holds the claim.
   * Never throws.
   */
  private async finish(e: Ended): Promise<void> {
    if (!e.cleanup) return;
    if (e.rotationId) await this.rotation.execute(e.rotationId);
    let errorCode: string | null = null;
    try {
      if (e.rotationId) await this.store.renewCleanup(this.dataSource, e.id, this.config.rotation.claimSeconds);
      const account = e.account ?? (await this.accounts.find(this.dataSource.manager, e.accountId));
      const target = await this.targets.connectById(this.dataSource.manager, account.targetId);
      await target.terminateSessions({ username: account.username });
    } catch (err) {
      errorCode = err instanceof DomainException ? err.code : 'TARGET_ERROR';
    }
    await this.settleCleanup(e, errorCode).catch((err: unknown) => {
      this.logger.warn({ checkoutId: e.id, err: errorType(err) }, 'checkout cleanup could not be recorded; the sweep retries');
    });
  }

  /** Records the cleanup outcome if this instance still holds the claim; failures back off, then give up loudly. */
  private async settleCleanup(e: Ended, errorCode: string | null): Promise<void> {
    const me = this.work.instanceId;
    await this.uow.run(async (tx) => {
      const { em, audit } = tx;
      if (errorCode === null) {
        // the rotation did not succeed (yet): sessions were ended now anyway, and will be again once it has, since
        // until then the old password still logs in; the sweep takes this up when the account is rotated
        const done = await this.store.settleEndedCleanup(em, e.id, me, accountSettledSql('c.account_id'));
        if (!done) return; // another instance took over
        await audit({ type: 'checkout.sessions_terminated', actor: null, subjectType: 'checkout', subjectId: e.id, details: { accountId: e.accountId, rotationSettled: done.settled } });
        return;
      }
      const row = await this.store.lockCleanup(em, e.id, me, accountSettledSql('c.account_id'));
      if (!row) return; // another instance took over
      const attempts = row.attempts + 1;
      const gaveUp = attempts >= this.config.checkout.cleanupMaxAttempts;
      await this.store.failCleanup(em, e.id, me, { attempts, giveUp: gaveUp, backoffSeconds: backoffSeconds(attempts, CLEANUP_BACKOFF) });
      await audit({
        type: 'checkout.cleanup_failed',
        actor: null,
        subjectType: 'checkout',
        subjectId: e.id,
        outcome: 'failure',
        details: { accountId: e.accountId, errorCode, attempts, gaveUp },
      });
      if (gaveUp) {
        const checkout = (await this.store.get(em, e.id)) as CheckoutEntity;
        await this.notices.cleanupFailed(tx, checkout, await this.notices.names(em, checkout), { errorCode, attempts });
      }
    });
  }
}

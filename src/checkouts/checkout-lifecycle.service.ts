import { BeforeApplicationShutdown, Inject, Injectable, Logger } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { AccountEntity } from '../accounts/account.entity';
import { AccountPolicy, effectivePolicy } from '../accounts/policy';
import { AuditService } from '../audit/audit.service';
import { AuditInput } from '../audit/audit.types';
import { Clock } from '../common/clock';
import { DomainException, Errors } from '../common/errors';
import { APP_CONFIG, AppConfig } from '../config/config';
import { ConnectorRegistry } from '../connectors/connector.registry';
import { findByIdOrThrow } from '../database/queries';
import { Actor } from '../identity/actor';
import { RotationService } from '../rotation/rotation.service';
import { TargetEntity } from '../targets/target.entity';
import { TargetsService } from '../targets/targets.service';
import { CheckoutEntity } from './checkout.entity';
import { CHECKOUT_COLUMNS, CheckoutStore } from './checkout-store';
import { CheckoutView, RevokeDto } from './checkouts.dto';
import { BackgroundWork } from '../common/background';

type EndReason = 'checked_in' | 'expired' | 'revoked' | 'approval_timeout' | 'requester_disabled' | 'requester_role_removed';
const STATUS_AFTER: Record<EndReason, CheckoutEntity['status']> = {
  checked_in: 'returned',
  expired: 'expired',
  revoked: 'revoked',
  approval_timeout: 'expired',
  requester_disabled: 'revoked',
  requester_role_removed: 'revoked',
};
/** The audit event each reason writes (`checkout.<type>`). */
const EVENT_OF: Record<EndReason, string> = {
  checked_in: 'checked_in',
  expired: 'expired',
  revoked: 'revoked',
  approval_timeout: 'expired',
  requester_disabled: 'revoked',
  requester_role_removed: 'revoked',
};

/** What is owed to the target after a checkout ended, claimed by this instance in the ending transaction. */
interface Ended {
  id: string;
  accountId: string;
  rotationId: string | null;
  cleanup: boolean;
  /** The checkout as it was closed (what the answer shows). */
  row?: CheckoutEntity;
}

/**
 * The end of a checkout, whoever ends it (requester, admin, the clock) — INVARIANT 10. In one transaction: the
 * checkout is closed, the post-check-in rotation is written ahead (the account goes `rotating` and keeps
 * `must_rotate` until a rotation succeeds), the cleanup is claimed by this instance, and the event is audited.
 * After commit: the rotation runs (new password set, logged in with, committed), then the account's live sessions
 * on the target are ended — in that order, so nobody can log in again in between. If this instance dies on the
 * way, the rotation is recovered by the rotation engine and the cleanup claim lapses and is taken over by the sweep.
 */
@Injectable()
export class CheckoutLifecycleService implements BeforeApplicationShutdown {
  private readonly logger = new Logger(CheckoutLifecycleService.name);
  private readonly background = new BackgroundWork();

  constructor(
    private readonly dataSource: DataSource,
    private readonly audit: AuditService,
    private readonly store: CheckoutStore,
    private readonly rotation: RotationService,
    private readonly targets: TargetsService,
    private readonly connectors: ConnectorRegistry,
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
  async expireDue(limit = 50): Promise<number> {
    const skipped: string[] = [];
    let total = 0;
    while (total < limit) {
      const batch: Ended[] = [];
      while (batch.length < this.config.rotation.concurrency && total + batch.length < limit) {
        const one = await this.expireOne(skipped);
        if (one === null) break;
        if (one !== 'skipped') batch.push(one);
      }
      if (batch.length === 0) break;
      total += batch.length;
      await this.background.track(Promise.all(batch.map((e) => this.finish(e))));
    }
    return total;
  }

  /**
   * Cleanup still owed (its claimant died, the target was down, or the rotation had not succeeded yet): ends the
   * account's sessions. Taken only once the account's post-check-in rotation has succeeded (not `rotating`, no
   * `must_rotate`), so the last session ending always comes after the old password is dead.
   */
  async finishStale(limit = 50): Promise<number> {
    const [rows]: [Array<{ id: string; account_id: string }>, number] = await this.dataSource.query(
      `UPDATE checkouts SET cleanup_claimed_by = $1, cleanup_claimed_until = now() + make_interval(secs => $2)
        WHERE id IN (SELECT c.id FROM checkouts c JOIN accounts a ON a.id = c.account_id
                      WHERE c.cleanup = 'pending' AND c.cleanup_claimed_until < now()
                        AND a.status <> 'rotating' AND NOT a.must_rotate
                      ORDER BY c.cleanup_claimed_until LIMIT $3 FOR UPDATE OF c SKIP LOCKED)
        RETURNING id, account_id`,
      [this.rotation.instanceId, this.config.rotation.claimSeconds, limit],
    );
    await this.inBatches(rows, (r) => this.finish({ id: r.id, accountId: r.account_id, rotationId: null, cleanup: true }));
    return rows.length;
  }

  /** Before the database is closed (onApplicationShutdown is when TypeORM closes it): running work finishes first. */
  beforeApplicationShutdown(): Promise<void> {
    return this.background.settle();
  }

  /** Ends the oldest due checkout not in `skipped`: null when none is due, 'skipped' when that one failed. */
  private async expireOne(skipped: string[]): Promise<Ended | 'skipped' | null> {
    let tried: string | undefined;
    try {
      return await this.audit.transaction(async (em, audit) => {
        const now = this.clock.now();
        const due = await em
          .getRepository(CheckoutEntity)
          .createQueryBuilder('c')
          .where(
            `((c.status = 'active' AND c.expires_at <= :now) OR (c.status = 'pending_approval' AND c.approval_deadline <= :now)
              OR (c.status IN ('active', 'pending_approval')
                  AND EXISTS (SELECT 1 FROM users u WHERE u.id = c.requester_id AND (u.disabled OR NOT 'operator' = ANY (u.roles)))))`,
            { now },
          )
          .andWhere(skipped.length ? 'c.id NOT IN (:...skipped)' : 'TRUE', { skipped })
          .orderBy('c.seq', 'ASC')
          .limit(1)
          .setLock('pessimistic_write')
          .setOnLocked('skip_locked')
          .getOne();
        if (!due) return null;
        tried = due.id;
        const [{ disabled, operator }]: Array<{ disabled: boolean; operator: boolean }> = await em.query(
          "SELECT disabled, 'operator' = ANY (roles) AS operator FROM users WHERE id = $1",
          [due.requesterId],
        );
        const reason: EndReason = disabled ? 'requester_disabled' : !operator ? 'requester_role_removed' : due.status === 'active' ? 'expired' : 'approval_timeout';
        return this.end(em, audit, due, reason, null);
      });
    } catch (e) {
      if (tried === undefined) throw e; // the database itself failed: the sweep stops and retries later
      this.logger.warn({ checkoutId: tried, err: { type: (e as Error)?.name } }, 'could not end an expired checkout; skipped this sweep');
      skipped.push(tried);
      return 'skipped';
    }
  }

  private async endByHand(actor: Actor, id: string, reason: EndReason, check: (c: CheckoutEntity) => void, details: Record<string, unknown> = {}): Promise<CheckoutView> {
    const ended = await this.audit.transaction(async (em, audit) => {
      const checkout = await this.store.find(em, actor, id, true);
      check(checkout);
      if (checkout.status !== 'active' && checkout.status !== 'pending_approval') {
        throw Errors.conflict('CHECKOUT_ENDED', `the checkout is already ${checkout.status}`);
      }
      return this.end(em, audit, checkout, reason, actor, details);
    });
    await this.finish(ended);
    return this.store.view(this.dataSource.manager, ended.row as CheckoutEntity);
  }

  /** Closes an open checkout inside the caller's transaction (the checkout row locked by the caller). */
  private async end(
    em: EntityManager,
    audit: (i: AuditInput) => Promise<string>,
    checkout: CheckoutEntity,
    reason: EndReason,
    actor: Actor | null,
    details: Record<string, unknown> = {},
  ): Promise<Ended> {
    const [account]: Array<{ policy: AccountPolicy; has_password: boolean }> = await em.query(
      'SELECT policy, password_secret IS NOT NULL AS has_password FROM accounts WHERE id = $1 FOR UPDATE',
      [checkout.accountId],
    );
    if (!account) throw Errors.notFound('account');
    // only an active checkout revealed the password: a pending one just frees the account
    const wasActive = checkout.status === 'active';
    let rotationId: string | null = null;
    // the policy at request time or now: an admin's PATCH during a checkout cannot skip the rotation it was promised
    const rotate = checkout.rotateAfterCheckin || effectivePolicy(account.policy).rotateAfterCheckin;
    if (wasActive && rotate && account.has_password) {
      const entity = await findByIdOrThrow(em, AccountEntity, checkout.accountId, 'account');
      rotationId = await this.rotation.writeAhead(em, audit, entity, 'checkin', actor);
      await em.query('UPDATE accounts SET must_rotate = true WHERE id = $1', [checkout.accountId]);
    } else {
      await em.query("UPDATE accounts SET status = 'available', version = version + 1 WHERE id = $1 AND status = 'checked_out'", [checkout.accountId]);
    }
    const [[row]]: [CheckoutEntity[], number] = await em.query(
      `UPDATE checkouts SET status = $2, ended_at = $3, ended_by = $4, end_reason = $5, rotation_id = $6, cleanup = $7,
              cleanup_claimed_by = $8, cleanup_claimed_until = now() + make_interval(secs => $9), version = version + 1
        WHERE id = $1 RETURNING ${CHECKOUT_COLUMNS}`,
      [checkout.id, STATUS_AFTER[reason], this.clock.now(), actor?.id ?? 'system', reason, rotationId, wasActive ? 'pending' : 'none', this.rotation.instanceId, this.config.rotation.claimSeconds],
    );
    await audit({ type: `checkout.${EVENT_OF[reason]}`, actor, subjectType: 'checkout', subjectId: checkout.id, details: { accountId: checkout.accountId, reason, wasActive, rotationId, ...details } });
    return { id: checkout.id, accountId: checkout.accountId, rotationId, cleanup: wasActive, row };
  }

  /** After commit: rotate (if written ahead), then end the account's sessions. Never throws. */
  private async finish(e: Ended): Promise<void> {
    if (!e.cleanup) return;
    if (e.rotationId) await this.rotation.execute(e.rotationId);
    let errorCode: string | null = null;
    try {
      const [account]: Array<{ username: string; target_id: string }> = await this.dataSource.query('SELECT username, target_id FROM accounts WHERE id = $1', [e.accountId]);
      if (!account) throw Errors.notFound('account');
      const target = await findByIdOrThrow(this.dataSource.manager, TargetEntity, account.target_id, 'target');
      await this.connectors.get(target.type).terminateSessions(await this.targets.connectorTarget(target), account.username);
    } catch (err) {
      errorCode = err instanceof DomainException ? err.code : 'TARGET_ERROR';
    }
    await this.settleCleanup(e, errorCode).catch((err: unknown) => {
      this.logger.warn({ checkoutId: e.id, err: { type: (err as Error)?.name } }, 'checkout cleanup could not be recorded; the sweep retries');
    });
  }

  /** Records the cleanup outcome if this instance still holds the claim; failures back off, then give up loudly. */
  private async settleCleanup(e: Ended, errorCode: string | null): Promise<void> {
    await this.audit.transaction(async (em, audit) => {
      const [row]: Array<{ attempts: number; settled: boolean }> = await em.query(
        `SELECT c.cleanup_attempts AS attempts, a.status <> 'rotating' AND NOT a.must_rotate AS settled
           FROM checkouts c JOIN accounts a ON a.id = c.account_id
          WHERE c.id = $1 AND c.cleanup = 'pending' AND c.cleanup_claimed_by = $2 FOR UPDATE OF c`,
        [e.id, this.rotation.instanceId],
      );
      if (!row) return; // another instance took over
      if (errorCode === null) {
        // the rotation did not succeed (yet): sessions were ended now anyway, and will be again once it has, since
        // until then the old password still logs in; the sweep takes this up when the account is rotated
        const settled = row.settled;
        if (settled) await em.query("UPDATE checkouts SET cleanup = 'done', cleanup_claimed_until = NULL WHERE id = $1", [e.id]);
        else await em.query('UPDATE checkouts SET cleanup_claimed_until = now() WHERE id = $1', [e.id]);
        await audit({ type: 'checkout.sessions_terminated', actor: null, subjectType: 'checkout', subjectId: e.id, details: { accountId: e.accountId, rotationSettled: settled } });
        return;
      }
      const attempts = row.attempts + 1;
      const gaveUp = attempts >= this.config.checkout.cleanupMaxAttempts;
      const backoffSeconds = Math.min(3600, 15 * 2 ** (attempts - 1)) * (0.5 + Math.random() / 2);
      await em.query(
        'UPDATE checkouts SET cleanup = $2, cleanup_attempts = $3, cleanup_claimed_until = now() + make_interval(secs => $4) WHERE id = $1',
        [e.id, gaveUp ? 'failed' : 'pending', attempts, backoffSeconds],
      );
      await audit({
        type: 'checkout.cleanup_failed',
        actor: null,
        subjectType: 'checkout',
        subjectId: e.id,
        outcome: 'failure',
        details: { accountId: e.accountId, errorCode, attempts, gaveUp },
      });
    });
  }

  private async inBatches<T>(items: T[], work: (item: T) => Promise<void>): Promise<void> {
    const size = this.config.rotation.concurrency;
    for (let i = 0; i < items.length; i += size) await this.background.track(Promise.all(items.slice(i, i + size).map(work)));
  }
}

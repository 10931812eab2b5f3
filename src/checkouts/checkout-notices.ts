import { Inject, Injectable } from '@nestjs/common';
import { EntityManager } from 'typeorm';
import { Account, AccountStore } from '../accounts/account-store';
import { durationText, mayDecide, remindOnce } from '../approvals/notices';
import { Clock } from '../common/clock';
import { APP_CONFIG, AppConfig } from '../config/config';
import { Tx, UnitOfWork } from '../database/unit-of-work';
import { UsersService } from '../identity/users.service';
import type { NotificationFacts, NotificationType, Recipients } from '../notifications/events';
import { NotificationStore } from '../notifications/notification-store';
import { TargetsService } from '../targets/targets.service';
import { CheckoutEntity } from './checkout.entity';
import { EndReason } from './checkout-states';
import { CheckoutStore } from './checkout-store';

/** What a checkout's messages name (never its password): the target, the account and the requester. */
export interface CheckoutNames {
  targetId: string;
  target: string;
  account: string;
  requester: string;
}

type Checkout = Pick<CheckoutEntity, 'id' | 'accountId' | 'requesterId' | 'justification' | 'ttlSeconds'>;

const ALERT: Recipients = { roles: ['admin', 'auditor'] };

/** Why a checkout was revoked, as its message says it. */
const REVOKED_BECAUSE: Partial<Record<EndReason, string>> = {
  revoked: 'revoked by an administrator',
  requester_disabled: 'the requester was disabled',
  requester_role_removed: 'the requester is no operator any more',
};

/**
 * The messages about checkouts (README "Notifications"), each written with `tx.notify` in the unit of work of the
 * change it tells of, next to its audit event: a request waits for approval (every approver who may decide it now),
 * its decision, lapse or revocation (its requester), break-glass and a session cleanup given up (administrators and
 * auditors), and the lease about to end (its holder, once, from the checkout sweep). Facts only: names, the
 * justification, times — never the password.
 */
@Injectable()
export class CheckoutNotices {
  constructor(
    private readonly uow: UnitOfWork,
    private readonly store: CheckoutStore,
    private readonly accounts: AccountStore,
    private readonly targets: TargetsService,
    private readonly users: UsersService,
    private readonly notifications: NotificationStore,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** The names, read by their owners in the caller's transaction; what the caller holds already is not read again. */
  async names(em: EntityManager, c: Pick<CheckoutEntity, 'accountId' | 'requesterId'>, known: { account?: Pick<Account, 'username' | 'targetId'>; requester?: string } = {}): Promise<CheckoutNames> {
    const account = known.account ?? (await this.accounts.find(em, c.accountId));
    const target = await this.targets.find(em, account.targetId);
    const requester = known.requester ?? (await this.users.get(c.requesterId, em)).username;
    return { targetId: account.targetId, target: target.name, account: account.username, requester };
  }

  /** A request waits for approval: every user who may approve it now (approvers, never its requester). */
  approvalRequested(tx: Tx, c: Checkout & { approvalDeadline: Date | null }, n: CheckoutNames): Promise<string> {
    return this.send(tx, 'approval.requested', c, n, mayDecide([c.requesterId]), {
      summary: `${n.requester} asks for ${n.account} on ${n.target} for ${durationText(c.ttlSeconds)}`,
      deadline: c.approvalDeadline?.toISOString(),
      ttlSeconds: c.ttlSeconds,
    });
  }

  /** A break-glass checkout began (no approval asked): administrators and auditors. */
  breakGlass(tx: Tx, c: Checkout & { expiresAt: Date | null }, n: CheckoutNames): Promise<string> {
    return this.send(tx, 'alert.break_glass', c, n, ALERT, {
      summary: `${n.requester} used break-glass on ${n.account} on ${n.target} for ${durationText(c.ttlSeconds)}`,
      deadline: c.expiresAt?.toISOString(),
      ttlSeconds: c.ttlSeconds,
    });
  }

  /** The last approval needed was given (the lease runs) or an approver denied it: its requester. */
  decided(tx: Tx, c: Checkout & { expiresAt: Date | null }, n: CheckoutNames, d: { approved: boolean; by: string; comment?: string }): Promise<string> {
    if (d.approved) {
      return this.send(tx, 'request.approved', c, n, { users: [c.requesterId] }, {
        summary: `${n.requester}'s request for ${n.account} on ${n.target} was approved`,
        deadline: c.expiresAt?.toISOString(),
        ttlSeconds: c.ttlSeconds,
      });
    }
    return this.send(tx, 'request.denied', c, n, { users: [c.requesterId] }, {
      summary: `${n.requester}'s request for ${n.account} on ${n.target} was denied by ${d.by}`,
      reason: d.comment,
    });
  }

  /**
   * A checkout ended: a request nobody approved in time lapsed, or the checkout was revoked (by an administrator, or
   * its requester was disabled or lost the operator role) — its requester. A check-in or an expired lease tells no one.
   */
  async ended(tx: Tx, c: Checkout & { approvalDeadline: Date | null }, reason: EndReason, o: { account: Pick<Account, 'username' | 'targetId'>; detail?: string | null }): Promise<string | null> {
    const because = REVOKED_BECAUSE[reason];
    if (reason !== 'approval_timeout' && !because) return null; // nothing is read for an end that tells no one
    const n = await this.names(tx.em, c, { account: o.account });
    if (reason === 'approval_timeout') {
      return this.send(tx, 'request.lapsed', c, n, { users: [c.requesterId] }, {
        summary: `${n.requester}'s request for ${n.account} on ${n.target} lapsed: it was not approved in time`,
        deadline: c.approvalDeadline?.toISOString(),
        reason: 'approval_timeout',
      });
    }
    return this.send(tx, 'request.revoked', c, n, { users: [c.requesterId] }, {
      summary: `${n.requester}'s checkout of ${n.account} on ${n.target} was revoked`,
      reason: o.detail ? `${because}: ${o.detail}` : because,
      code: reason,
    });
  }

  /** Ending the account's sessions failed the last allowed time: administrators and auditors must look. */
  cleanupFailed(tx: Tx, c: Checkout, n: CheckoutNames, o: { errorCode: string; attempts: number }): Promise<string> {
    return this.send(tx, 'alert.cleanup_failed', c, n, ALERT, {
      summary: `Ending the sessions of ${n.account} on ${n.target} after ${n.requester}'s checkout failed ${o.attempts} times: a person must look`,
      code: o.errorCode,
      count: o.attempts,
    });
  }

  /**
   * The sweep's reminder step: each active checkout whose lease ends within VAULT_NOTIFY_EXPIRY_LEAD_SECONDS tells its
   * holder once (remindOnce: locked, checked again, reminded in one transaction; two sweeps never both remind).
   */
  remindExpiring(limit = 50): Promise<number> {
    return remindOnce(this.uow, this.notifications, {
      type: 'checkout.expiring',
      idColumn: 'c.id',
      query: { now: this.clock.now(), leadSeconds: this.config.notify.expiryLeadSeconds, limit },
      lock: (em, q) => this.store.lockExpiringSoon(em, q),
      remind: async (tx, c, left) => {
        const n = await this.names(tx.em, c);
        return this.send(tx, 'checkout.expiring', c, n, { users: [c.requesterId] }, {
          summary: `${n.requester}'s checkout of ${n.account} on ${n.target} ends in ${durationText(left)}`,
          deadline: (c.expiresAt as Date).toISOString(),
        });
      },
    });
  }

  /** One message about the checkout: its link is built from the subject; routes may filter on its target. */
  private send(tx: Tx, type: NotificationType, c: Checkout, n: CheckoutNames, to: Recipients, facts: Omit<NotificationFacts, 'requester' | 'target' | 'account' | 'justification'>): Promise<string> {
    return tx.notify({
      type,
      subjectType: 'checkout',
      subjectId: c.id,
      targetId: n.targetId,
      to,
      facts: { ...facts, requester: n.requester, target: n.target, account: n.account, justification: c.justification },
    });
  }
}

import { Inject, Injectable } from '@nestjs/common';
import { EntityManager } from 'typeorm';
import { durationText, mayDecide, remindOnce } from '../approvals/notices';
import { Clock } from '../common/clock';
import { APP_CONFIG, AppConfig } from '../config/config';
import { Tx, UnitOfWork } from '../database/unit-of-work';
import { UsersService } from '../identity/users.service';
import type { NotificationFacts, NotificationType, Recipients } from '../notifications/events';
import { NotificationStore } from '../notifications/notification-store';
import { TargetsService } from '../targets/targets.service';
import { EphemeralStore } from './ephemeral-store';
import { EphemeralAccountEntity } from './ephemeral.entity';

/** What a one-time account's messages name (never its password): the target, the requester and the vendor. */
export interface EphemeralNames {
  target: string;
  requester: string;
  vendor: string;
}

/** The fields of a one-time account its messages use. */
export type EphemeralSubject = Pick<EphemeralAccountEntity, 'id' | 'targetId' | 'requesterId' | 'vendorId' | 'justification'> &
  Partial<Pick<EphemeralAccountEntity, 'ttlSeconds' | 'username' | 'requestDeadline' | 'expiresAt'>>;

const ALERT: Recipients = { roles: ['admin', 'auditor'] };

/**
 * The messages about one-time accounts (README "Notifications"), each written with `tx.notify` in the unit of work of
 * the change it tells of, next to its audit event: a request waits for approval (every approver who may decide it
 * now: never its requester or its vendor), the vendor's account is ready to claim, a decision, lapse or revocation
 * (its requester and its vendor), a removal given up (administrators and auditors), and the account about to expire
 * (its vendor, once, from the reaper's timer). Facts only: names, the justification, times — never the password.
 */
@Injectable()
export class EphemeralNotices {
  constructor(
    private readonly uow: UnitOfWork,
    private readonly store: EphemeralStore,
    private readonly targets: TargetsService,
    private readonly users: UsersService,
    private readonly notifications: NotificationStore,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** The names, read by their owners in the caller's transaction; what the caller holds already is not read again. */
  async names(em: EntityManager, r: EphemeralSubject, known: Partial<EphemeralNames> = {}): Promise<EphemeralNames> {
    return {
      target: known.target ?? (await this.targets.find(em, r.targetId)).name,
      requester: known.requester ?? (await this.users.get(r.requesterId, em)).username,
      vendor: known.vendor ?? (await this.users.get(r.vendorId, em)).username,
    };
  }

  /** A request waits for approval (new, or sent back by a policy that now wants more): who may approve it now. */
  approvalRequested(tx: Tx, r: EphemeralSubject, n: EphemeralNames): Promise<string> {
    return this.send(tx, 'approval.requested', r, n, mayDecide([r.requesterId, r.vendorId]), {
      summary: `${n.requester} asks for a one-time account on ${n.target} for ${n.vendor}${r.ttlSeconds ? ` for ${durationText(r.ttlSeconds)}` : ''}`,
      deadline: r.requestDeadline?.toISOString(),
      ttlSeconds: r.ttlSeconds,
    });
  }

  /** Approved (or needing no approval): the vendor may claim it, until the request's deadline. */
  ready(tx: Tx, r: EphemeralSubject, n: EphemeralNames): Promise<string> {
    return this.send(tx, 'ephemeral.ready', r, n, { users: [r.vendorId] }, {
      summary: `${n.vendor}'s one-time account on ${n.target} is ready to claim (asked for by ${n.requester})`,
      deadline: r.requestDeadline?.toISOString(),
      ttlSeconds: r.ttlSeconds,
    });
  }

  /** The last approval needed: the requester is told, and the vendor that it is ready to claim. */
  async approved(tx: Tx, r: EphemeralSubject, n: EphemeralNames): Promise<void> {
    await this.send(tx, 'request.approved', r, n, { users: [r.requesterId] }, {
      summary: `${n.requester}'s request for a one-time account on ${n.target} for ${n.vendor} was approved`,
      deadline: r.requestDeadline?.toISOString(),
    });
    await this.ready(tx, r, n);
  }

  /** An approver denied it: its requester and its vendor. */
  denied(tx: Tx, r: EphemeralSubject, n: EphemeralNames, d: { by: string; comment?: string }): Promise<string> {
    return this.send(tx, 'request.denied', r, n, { users: [r.requesterId, r.vendorId] }, {
      summary: `${n.requester}'s request for a one-time account on ${n.target} for ${n.vendor} was denied by ${d.by}`,
      reason: d.comment,
    });
  }

  /** Not approved and claimed before its deadline (the reaper): its requester and its vendor. */
  lapsed(tx: Tx, r: EphemeralSubject, n: EphemeralNames): Promise<string> {
    return this.send(tx, 'request.lapsed', r, n, { users: [r.requesterId, r.vendorId] }, {
      summary: `${n.requester}'s request for a one-time account on ${n.target} for ${n.vendor} lapsed: it was not approved and claimed in time`,
      deadline: r.requestDeadline?.toISOString(),
      reason: 'request_timeout',
    });
  }

  /**
   * Revoked — by a person (the one who did it is not told), or by the reaper because its vendor was disabled or is no
   * vendor any more: its requester and its vendor.
   */
  revoked(tx: Tx, r: EphemeralSubject, n: EphemeralNames, o: { by: string | null }): Promise<string> {
    const what = r.username ? `${n.vendor}'s one-time account ${r.username} on ${n.target}` : `${n.requester}'s request for a one-time account on ${n.target} for ${n.vendor}`;
    return this.send(tx, 'request.revoked', r, n, { users: [r.requesterId, r.vendorId].filter((id) => id !== o.by) }, {
      summary: `${what} was revoked`,
      reason: o.by === null ? 'the vendor was disabled or is no vendor any more' : undefined,
    });
  }

  /** The reaper gave up removing it from the target (needs_attention): administrators and auditors must look. */
  removeFailed(tx: Tx, r: EphemeralSubject, n: EphemeralNames, o: { errorCode: string; attempts: number }): Promise<string> {
    return this.send(tx, 'alert.ephemeral_remove_failed', r, n, ALERT, {
      summary: `Removing the one-time account ${r.username ?? '(unnamed)'} of ${n.vendor} from ${n.target} failed ${o.attempts} times: it needs attention`,
      code: o.errorCode,
      count: o.attempts,
    });
  }

  /**
   * The reaper's reminder step: each active one-time account that expires within VAULT_NOTIFY_EXPIRY_LEAD_SECONDS tells
   * its vendor once (remindOnce: locked, checked again, reminded in one transaction; two sweeps never both remind).
   */
  remindExpiring(limit = 50): Promise<number> {
    return remindOnce(this.uow, this.notifications, {
      type: 'ephemeral.expiring',
      idColumn: 'e.id',
      query: { now: this.clock.now(), leadSeconds: this.config.notify.expiryLeadSeconds, limit },
      lock: (em, q) => this.store.lockExpiringSoon(em, q),
      remind: async (tx, r, left) => {
        const n = await this.names(tx.em, r);
        return this.send(tx, 'ephemeral.expiring', r, n, { users: [r.vendorId] }, {
          summary: `${n.vendor}'s one-time account ${r.username} on ${n.target} expires in ${durationText(left)}`,
          deadline: r.expiresAt.toISOString(),
        });
      },
    });
  }

  /** One message about the one-time account: its link is built from the subject; routes may filter on its target. */
  private send(tx: Tx, type: NotificationType, r: EphemeralSubject, n: EphemeralNames, to: Recipients, facts: Omit<NotificationFacts, 'requester' | 'target' | 'account' | 'justification'>): Promise<string> {
    return tx.notify({
      type,
      subjectType: 'ephemeral_account',
      subjectId: r.id,
      targetId: r.targetId,
      to,
      facts: { ...facts, requester: n.requester, target: n.target, ...(r.username ? { account: r.username } : {}), justification: r.justification },
    });
  }
}

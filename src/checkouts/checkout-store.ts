import { Injectable, OnModuleInit } from '@nestjs/common';
import { DataSource, EntityManager, In } from 'typeorm';
import { DecisionInput, DecisionTable, PendingRequest, recordDecision, requestDigest } from '../approvals/approvals';
import type { ExpiringSoonQuery } from '../approvals/notices';
import { Actor } from '../common/actor';
import { Errors } from '../common/errors';
import { Page } from '../common/pagination';
import { KeyringService } from '../crypto/keyring.service';
import { ClaimedWork, Queryable } from '../database/claimed-work';
import { keysetPage } from '../database/queries';
import { userDisabledSql, userLacksRoleSql } from '../identity/user-standing';
import { UsersService } from '../identity/users.service';
import { MetricsService, PENDING_APPROVALS_GAUGE } from '../metrics/metrics.service';
import { CheckoutApprovalEntity, CheckoutEntity, CheckoutStatus } from './checkout.entity';
import { CHECKOUT_UPDATES, endableFrom, EndReason, endStatus } from './checkout-states';
import { CheckoutListQuery, CheckoutView, mapCheckout } from './checkouts.dto';
import { sqlColumn } from '../database/sql-names';

/** Roles that see every checkout; anyone else (an operator) sees only their own. */
const SEES_ALL = ['admin', 'approver', 'auditor'] as const;

/** Where checkout approvals are kept, for the shared decision mechanics (src/approvals). */
const CHECKOUT_DECISIONS: DecisionTable = { table: 'checkout_approvals', requestColumn: 'checkout_id' };

/** The states of the vault_checkouts gauge (CheckoutWatchCounts). */
const WATCH_STATES = ['active', 'pending_approval', 'break_glass_unreviewed', 'cleanup_failed'] as const;

/** The cleanup claim's columns (the claimed-work defaults are `claimed_by` / `claimed_until`). */
const CLEANUP_CLAIM = { claimedBy: 'cleanup_claimed_by', claimedUntil: 'cleanup_claimed_until' } as const;

/**
 * The owner of `checkouts` and `checkout_approvals`: every statement on them is here. The status changes are the
 * transitions of checkout-states.ts; each checks its `from` in its WHERE, bumps `version` and answers the row (or null
 * when the checkout was not in a state the transition leaves). Other owners compose `noCleanupOwedSql`. Callers run
 * these in their own unit of work.
 */
@Injectable()
export class CheckoutStore implements OnModuleInit {
  constructor(
    private readonly dataSource: DataSource,
    private readonly keyring: KeyringService,
    private readonly work: ClaimedWork,
    private readonly metrics: MetricsService,
    private readonly users: UsersService,
  ) {}

  /** The checkouts gauge is read here, by the table's owner (the joint vault_pending_approvals reads pendingApprovalCount). */
  onModuleInit(): void {
    this.metrics.stateGauge({
      name: 'vault_checkouts',
      help: 'Checkouts that need watching: open (active, pending_approval), break-glass not yet reviewed, and cleanup that failed (sessions not ended)',
      label: 'state',
      values: WATCH_STATES,
      read: async () => ({ ...(await this.watchCounts(this.dataSource)) }),
    });
    this.metrics.stateGauge({ ...PENDING_APPROVALS_GAUGE, source: 'checkout', read: async () => ({ checkout: await this.pendingApprovalCount(this.dataSource) }) });
  }

  // ---- reads ------------------------------------------------------------------------------------------------

  /** Loads a checkout (optionally `FOR UPDATE`); 404 when it does not exist or the actor may not see it. */
  async find(em: EntityManager, actor: Actor, id: string, lock = false): Promise<CheckoutEntity> {
    const checkout = await this.get(em, id, lock);
    if (!checkout || !canSee(actor, checkout)) throw Errors.notFound('checkout');
    return checkout;
  }

  /** A checkout by id, whoever asks (optionally `FOR UPDATE`); null when there is none. */
  async get(em: EntityManager, id: string, lock = false): Promise<CheckoutEntity | null> {
    const [checkout]: CheckoutEntity[] = await em.query(`SELECT ${CHECKOUT_COLUMNS} FROM checkouts WHERE id = $1${lock ? ' FOR UPDATE' : ''}`, [id]);
    return checkout ?? null;
  }

  /** The API view; a checkout that never needed approvals has none to load. */
  async view(em: EntityManager, checkout: CheckoutEntity): Promise<CheckoutView> {
    const approvals =
      checkout.approvalsRequired === 0 ? [] : await em.getRepository(CheckoutApprovalEntity).find({ where: { checkoutId: checkout.id }, order: { decidedAt: 'ASC' } });
    const names = await this.users.usernames(em, [checkout.requesterId]);
    return mapCheckout(checkout, approvals, this.digest(checkout), names.get(checkout.requesterId) ?? null);
  }

  /** Oldest first (keyset on insertion order). Operators see their own; admins, approvers and auditors see all. */
  async page(em: EntityManager, actor: Actor, q: CheckoutListQuery): Promise<Page<CheckoutView>> {
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
    const names = await this.users.usernames(em, page.items.map((c) => c.requesterId));
    return {
      items: page.items.map((c) => mapCheckout(c, approvals.filter((a) => a.checkoutId === c.id), this.digest(c), names.get(c.requesterId) ?? null)),
      nextCursor: page.nextCursor,
    };
  }

  /**
   * What an approval is bound to: the account, the requester, the lease length, the justification and the
   * break-glass flag, MACed with the audit key so that someone who can write the database cannot make an old
   * approval fit a changed request.
   */
  digest(c: Pick<CheckoutEntity, 'id' | 'accountId' | 'requesterId' | 'ttlSeconds' | 'justification' | 'breakGlass'>): string {
    return requestDigest(this.keyring.auditKey(), 'checkout', [c.id, c.accountId, c.requesterId, c.ttlSeconds, c.justification, c.breakGlass]);
  }

  /** Whether a checkout of the account still owes its session cleanup (the account is not handed out until done). */
  async cleanupOwed(em: EntityManager, accountId: string): Promise<boolean> {
    const [{ owed }]: Array<{ owed: boolean }> = await em.query(`SELECT NOT ${noCleanupOwedSql('$1::uuid')} AS owed`, [accountId]);
    return owed;
  }

  /**
   * Why the account's checkout history may not be deleted with it (null: it may): not while the target still owes a
   * session cleanup, or while a failed cleanup or an unreviewed break-glass checkout waits for a person (deleting
   * would clear the alarm unseen).
   */
  async whyAccountCannotBeDeleted(em: EntityManager, accountId: string): Promise<string | null> {
    const [owed]: Array<{ why: string }> = await em.query(
      `SELECT CASE WHEN cleanup IN ('pending', 'failed') THEN 'its last checkout''s session cleanup is ' || cleanup
                   ELSE 'a break-glass checkout of it is not reviewed yet' END AS why
         FROM checkouts WHERE account_id = $1 AND (cleanup IN ('pending', 'failed') OR (break_glass AND reviewed_at IS NULL)) LIMIT 1`,
      [accountId],
    );
    return owed?.why ?? null;
  }

  /** For the metrics: checkouts that need watching (open, break-glass not reviewed, cleanup given up). */
  async watchCounts(q: Queryable): Promise<CheckoutWatchCounts> {
    const [row] = (await q.query(
      `SELECT count(*) FILTER (WHERE status = 'active')::int AS active,
              count(*) FILTER (WHERE status = 'pending_approval')::int AS pending_approval,
              count(*) FILTER (WHERE break_glass AND reviewed_at IS NULL)::int AS break_glass_unreviewed,
              count(*) FILTER (WHERE cleanup = 'failed')::int AS cleanup_failed
         FROM checkouts WHERE status IN ('active', 'pending_approval') OR (break_glass AND reviewed_at IS NULL) OR cleanup = 'failed'`,
    )) as CheckoutWatchCounts[];
    return row;
  }

  /** For the metrics: checkout requests waiting for approvers. */
  async pendingApprovalCount(q: Queryable): Promise<number> {
    const [{ n }] = (await q.query("SELECT count(*)::int AS n FROM checkouts WHERE status = 'pending_approval'")) as Array<{ n: number }>;
    return n;
  }

  // ---- transitions --------------------------------------------------------------------------------------------

  /** A new checkout, `pending_approval` or `active`; a second open checkout of the account is a unique violation. */
  async create(em: EntityManager, c: NewCheckout): Promise<CheckoutEntity> {
    const [row]: CheckoutEntity[] = await em.query(
      `INSERT INTO checkouts (id, account_id, requester_id, status, justification, ttl_seconds, break_glass, approvals_required,
                              rotate_after_checkin, requested_at, approval_deadline, activated_at, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING ${CHECKOUT_COLUMNS}`,
      [c.id, c.accountId, c.requesterId, c.status, c.justification, c.ttlSeconds, c.breakGlass, c.approvalsRequired, c.rotateAfterCheckin, c.requestedAt, c.approvalDeadline, c.activatedAt, c.expiresAt],
    );
    return row;
  }

  /** approve: pending_approval → active, the lease running from `now`. */
  async activate(em: EntityManager, id: string, now: Date, expiresAt: Date): Promise<CheckoutEntity | null> {
    return this.one(em, "status = 'active', activated_at = $2, expires_at = $3", "status = 'pending_approval'", [id, now, expiresAt]);
  }

  /** deny: pending_approval → denied. */
  async deny(em: EntityManager, id: string, now: Date, approverId: string): Promise<CheckoutEntity | null> {
    return this.one(em, "status = 'denied', ended_at = $2, ended_by = $3, end_reason = 'denied'", "status = 'pending_approval'", [id, now, approverId]);
  }

  /**
   * Ends an open checkout for `reason` (withdraw, lapse, check in, expire, revoke: checkout-states.ts). An active one
   * starts its cleanup (none → pending) claimed by `end.claimedBy`; a pending one never revealed the password and
   * owes none.
   */
  async end(em: EntityManager, id: string, reason: EndReason, e: CheckoutEnd): Promise<CheckoutEntity | null> {
    return this.one(
      em,
      `status = $2, ended_at = $3, ended_by = $4, end_reason = $5, rotation_id = $6,
       cleanup = CASE WHEN status = 'active' THEN 'pending' ELSE 'none' END,
       cleanup_claimed_by = $7, cleanup_claimed_until = now() + make_interval(secs => $8)`,
      "status = ANY ($9::text[]) AND cleanup = 'none'",
      [id, endStatus(reason), e.endedAt, e.endedBy, reason, e.rotationId, e.claimedBy, e.claimSeconds, endableFrom(reason)],
    );
  }

  /** extend: an active checkout's lease ends at `expiresAt` instead. */
  async extend(em: EntityManager, id: string, expiresAt: Date): Promise<CheckoutEntity | null> {
    return this.one(em, 'expires_at = $2', 'status = ANY ($3::text[])', [id, expiresAt, CHECKOUT_UPDATES.extend.in]);
  }

  /** review: once, a break-glass checkout that has ended. */
  async review(em: EntityManager, id: string, now: Date, reviewerId: string, comment: string): Promise<CheckoutEntity | null> {
    return this.one(em, 'reviewed_at = $2, reviewed_by = $3, review_comment = $4', 'break_glass AND reviewed_at IS NULL AND status = ANY ($5::text[])', [
      id,
      now,
      reviewerId,
      comment,
      CHECKOUT_UPDATES.review.in,
    ]);
  }

  /**
   * One approver's decision on a pending checkout (src/approvals checks it and records it in checkout_approvals);
   * resolves to the number of approvals that match the request now.
   */
  recordDecision(em: EntityManager, request: PendingRequest, actor: Actor, decision: 'approve' | 'deny', input: DecisionInput, now: Date): Promise<number> {
    return recordDecision(em, CHECKOUT_DECISIONS, request, actor, decision, input, now, 'CHECKOUT_NOT_PENDING');
  }

  // ---- the sweep: ending what is due ----------------------------------------------------------------------------

  /**
   * Locks (`FOR UPDATE SKIP LOCKED`) the oldest open checkout not in `skip` that is due to end, with why: its lease
   * or approval deadline passed (as of `now`), or its requester was disabled or is no operator any more.
   */
  async takeDue(em: EntityManager, now: Date, skip: readonly string[]): Promise<{ checkout: CheckoutEntity; reason: EndReason } | null> {
    const [row]: Array<CheckoutEntity & { requesterDisabled: boolean; requesterNoOperator: boolean }> = await em.query(
      `SELECT ${CHECKOUT_COLUMNS}, ${userDisabledSql('c.requester_id')} AS "requesterDisabled",
              ${userLacksRoleSql('c.requester_id', 'operator')} AS "requesterNoOperator"
         FROM checkouts c
        WHERE ((c.status = 'active' AND c.expires_at <= $1) OR (c.status = 'pending_approval' AND c.approval_deadline <= $1)
               OR (c.status IN ('active', 'pending_approval') AND ${userLacksRoleSql('c.requester_id', 'operator')}))
          AND NOT (c.id = ANY ($2::uuid[]))
        ORDER BY c.seq LIMIT 1 FOR UPDATE OF c SKIP LOCKED`,
      [now, skip],
    );
    if (!row) return null;
    const { requesterDisabled, requesterNoOperator, ...checkout } = row;
    const reason: EndReason = requesterDisabled
      ? 'requester_disabled'
      : requesterNoOperator
        ? 'requester_role_removed'
        : checkout.status === 'active'
          ? 'expired'
          : 'approval_timeout';
    return { checkout, reason };
  }

  /**
   * Locks (`FOR UPDATE SKIP LOCKED`: two sweeps never take the same one) up to `limit` active checkouts whose lease
   * ends within `leadSeconds` after `now`, soonest first, leaving out those `remindedSql` (the notifications owner's
   * fragment on `c.id`) says were reminded already.
   */
  lockExpiringSoon(em: EntityManager, o: ExpiringSoonQuery): Promise<CheckoutEntity[]> {
    return em.query(
      `SELECT ${CHECKOUT_COLUMNS} FROM checkouts c
        WHERE c.status = 'active' AND c.expires_at > $1 AND c.expires_at <= $1::timestamptz + make_interval(secs => $2) AND NOT ${o.remindedSql}
        ORDER BY c.expires_at LIMIT $3 FOR UPDATE OF c SKIP LOCKED`,
      [o.now, o.leadSeconds, o.limit],
    );
  }

  // ---- the cleanup sub-state (ending sessions on the target) ----------------------------------------------------

  /**
   * Claims for this instance up to `limit` checkouts (not in `skip`) whose cleanup is owed and unclaimed (its claimant died, the
   * target was down, the rotation had not settled) and whose account satisfies `accountReadySql` (a fragment of the
   * accounts owner on `c.account_id`: its post-check-in rotation settled).
   */
  async claimOwedCleanup(
    q: Queryable,
    o: { limit: number; seconds: number; accountReadySql: string; skip?: readonly string[] },
  ): Promise<Array<{ id: string; accountId: string }>> {
    return this.work.claimBatch(q, {
      table: 'checkouts c',
      ...CLEANUP_CLAIM,
      where: `c.cleanup = 'pending' AND c.cleanup_claimed_until < now() AND NOT (c.id = ANY ($1::uuid[])) AND ${o.accountReadySql}`,
      params: [o.skip ?? []],
      orderBy: 'c.cleanup_claimed_until',
      limit: o.limit,
      seconds: o.seconds,
      returning: 'id, account_id AS "accountId"',
    });
  }

  /** Extends this instance's cleanup claim (right before touching the target); false when it lapsed or moved on. */
  renewCleanup(q: Queryable, id: string, seconds: number): Promise<boolean> {
    return this.work.renew(q, { table: 'checkouts', ...CLEANUP_CLAIM, id, where: "cleanup = 'pending'", seconds });
  }

  /**
   * Locks the owed cleanup if `claimant` still holds it: its attempts so far and whether the account is settled
   * (`accountReadySql`, a fragment of the accounts owner on `c.account_id`). Null when another instance took over.
   */
  async lockCleanup(em: EntityManager, id: string, claimant: string, accountReadySql: string): Promise<{ attempts: number; settled: boolean } | null> {
    const [row]: Array<{ attempts: number; settled: boolean }> = await em.query(
      `SELECT c.cleanup_attempts AS attempts, ${accountReadySql} AS settled
         FROM checkouts c WHERE c.id = $1 AND c.cleanup = 'pending' AND c.cleanup_claimed_by = $2 FOR UPDATE OF c`,
      [id, claimant],
    );
    return row ?? null;
  }

  /**
   * The sessions were ended, in one statement (locks the row like `lockCleanup`): finish (pending → done) when the
   * account is settled (`accountReadySql`), else defer (stays pending, the claim lapsing now: the sweep ends them again
   * once the rotation has succeeded). Whether it was settled, or null when `claimant` no longer holds the claim.
   */
  async settleEndedCleanup(em: EntityManager, id: string, claimant: string, accountReadySql: string): Promise<{ settled: boolean } | null> {
    const [rows]: [Array<{ settled: boolean }>, number] = await em.query(
      `UPDATE checkouts c SET
          cleanup = CASE WHEN ${accountReadySql} THEN 'done' ELSE c.cleanup END,
          cleanup_claimed_until = CASE WHEN ${accountReadySql} THEN NULL ELSE now() END,
          version = c.version + 1
        WHERE c.id = $1 AND c.cleanup = 'pending' AND c.cleanup_claimed_by = $2
        RETURNING c.cleanup = 'done' AS settled`,
      [id, claimant],
    );
    return rows[0] ?? null;
  }

  /** finish: pending → done (sessions ended after the account's rotation settled). */
  async finishCleanup(em: EntityManager, id: string, claimant: string): Promise<boolean> {
    return (await this.settleEndedCleanup(em, id, claimant, 'true')) !== null;
  }

  /** defer: stays pending, the claim lapsing now (sessions ended, the rotation not settled: the sweep ends them again). */
  async deferCleanup(em: EntityManager, id: string, claimant: string): Promise<boolean> {
    return (await this.settleEndedCleanup(em, id, claimant, 'false')) !== null;
  }

  /** retry (pending, claimed again after `backoffSeconds`) or, with `giveUp`, give_up: pending → failed. */
  async failCleanup(em: EntityManager, id: string, claimant: string, o: { attempts: number; giveUp: boolean; backoffSeconds: number }): Promise<boolean> {
    return (
      (await this.one(
        em,
        'cleanup = $3, cleanup_attempts = $4, cleanup_claimed_until = now() + make_interval(secs => $5)',
        "cleanup = 'pending' AND cleanup_claimed_by = $2",
        [id, claimant, o.giveUp ? 'failed' : 'pending', o.attempts, o.backoffSeconds],
      )) !== null
    );
  }

  /** One transition statement: `set` where `id = $1 AND <where>`, version bumped; the row after, or null. */
  private async one(em: EntityManager, set: string, where: string, params: unknown[]): Promise<CheckoutEntity | null> {
    const [rows]: [CheckoutEntity[], number] = await em.query(
      `UPDATE checkouts SET ${set}, version = version + 1 WHERE id = $1 AND ${where} RETURNING ${CHECKOUT_COLUMNS}`,
      params,
    );
    return rows[0] ?? null;
  }
}

/**
 * A fragment for other owners' statements (the accounts owner's take-for-checkout): true when no checkout of the
 * account whose id is in `accountIdColumn` still owes its session cleanup.
 */
export function noCleanupOwedSql(accountIdColumn: string): string {
  return `NOT EXISTS (SELECT 1 FROM checkouts c_owed WHERE c_owed.account_id = ${sqlColumn(accountIdColumn, { orParameter: true })} AND c_owed.cleanup = 'pending')`;
}

/**
 * A fragment for the SSH gateway's statements: why a gateway session of the checkout whose id is in `idColumn` must
 * end as of `nowParam` (a placeholder of the caller's) — checked_in, revoked or expired — or NULL while it is active
 * and its lease runs.
 */
export function checkoutSessionEndSql(idColumn: string, nowParam: string): string {
  const now = `${sqlColumn(nowParam, { orParameter: true })}::timestamptz`;
  // a checkout that is gone (its account was deleted) ends the session as revoked
  return `(SELECT CASE WHEN c_gw.id IS NULL THEN 'revoked' WHEN c_gw.status = 'active' AND c_gw.expires_at > ${now} THEN NULL
                       WHEN c_gw.status = 'returned' THEN 'checked_in' WHEN c_gw.status = 'revoked' THEN 'revoked' ELSE 'expired' END
             FROM (SELECT 1) c_one LEFT JOIN checkouts c_gw ON c_gw.id = ${sqlColumn(idColumn)})`;
}

/** The `vault_checkouts` gauge's states. */
export type CheckoutWatchCounts = Record<(typeof WATCH_STATES)[number], number>;

/** What a new checkout is made of. */
export interface NewCheckout {
  id: string;
  accountId: string;
  requesterId: string;
  status: Extract<CheckoutStatus, 'pending_approval' | 'active'>;
  justification: string;
  ttlSeconds: number;
  breakGlass: boolean;
  approvalsRequired: number;
  rotateAfterCheckin: boolean;
  requestedAt: Date;
  approvalDeadline: Date | null;
  activatedAt: Date | null;
  expiresAt: Date | null;
}

/** Who ended a checkout and what is owed after it. */
export interface CheckoutEnd {
  endedAt: Date;
  /** Actor id, or 'system'. */
  endedBy: string;
  /** The post-check-in rotation written ahead, if any. */
  rotationId: string | null;
  /** This instance: it does the cleanup after commit, or the sweep takes over when the claim lapses. */
  claimedBy: string;
  claimSeconds: number;
}

/** Every checkouts column under its entity name: raw queries on the hot paths return CheckoutEntity-shaped rows. */
export const CHECKOUT_COLUMNS = `id, seq::text AS seq, account_id AS "accountId", requester_id AS "requesterId", status, justification,
  ttl_seconds AS "ttlSeconds", break_glass AS "breakGlass", approvals_required AS "approvalsRequired",
  rotate_after_checkin AS "rotateAfterCheckin", requested_at AS "requestedAt", approval_deadline AS "approvalDeadline",
  activated_at AS "activatedAt", expires_at AS "expiresAt", ended_at AS "endedAt", ended_by AS "endedBy", end_reason AS "endReason",
  rotation_id AS "rotationId", cleanup, cleanup_claimed_by AS "cleanupClaimedBy", cleanup_attempts AS "cleanupAttempts",
  reviewed_at AS "reviewedAt", reviewed_by AS "reviewedBy", review_comment AS "reviewComment"`;

export function seesAll(actor: Actor): boolean {
  return actor.roles.some((r) => (SEES_ALL as readonly string[]).includes(r));
}

export function canSee(actor: Actor, c: CheckoutEntity): boolean {
  return c.requesterId === actor.id || seesAll(actor);
}

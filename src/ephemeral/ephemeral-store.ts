import { Injectable, OnModuleInit } from '@nestjs/common';
import { DataSource, EntityManager, In } from 'typeorm';
import type { DecisionTable } from '../approvals/approvals';
import type { ExpiringSoonQuery } from '../approvals/notices';
import { Page } from '../common/pagination';
import type { ClaimedWork, Queryable } from '../database/claimed-work';
import { findByIdOrThrow, keysetPage } from '../database/queries';
import { userLacksRoleSql } from '../identity/user-standing';
import { sqlColumn } from '../database/sql-names';
import { MetricsService, PENDING_APPROVALS_GAUGE } from '../metrics/metrics.service';
import { TargetsService } from '../targets/targets.service';
import type { EphemeralPolicy } from './ephemeral-policy';
import { EphemeralListQuery } from './ephemeral.dto';
import { EphemeralAccountEntity, EphemeralApprovalEntity, EphemeralEndReason, EphemeralStatus } from './ephemeral.entity';
import { EPHEMERAL_TRANSITIONS, FINAL, fromSql, ON_TARGET, statusInSql } from './ephemeral-states';

/** Where the shared approval mechanics (src/approvals) keep a one-time account's decisions. */
export const EPHEMERAL_DECISIONS: DecisionTable = { table: 'ephemeral_approvals', requestColumn: 'ephemeral_id' };

/** What the claim writes with its intent. */
export interface ClaimIntent {
  username: string;
  claimedAt: Date;
  expiresAt: Date;
  claimant: string;
  claimSeconds: number;
}

/** Who a one-time account is for and from, and where (what its messages name). */
export type EphemeralParties = Pick<EphemeralAccountEntity, 'id' | 'targetId' | 'requesterId' | 'vendorId' | 'justification'>;

/** A row the reaper took for removal, and why it is removed (null: a removal retried, its reason is kept). */
export interface TakenForRemoval extends EphemeralParties {
  username: string | null;
  reason: EphemeralEndReason | null;
}

/** A removal this instance holds, as its outcome is recorded. */
export interface HeldRemoval extends Omit<EphemeralParties, 'id'> {
  attempts: number;
  endReason: EphemeralEndReason | null;
  username: string | null;
}

/** A request that lapsed (the reaper). */
export type LapsedRequest = EphemeralParties & Pick<EphemeralAccountEntity, 'requestDeadline'>;

/** The columns of EphemeralParties, as the store's statements return them (`alias`: the row's alias). */
const partiesOf = (alias: string) =>
  `${alias}.target_id AS "targetId", ${alias}.requester_id AS "requesterId", ${alias}.vendor_id AS "vendorId", ${alias}.justification`;

/**
 * Every statement on `ephemeral_accounts`, `ephemeral_policies` and `ephemeral_approvals` (the decisions through the
 * shared approval mechanics, with EPHEMERAL_DECISIONS). The status changes are the named transitions of
 * EPHEMERAL_TRANSITIONS: each checks its precondition in its WHERE (`fromSql`, plus the claim where it matters),
 * bumps `version`, and answers whether it happened. Callers run them in their own unit of work.
 */
@Injectable()
export class EphemeralStore implements OnModuleInit {
  constructor(
    private readonly dataSource: DataSource,
    private readonly metrics: MetricsService,
    private readonly targets: TargetsService,
  ) {}

  /**
   * The targets module asks before it deletes or moves a target: a one-time account that exists, may exist or may
   * still be created there must be removed by the vault first (moved, its removal would go elsewhere). The one-time
   * accounts gauge is read here, by the table's owner (the joint vault_pending_approvals reads countPendingApproval).
   */
  onModuleInit(): void {
    this.targets.registerUsage({
      order: 2,
      count: (em, targetId) => this.countOpenOnTarget(em, targetId),
      deleteRefusal: (n) => `target has ${n} one-time account(s) not ended yet; revoke them first`,
      moveRefusal: 'the target has one-time accounts that are not ended yet; revoke them before moving it',
    });
    this.metrics.stateGauge({
      name: 'vault_ephemeral_accounts',
      help: 'One-time accounts that exist or may exist on targets, by status (needs_attention: removal kept failing)',
      label: 'status',
      values: ON_TARGET,
      read: async () => ({ ...(await this.countOnTargetsByStatus(this.dataSource)) }),
    });
    this.metrics.stateGauge({ ...PENDING_APPROVALS_GAUGE, source: 'ephemeral', read: async () => ({ ephemeral: await this.countPendingApproval(this.dataSource) }) });
  }

  // ---- reads --------------------------------------------------------------------------------------------------

  /** One row (optionally `FOR UPDATE`), or 404 NOT_FOUND. */
  find(em: EntityManager, id: string, lock = false): Promise<EphemeralAccountEntity> {
    return findByIdOrThrow(em, EphemeralAccountEntity, id, 'ephemeral account', lock);
  }

  /** A keyset page in request order; `visibleTo` limits it to what that user asked for or is the vendor of. */
  page(em: EntityManager, q: EphemeralListQuery, visibleTo: string | null): Promise<Page<EphemeralAccountEntity>> {
    return keysetPage(em, EphemeralAccountEntity, { column: 'seq', kind: 'int64' }, q, (r) => r, (qb) => {
      if (visibleTo !== null) qb.andWhere('(r.requester_id = :me OR r.vendor_id = :me)', { me: visibleTo });
      if (q.status) qb.andWhere('r.status = :status', { status: q.status });
      if (q.targetId) qb.andWhere('r.target_id = :targetId', { targetId: q.targetId });
      if (q.vendorId) qb.andWhere('r.vendor_id = :vendorId', { vendorId: q.vendorId });
    });
  }

  /** The approvers' decisions on these requests, oldest first. */
  approvalsOf(em: EntityManager, ids: string[]): Promise<EphemeralApprovalEntity[]> {
    if (ids.length === 0) return Promise.resolve([]);
    return em.getRepository(EphemeralApprovalEntity).find({ where: { ephemeralId: In(ids) }, order: { decidedAt: 'ASC' } });
  }

  /** A new request (pending_approval or approved, by its policy). */
  async insert(em: EntityManager, row: Partial<EphemeralAccountEntity> & { id: string }): Promise<EphemeralAccountEntity> {
    await em.getRepository(EphemeralAccountEntity).insert(row);
    return em.getRepository(EphemeralAccountEntity).findOneByOrFail({ id: row.id });
  }

  // ---- policies -----------------------------------------------------------------------------------------------

  /** The policy an admin stored for the target, or null (the default applies). */
  async storedPolicy(em: Queryable, targetId: string): Promise<Partial<EphemeralPolicy> | null> {
    const [row]: Array<{ policy: EphemeralPolicy }> = await answer(em, 'SELECT policy FROM ephemeral_policies WHERE target_id = $1', [targetId]);
    return row?.policy ?? null;
  }

  async savePolicy(em: Queryable, targetId: string, policy: EphemeralPolicy): Promise<void> {
    await answer(
      em,
      `INSERT INTO ephemeral_policies (target_id, policy) VALUES ($1, $2)
       ON CONFLICT (target_id) DO UPDATE SET policy = EXCLUDED.policy, updated_at = now()`,
      [targetId, JSON.stringify(policy)],
    );
  }

  // ---- counts for other modules ----------------------------------------------------------------------------------

  /** One-time accounts of a target that exist, may exist, or may still be created on it (not denied/revoked/expired). */
  async countOpenOnTarget(em: Queryable, targetId: string): Promise<number> {
    const [{ n }]: Array<{ n: number }> = await answer(
      em,
      `SELECT count(*)::int AS n FROM ephemeral_accounts WHERE target_id = $1 AND NOT ${statusInSql(FINAL)}`,
      [targetId],
    );
    return n;
  }

  /** The usernames of the one-time accounts that exist or may exist on a target (live sessions: the accounts the vault manages there). */
  async usernamesOnTarget(q: Queryable, targetId: string): Promise<string[]> {
    const rows: Array<{ username: string }> = await answer(
      q,
      `SELECT username FROM ephemeral_accounts WHERE target_id = $1 AND username IS NOT NULL AND ${statusInSql(ON_TARGET)} ORDER BY username`,
      [targetId],
    );
    return rows.map((r) => r.username);
  }

  /** For the metrics gauge: how many exist or may exist on targets, by status (every such status present, 0 when none). */
  async countOnTargetsByStatus(q: Queryable): Promise<Record<(typeof ON_TARGET)[number], number>> {
    const rows: Array<{ status: EphemeralStatus; n: number }> = await answer(
      q,
      `SELECT status, count(*)::int AS n FROM ephemeral_accounts WHERE ${statusInSql(ON_TARGET)} GROUP BY status`,
    );
    return Object.fromEntries(ON_TARGET.map((s) => [s, rows.find((r) => r.status === s)?.n ?? 0])) as Record<EphemeralStatus, number>;
  }

  /** For the metrics gauge: requests waiting for approvers. */
  async countPendingApproval(q: Queryable): Promise<number> {
    const [{ n }]: Array<{ n: number }> = await answer(q, "SELECT count(*)::int AS n FROM ephemeral_accounts WHERE status = 'pending_approval'");
    return n;
  }

  /**
   * Locks (`FOR UPDATE SKIP LOCKED`: two sweeps never take the same one) up to `limit` active one-time accounts that
   * expire within `leadSeconds` after `now`, soonest first, leaving out those `remindedSql` (the notifications
   * owner's fragment on `e.id`) says were reminded already.
   */
  lockExpiringSoon(em: Queryable, o: ExpiringSoonQuery): Promise<Array<EphemeralParties & { username: string; expiresAt: Date }>> {
    return answer(
      em,
      `SELECT e.id, ${partiesOf('e')}, e.username, e.expires_at AS "expiresAt" FROM ephemeral_accounts e
        WHERE e.status = 'active' AND e.expires_at > $1 AND e.expires_at <= $1::timestamptz + make_interval(secs => $2) AND NOT ${o.remindedSql}
        ORDER BY e.expires_at LIMIT $3 FOR UPDATE OF e SKIP LOCKED`,
      [o.now, o.leadSeconds, o.limit],
    );
  }

  // ---- transitions (EPHEMERAL_TRANSITIONS) ---------------------------------------------------------------------

  approve(em: Queryable, id: string): Promise<boolean> {
    return this.changed(em, `UPDATE ephemeral_accounts SET status = 'approved', version = version + 1 WHERE id = $1 AND ${fromSql('approve')}`, [id]);
  }

  deny(em: Queryable, id: string, by: string, now: Date): Promise<boolean> {
    return this.endRequest(em, id, 'deny', by, now);
  }

  /** Back to waiting for approvers, now needing `approvalsRequired`. */
  requireReapproval(em: Queryable, id: string, approvalsRequired: number): Promise<boolean> {
    return this.changed(
      em,
      `UPDATE ephemeral_accounts SET status = 'pending_approval', approvals_required = $2, version = version + 1 WHERE id = $1 AND ${fromSql('requireReapproval')}`,
      [id, approvalsRequired],
    );
  }

  /** Requests past their deadline end as expired (request_timeout), at most `limit`, skipping rows others hold. */
  async lapseRequests(em: Queryable, now: Date, limit: number): Promise<LapsedRequest[]> {
    const [rows]: [LapsedRequest[], number] = await answer(
      em,
      `UPDATE ephemeral_accounts SET status = 'expired', end_reason = 'request_timeout', ended_at = $1, ended_by = 'system', version = version + 1
        WHERE id IN (SELECT id FROM ephemeral_accounts WHERE ${fromSql('lapse')} AND request_deadline <= $1
                      ORDER BY request_deadline LIMIT $2 FOR UPDATE SKIP LOCKED)
          AND ${fromSql('lapse')}
        RETURNING id, ${partiesOf('ephemeral_accounts')}, request_deadline AS "requestDeadline"`,
      [now, limit],
    );
    return rows;
  }

  /** Revoked before the claim: nothing exists on the target. */
  withdraw(em: Queryable, id: string, by: string, now: Date): Promise<boolean> {
    return this.endRequest(em, id, 'withdraw', by, now);
  }

  /** The intent: username, expiry and the claimant's claim, committed before the target is touched. Once per request. */
  claim(em: Queryable, id: string, c: ClaimIntent): Promise<boolean> {
    return this.changed(
      em,
      `UPDATE ephemeral_accounts SET status = 'creating', username = $2, claimed_at = $3, expires_at = $4, claimed_by = $5,
              claimed_until = now() + make_interval(secs => $6), version = version + 1
        WHERE id = $1 AND ${fromSql('claim')} AND claimed_at IS NULL`,
      [id, c.username, c.claimedAt, c.expiresAt, c.claimant, c.claimSeconds],
    );
  }

  /**
   * Created on the target, and `claimant` still holds the row. `secret`: its password, encrypted (ephemeralSecretRef),
   * kept while it is active so the SSH gateway can log in with it; every transition that ends it clears it.
   */
  activate(em: Queryable, id: string, claimant: string, secret: Buffer): Promise<boolean> {
    return this.changed(
      em,
      `UPDATE ephemeral_accounts SET status = 'active', claimed_by = NULL, claimed_until = NULL, secret = $3, version = version + 1
        WHERE id = $1 AND ${fromSql('activate')} AND claimed_by = $2`,
      [id, claimant, secret],
    );
  }

  /** What the SSH gateway needs of a one-time account: who holds it, where, and its password (encrypted) while active. */
  async gatewayGrant(em: Queryable, id: string): Promise<EphemeralGatewayGrant | null> {
    const [row]: EphemeralGatewayGrant[] = await answer(
      em,
      `SELECT id, status, vendor_id AS "vendorId", target_id AS "targetId", username, expires_at AS "expiresAt", secret
         FROM ephemeral_accounts WHERE id = $1`,
      [id],
    );
    return row ?? null;
  }

  /**
   * The creation failed or its outcome is unknown: to the reaper, which removes what may exist once the claim (kept
   * until it lapses, never shortened) has run out — after any late creation.
   */
  failCreate(em: Queryable, id: string, claimant: string, errorCode: string): Promise<boolean> {
    return this.changed(
      em,
      `UPDATE ephemeral_accounts SET status = 'revoking', end_reason = 'create_failed', ended_by = 'system', last_error = $3, secret = NULL,
              claimed_by = NULL, claimed_until = GREATEST(claimed_until, now()), version = version + 1
        WHERE id = $1 AND ${fromSql('failCreate')} AND claimed_by = $2`,
      [id, claimant, errorCode],
    );
  }

  /**
   * A person revoked it after the claim. `claimant` takes the removal over now (active, needs_attention); null leaves
   * a creating row's claim to lapse first (its claimant's commit fails and it is removed then).
   */
  revoke(em: Queryable, id: string, o: { by: string; claimant: string | null; claimSeconds: number }): Promise<boolean> {
    return this.changed(
      em,
      `UPDATE ephemeral_accounts SET status = 'revoking', end_reason = 'revoked', ended_by = $2, attempts = 0, secret = NULL, version = version + 1,
              claimed_by = $3,
              claimed_until = CASE WHEN $3::text IS NULL THEN claimed_until ELSE now() + make_interval(secs => $4) END
        WHERE id = $1 AND ${fromSql('revoke')}`,
      [id, o.by, o.claimant, o.claimSeconds],
    );
  }

  /**
   * The reaper takes one row to remove and claims it for `claimant`, in one statement (`FOR UPDATE SKIP LOCKED`):
   * an active account whose time is up (expired) or whose vendor was disabled or is no vendor any more (revoked), an intent whose claimant died (creating: reaped), a removal to retry (revoking, needs_attention), the
   * last three once their claim has lapsed. `skip`: ids not to take again in this drain.
   */
  async takeForRemoval(
    em: Queryable,
    o: { now: Date; claimant: string; claimSeconds: number; skip?: readonly string[] },
  ): Promise<TakenForRemoval | null> {
    const [rows]: [TakenForRemoval[], number] = await answer(
      em,
      `WITH due AS (
         SELECT e.id, e.status AS was, e.expires_at FROM ephemeral_accounts e
          WHERE ((e.status = 'active' AND (e.expires_at <= $1 OR ${userLacksRoleSql('e.vendor_id', 'vendor')}))
             OR (e.status IN ('creating', 'revoking', 'needs_attention') AND (e.claimed_until IS NULL OR e.claimed_until < now())))
            AND NOT (e.id = ANY ($4::uuid[]))
          ORDER BY e.seq LIMIT 1 FOR UPDATE OF e SKIP LOCKED)
       UPDATE ephemeral_accounts a
          SET status = 'revoking', secret = NULL,
              end_reason = COALESCE(CASE due.was WHEN 'active' THEN CASE WHEN due.expires_at <= $1 THEN 'expired' ELSE 'revoked' END
                                                 WHEN 'creating' THEN 'reaped' END, a.end_reason),
              ended_by = COALESCE(a.ended_by, 'system'),
              claimed_by = $2, claimed_until = now() + make_interval(secs => $3), version = a.version + 1
         FROM due
        WHERE a.id = due.id AND ${fromSql('takeForRemoval', 'a.status')}
        RETURNING a.id, a.username, ${partiesOf('a')},
                  CASE due.was WHEN 'active' THEN a.end_reason WHEN 'creating' THEN 'reaped' END AS reason`,
      [o.now, o.claimant, o.claimSeconds, [...(o.skip ?? [])]],
    );
    return rows[0] ?? null;
  }

  /** The removal `claimant` holds (locked for recording its outcome), or null when another instance took it over. */
  async heldRemoval(em: Queryable, id: string, claimant: string): Promise<HeldRemoval | null> {
    const [row]: HeldRemoval[] = await answer(
      em,
      `SELECT attempts, end_reason AS "endReason", username, ${partiesOf('e')} FROM ephemeral_accounts e
        WHERE id = $1 AND status = 'revoking' AND claimed_by = $2 FOR UPDATE`,
      [id, claimant],
    );
    return row ?? null;
  }

  /** Gone from the target: expired when its time was up, revoked otherwise. Answers the final status (null: not held). */
  async finishRemoval(em: Queryable, id: string, claimant: string, now: Date): Promise<'revoked' | 'expired' | null> {
    const [rows]: [Array<{ status: 'revoked' | 'expired' }>, number] = await answer(
      em,
      `UPDATE ephemeral_accounts SET status = CASE WHEN end_reason = 'expired' THEN 'expired' ELSE 'revoked' END, ended_at = $3, secret = NULL,
              claimed_by = NULL, claimed_until = NULL, last_error = NULL, version = version + 1
        WHERE id = $1 AND ${fromSql('finishRemoval')} AND claimed_by = $2
        RETURNING status`,
      [id, claimant, now],
    );
    return rows[0]?.status ?? null;
  }

  /** A failed attempt: retried after `retrySeconds`, or needs_attention (`attention`). */
  failRemoval(em: Queryable, id: string, claimant: string, o: { attempts: number; attention: boolean; errorCode: string; retrySeconds: number }): Promise<boolean> {
    return this.changed(
      em,
      `UPDATE ephemeral_accounts SET status = $3, attempts = $4, last_error = $5, claimed_by = NULL,
              claimed_until = now() + make_interval(secs => $6), version = version + 1
        WHERE id = $1 AND ${fromSql('failRemoval')} AND claimed_by = $2`,
      [id, claimant, o.attention ? 'needs_attention' : 'revoking', o.attempts, o.errorCode, o.retrySeconds],
    );
  }

  /** Extends this instance's claim on a `creating` row, only while it holds it and it has not lapsed (ClaimedWork.renew). */
  renewCreating(work: ClaimedWork, q: Queryable, id: string, claimSeconds: number): Promise<boolean> {
    return work.renew(q, { table: 'ephemeral_accounts', id, where: fromSql('activate'), seconds: claimSeconds });
  }

  /** Created after its claimant lost the row: back to the reaper, due now, whatever the row says. */
  reopenForRemoval(em: Queryable, id: string): Promise<boolean> {
    return this.changed(
      em,
      `UPDATE ephemeral_accounts SET status = 'revoking', claimed_by = NULL, claimed_until = now(), secret = NULL, version = version + 1
        WHERE id = $1 AND ${fromSql('reopenForRemoval')}`,
      [id],
    );
  }

  /** A person ends a request before its claim (denied, revoked): its end reason is the status it ends in. */
  private endRequest(em: Queryable, id: string, transition: 'deny' | 'withdraw', by: string, now: Date): Promise<boolean> {
    return this.changed(
      em,
      `UPDATE ephemeral_accounts SET status = $4, end_reason = $4, ended_at = $2, ended_by = $3, version = version + 1
        WHERE id = $1 AND ${fromSql(transition)}`,
      [id, now, by, EPHEMERAL_TRANSITIONS[transition].to[0]],
    );
  }

  /** Runs an UPDATE; true when it changed the row. */
  private async changed(em: Queryable, sql: string, params: unknown[]): Promise<boolean> {
    const [, n]: [unknown, number] = await answer(em, sql, params);
    return n === 1;
  }
}

/** A one-time account as the SSH gateway sees it (EphemeralStore.gatewayGrant). */
export interface EphemeralGatewayGrant {
  id: string;
  status: EphemeralStatus;
  vendorId: string;
  targetId: string;
  username: string | null;
  expiresAt: Date | null;
  /** Its password, encrypted (ephemeralSecretRef); null once it ended (or claimed before the vault kept it). */
  secret: Buffer | null;
}

/**
 * A fragment for the SSH gateway's statements: why a gateway session of the one-time account whose id is in
 * `idColumn` must end as of `nowParam` (a placeholder of the caller's), or NULL while it is active and not past its time.
 */
export function ephemeralSessionEndSql(idColumn: string, nowParam: string): string {
  const id = sqlColumn(idColumn);
  const now = `${sqlColumn(nowParam, { orParameter: true })}::timestamptz`;
  return `(SELECT CASE WHEN e_gw.id IS NULL THEN 'revoked' WHEN e_gw.status = 'active' AND e_gw.expires_at > ${now} THEN NULL
                       WHEN e_gw.end_reason = 'expired' OR e_gw.expires_at <= ${now} THEN 'expired' ELSE 'revoked' END
             FROM (SELECT 1) e_one LEFT JOIN ephemeral_accounts e_gw ON e_gw.id = ${id})`;
}

/** Runs a statement; the caller states the shape of the answer (TypeORM: rows, or [rows, count] for UPDATE/DELETE). */
async function answer<T>(q: Queryable, sql: string, params: unknown[] = []): Promise<T> {
  return (await q.query(sql, params)) as T;
}

import { createHmac } from 'node:crypto';
import canonicalize from 'canonicalize';
import { EntityManager } from 'typeorm';
import { Actor } from '../common/actor';
import { DomainException, Errors } from '../common/errors';
import { userHoldsRoleSql } from '../identity/user-standing';
import { sqlIdentifier } from '../database/sql-names';

/**
 * Approval mechanics shared by checkouts and one-time accounts: a request is approved by `approvalsRequired`
 * distinct approvers, never its requester, each once; an approval is bound to a digest of the exact request it was
 * given for and counts only while the request still has that digest; any one denial ends the request.
 *
 * The decision tables belong to the request's owner (checkout_approvals to checkouts/, ephemeral_approvals to
 * ephemeral/): the owner passes its table here, and these functions run the two statements every decision table
 * shares on it. Whether an approver still is one is asked of identity (userHoldsRoleSql).
 */

/**
 * Where a kind of request keeps its decisions: a table of the owner's with the columns (<requestColumn>, approver_id,
 * decision, request_digest, comment, decided_at) and the primary key (<requestColumn>, approver_id).
 */
export interface DecisionTable {
  table: string;
  /** The column holding the request's id. */
  requestColumn: string;
}

/** What the shared checks need to know about the request (locked by the caller). */
export interface PendingRequest {
  id: string;
  requesterId: string;
  status: string;
  deadline: Date;
  digest: string;
}

export interface DecisionInput {
  comment?: string;
  /** The digest the approver saw; a mismatch is 409 REQUEST_CHANGED. */
  requestDigest?: string;
}

/**
 * The HMAC (under the audit key) of a request's fields, in order, in canonical JSON (RFC 8785: jsonb reorders object
 * keys, the digest must not change with it): someone who can write the database but has no key cannot make an old
 * approval fit a changed request.
 */
export function requestDigest(auditKey: Uint8Array, kind: string, fields: unknown[]): string {
  return createHmac('sha256', auditKey).update(`pam-vault:${kind}:request:`).update(canonicalize(fields) as string).digest('hex');
}

export const selfApproval = () => new DomainException('SELF_APPROVAL', 'a requester never approves, denies or reviews their own request');

/**
 * Checks and records one approver's decision on a pending request; resolves to the number of approvals that match
 * the request as it is now (after this one). `notPendingCode` is the 409 code of the request kind.
 */
export async function recordDecision(
  em: EntityManager,
  where: DecisionTable,
  request: PendingRequest,
  actor: Actor,
  decision: 'approve' | 'deny',
  input: DecisionInput,
  now: Date,
  notPendingCode: 'CHECKOUT_NOT_PENDING' | 'REQUEST_NOT_PENDING',
): Promise<number> {
  if (request.requesterId === actor.id) throw selfApproval();
  if (request.status !== 'pending_approval') throw Errors.conflict(notPendingCode, `the request is ${request.status}`);
  if (request.deadline <= now) throw Errors.gone('EXPIRED', 'the request was not approved in time');
  if (input.requestDigest !== undefined && input.requestDigest !== request.digest) {
    throw Errors.conflict('REQUEST_CHANGED', 'the request is not the one you reviewed; read it again');
  }
  // the primary key (request, approver) makes it one decision per approver even for racing requests
  // (TypeORM answers an INSERT with its RETURNING rows)
  const inserted: unknown[] = await em.query(
    `INSERT INTO ${ident(where.table)} (${ident(where.requestColumn)}, approver_id, decision, request_digest, comment, decided_at)
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING 1`,
    [request.id, actor.id, decision, request.digest, input.comment ?? null, now],
  );
  if (inserted.length !== 1) throw Errors.conflict('ALREADY_DECIDED', 'you already decided on this request');
  return countApprovals(em, where, request.id, request.digest);
}

/**
 * The approvals given for this exact request (its digest now), by approvers who still are: an approval by someone
 * who has since lost the approver role or been disabled no longer counts.
 */
export async function countApprovals(em: EntityManager, where: DecisionTable, requestId: string, digest: string): Promise<number> {
  const [{ n }]: Array<{ n: number }> = await em.query(
    `SELECT count(*)::int AS n FROM ${ident(where.table)} d
      WHERE d.${ident(where.requestColumn)} = $1 AND d.decision = 'approve' AND d.request_digest = $2
        AND ${userHoldsRoleSql('d.approver_id', 'approver')}`,
    [requestId, digest],
  );
  return n;
}

const ident = sqlIdentifier;

/** An approver's decision as the API shows it. */
export interface ApprovalView {
  approverId: string;
  decision: 'approve' | 'deny';
  comment: string | null;
  decidedAt: string;
  /** False when the request changed after this decision: it no longer counts. */
  matchesRequest: boolean;
}

export function mapApprovals(
  rows: Array<{ approverId: string; decision: 'approve' | 'deny'; comment: string | null; decidedAt: Date; requestDigest: string }>,
  currentDigest: string,
): ApprovalView[] {
  return rows.map((a) => ({ approverId: a.approverId, decision: a.decision, comment: a.comment, decidedAt: a.decidedAt.toISOString(), matchesRequest: a.requestDigest === currentDigest }));
}

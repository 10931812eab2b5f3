import { useQueryClient } from '@tanstack/react-query';
import { useId, useState } from 'react';
import { api, ok, withMfa } from '../../api/client';
import type { ApprovalView } from '../../api/views';
import { useMe } from '../../session';
import { Person } from '../../api/names';
import { Notice } from '../../ui/errors';
import { When } from '../../ui/format';
import { StepUpAction } from '../../ui/step-up';

/** Which kind of request a decision is about: its path under /v1. */
export type DecisionKind = 'checkouts' | 'ephemeral-accounts';

/** The request an approver decides on: its id, digest, requester, decisions so far and whether it still waits. */
interface Decidable {
  id: string;
  requestDigest: string;
  requesterId: string;
  approvals: ApprovalView[];
  status: string;
}

/**
 * Approve or deny a pending request, for an approver who may (not their own, not decided yet). The request digest the
 * approver saw goes with the decision, so a request that changed since (the vault answers 409 REQUEST_CHANGED) is never
 * approved blind. After deciding, the outcome stays on screen though the request no longer waits for this approver.
 */
export function DecisionPanel({ kind, request, onDecided }: { kind: DecisionKind; request: Decidable; onDecided?(outcome: string): void }) {
  const mayDecide = useMayDecide(request.requesterId, request.approvals);
  const [done, setDone] = useState('');
  const decided = (outcome: string) => {
    setDone(outcome);
    onDecided?.(outcome);
  };
  if (done) return <Notice>{done}.</Notice>;
  if (!mayDecide || request.status !== 'pending_approval') return null;
  return <DecisionForm kind={kind} id={request.id} requestDigest={request.requestDigest} onDecided={decided} />;
}

function DecisionForm({ kind, id, requestDigest, onDecided }: { kind: DecisionKind; id: string; requestDigest: string; onDecided(outcome: string): void }) {
  const [comment, setComment] = useState('');
  const queries = useQueryClient();
  const commentId = useId();

  const decide = (decision: 'approve' | 'deny') => async (code: string) => {
    const body = { requestDigest, ...(comment.trim() ? { comment: comment.trim() } : {}) };
    const at = decision === 'approve' ? `/v1/${kind}/{id}/approve` : `/v1/${kind}/{id}/deny`;
    ok(await api.POST(at as '/v1/checkouts/{id}/approve', withMfa(code, { params: { path: { id } }, body })));
    onDecided(decision === 'approve' ? 'Approved' : 'Denied');
    await queries.invalidateQueries();
  };

  return (
    <div className="stack decision">
      <p className="muted">
        Request digest <code title={requestDigest}>{requestDigest.slice(0, 16)}…</code> — your decision applies to this exact request.
      </p>
      <div className="field">
        <label htmlFor={commentId}>Comment (optional)</label>
        <textarea id={commentId} maxLength={1000} value={comment} onChange={(e) => setComment(e.target.value)} />
      </div>
      <div className="actions">
        <StepUpAction label="Approve" onConfirm={decide('approve')} />
        <StepUpAction label="Deny" danger onConfirm={decide('deny')} />
      </div>
    </div>
  );
}

/** Whether the signed-in approver may still decide: not their own request, and no decision of theirs that counts. */
function useMayDecide(requesterId: string, approvals: ApprovalView[]): boolean {
  const me = useMe();
  return me.has('approver') && requesterId !== me.id && !approvals.some((a) => a.approverId === me.id && a.matchesRequest);
}

/** The decisions so far. */
export function ApprovalsList({ approvals, required }: { approvals: ApprovalView[]; required: number }) {
  const counted = approvals.filter((a) => a.decision === 'approve' && a.matchesRequest).length;
  return (
    <div>
      <p>
        {required === 0 ? 'No approval needed.' : `${counted} of ${required} approval${required === 1 ? '' : 's'}.`}
      </p>
      {approvals.length > 0 && (
        <ul>
          {approvals.map((a) => (
            <li key={`${a.approverId}-${a.decidedAt}`}>
              <Person id={a.approverId} /> {a.decision === 'approve' ? 'approved' : 'denied'} <When at={a.decidedAt} />
              {!a.matchesRequest && <span className="badge muted">no longer counts: the request changed</span>}
              {a.comment && <q>{a.comment}</q>}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

import { useQueryClient } from '@tanstack/react-query';
import { useId, useState } from 'react';
import { api, mfa, ok } from '../../api/client';
import type { ApprovalView } from '../../api/views';
import { useMe } from '../../session';
import { Person } from '../../api/names';
import { Notice } from '../../ui/errors';
import { When } from '../../ui/format';
import { StepUpAction } from '../../ui/step-up';

/** Which kind of request a decision is about: its path under /v1. */
export type DecisionKind = 'checkouts' | 'ephemeral-accounts';

/**
 * Approve or deny a pending request. The request digest the approver saw goes with the decision, so a request that
 * changed since (the vault answers 409 REQUEST_CHANGED) is never approved blind.
 */
export function DecisionPanel({ kind, id, requestDigest, onDecided }: { kind: DecisionKind; id: string; requestDigest: string; onDecided?(): void }) {
  const [comment, setComment] = useState('');
  const [done, setDone] = useState('');
  const queries = useQueryClient();
  const commentId = useId();

  const decide = (decision: 'approve' | 'deny') => async (code: string) => {
    const body = { requestDigest, ...(comment.trim() ? { comment: comment.trim() } : {}) };
    const at = decision === 'approve' ? `/v1/${kind}/{id}/approve` : `/v1/${kind}/{id}/deny`;
    ok(await api.POST(at as '/v1/checkouts/{id}/approve', { params: { path: { id } }, body, ...mfa(code) }));
    setDone(decision === 'approve' ? 'Approved' : 'Denied');
    await queries.invalidateQueries();
    onDecided?.();
  };

  if (done) return <Notice>{done}.</Notice>;
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
export function useMayDecide(requesterId: string, approvals: ApprovalView[]): boolean {
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

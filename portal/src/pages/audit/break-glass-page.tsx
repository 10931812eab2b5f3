import { useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { Link } from 'react-router';
import { api, ok, withMfa } from '../../api/client';
import { MoreButton, usePagedList } from '../../api/lists';
import { AccountName, Person } from '../../api/names';
import type { CheckoutView } from '../../api/views';
import { useMe } from '../../session';
import { ErrorMessage, Notice } from '../../ui/errors';
import { duration, StatusBadge, When } from '../../ui/format';
import { Loading, Page } from '../../ui/page';
import { StepUpAction } from '../../ui/step-up';
import { optionsOf, TextArea } from '../admin/shared/fields';
import { Facts, SelectField } from '../../ui/fields';

const VIEWS: Array<{ value: 'true' | 'false'; label: string }> = [
  { value: 'false', label: 'Waiting for review' },
  { value: 'true', label: 'Reviewed' },
];

/** Who may review a break-glass checkout after the fact (POST /v1/checkouts/:id/review), never its requester. */
const REVIEWERS = ['approver', 'auditor'] as const;

/**
 * `/break-glass`: emergency checkouts that skipped approval, to be reviewed after the fact. An approver or auditor other
 * than the requester reviews an ended one with a comment and their code; admins read the queue.
 */
export function BreakGlassPage() {
  const me = useMe();
  const [reviewed, setReviewed] = useState<'true' | 'false' | ''>('false');
  const list = usePagedList<CheckoutView>('/v1/checkouts', { breakGlass: 'true', reviewed: reviewed || 'false' }, { live: true });
  // reviewed here: kept on screen with the review the vault answered, though the queue no longer lists them
  const [reviewedHere, setReviewedHere] = useState<CheckoutView[]>([]);
  const shown = [...list.items.filter((c) => !reviewedHere.some((r) => r.id === c.id)), ...reviewedHere];
  return (
    <Page title="Break-glass review">
      <div className="filters">
        <SelectField label="Show" value={reviewed} onChange={setReviewed} options={optionsOf(VIEWS)} />
      </div>
      {!me.has(...REVIEWERS) && <p className="hint">Reviewing needs the approver or auditor role; you can read the queue.</p>}
      <ErrorMessage error={list.error} />
      {list.isPending ? (
        <Loading what="Loading break-glass checkouts" />
      ) : shown.length === 0 ? (
        <p className="muted">{reviewed === 'true' ? 'No reviewed break-glass checkouts yet.' : 'Nothing waits for review.'}</p>
      ) : (
        <ul className="card-list">
          {shown.map((c) => (
            <li key={c.id}>
              <BreakGlassCard
                checkout={c}
                canReview={me.has(...REVIEWERS) && c.requesterId !== me.id}
                justReviewed={reviewedHere.some((r) => r.id === c.id)}
                onReviewed={(view) => setReviewedHere((all) => [...all, view])}
              />
            </li>
          ))}
        </ul>
      )}
      <MoreButton list={list} />
    </Page>
  );
}

function BreakGlassCard({ checkout: c, canReview, justReviewed, onReviewed }: { checkout: CheckoutView; canReview: boolean; justReviewed: boolean; onReviewed(view: CheckoutView): void }) {
  const queries = useQueryClient();
  const [comment, setComment] = useState('');
  const review = async (code: string) => {
    onReviewed(ok(await api.POST('/v1/checkouts/{id}/review', withMfa(code, { params: { path: { id: c.id } }, body: { comment } }))) as CheckoutView);
    await queries.invalidateQueries();
  };
  return (
    <article className="card stack" aria-label={`Break-glass checkout ${c.id}`}>
      <Facts
        rows={[
          ['Account', <AccountName id={c.accountId} />],
          ['Requested by', <Person id={c.requesterId} name={c.requesterName} />],
          ['Why', <span className="pre-line">{c.justification}</span>],
          ['Requested', <><When at={c.requestedAt} /> for {duration(c.ttlSeconds)}</>],
          ['Status', <><StatusBadge status={c.status} /> {c.endedAt && <>ended <When at={c.endedAt} /></>}</>],
          !!c.review && ['Review', <><Person id={c.review.reviewedBy} />, <When at={c.review.reviewedAt} />: <span className="pre-line">{c.review.comment}</span></>],
        ]}
      />
      <p className="actions">
        <Link to={`/checkouts/${c.id}`}>Checkout details</Link>
        <Link to={`/audit?subjectType=checkout&subjectId=${c.id}`}>Its audit events</Link>
      </p>
      {justReviewed && <Notice>Reviewed.</Notice>}
      {!c.review && canReview && (
        c.endedAt ? (
          <StepUpAction label="Review" confirmLabel="Record review" onConfirm={review}>
            <TextArea label="Review comment" value={comment} onChange={setComment} required hint="What you checked and what you found." />
          </StepUpAction>
        ) : (
          <p className="hint">It can be reviewed once it has ended.</p>
        )
      )}
    </article>
  );
}

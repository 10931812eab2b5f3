import { useQueryClient } from '@tanstack/react-query';
import { useEffect, useId, useState } from 'react';
import { useParams } from 'react-router';
import { AccountName, Person } from '../../api/names';
import type { CheckoutView, CredentialView } from '../../api/views';
import { useMe } from '../../session';
import { CredentialPanel, REVEAL_SECONDS } from '../../ui/credential';
import { ErrorMessage, Notice } from '../../ui/errors';
import { DurationSelect, Facts, useAction } from '../../ui/fields';
import { duration, Remaining, StatusBadge, When } from '../../ui/format';
import { ItemPage, Section } from '../../ui/page';
import { StepUpAction } from '../../ui/step-up';
import { ApprovalsList, DecisionPanel } from '../approvals/decision';
import { RequesterHistory } from '../approvals/history';
import { LiveSessions } from '../sessions-live/live-sessions';
import { Connect } from '../connect/connect';
import { useAccount } from '../../api/names';
import { checkoutCalls, credentialHandoff, useCheckout } from './checkout-api';

/** One checkout, live: its status and time left, the credential on demand, extend and check in; approvers decide here too. */
export function CheckoutPage() {
  const { id = '' } = useParams();
  return (
    <ItemPage title="Checkout" query={useCheckout(id)}>
      {(checkout) => <CheckoutDetail key={checkout.id} checkout={checkout} />}
    </ItemPage>
  );
}

function CheckoutDetail({ checkout: c }: { checkout: CheckoutView }) {
  const me = useMe();
  const mine = c.requesterId === me.id;
  // kept here: the actions that set it leave the page once the checkout has ended
  const [notice, setNotice] = useState('');
  return (
    <>
      <Notice>{notice}</Notice>
      <Section title="Status">
        <p className="status-line">
          <StatusBadge status={c.status} /> {c.breakGlass && <span className="badge bad">break-glass</span>}{' '}
          {c.status === 'active' && <Remaining until={c.expiresAt} />}
          {c.status === 'pending_approval' && <Remaining until={c.expiresAt} label="left to decide" />}
        </p>
        <Facts
          rows={[
            ['Account', <AccountName id={c.accountId} />],
            ['Requested by', <Person id={c.requesterId} name={c.requesterName} />],
            ['Why', <span className="prewrap">{c.justification}</span>],
            ['For', duration(c.ttlSeconds)],
            ['Requested', <When at={c.requestedAt} />],
            !!c.activatedAt && ['Active since', <When at={c.activatedAt} />],
            [
              c.endedAt ? 'Ended' : c.status === 'pending_approval' ? 'Request lapses' : 'Ends',
              <>
                <When at={c.endedAt ?? c.expiresAt} />
                {c.endReason && ` (${c.endReason.replace(/_/g, ' ')})`}
              </>,
            ],
          ]}
        />
      </Section>
      {mine && (c.status === 'active' || c.status === 'pending_approval') && <OwnerActions checkout={c} onNotice={setNotice} />}
      {me.has('admin') && (c.status === 'active' || c.status === 'pending_approval') && <RevokeAction checkout={c} />}
      <Connect to={{ checkoutId: c.id }} active={mine && c.status === 'active'} />
      <LiveSessions of={{ checkoutId: c.id }} active={c.status === 'active'} />
      <Section title="Approvals">
        <ApprovalsList approvals={c.approvals} required={c.approvalsRequired} />
        <DecisionPanel kind="checkouts" request={c} />
        {c.review && (
          <p>
            Break-glass review by <Person id={c.review.reviewedBy} /> <When at={c.review.reviewedAt} />
            {c.review.comment && <>: {c.review.comment}</>}
          </p>
        )}
      </Section>
      {!mine && me.has('approver', 'auditor', 'admin') && <RequesterHistory requesterId={c.requesterId} exclude={c.id} />}
    </>
  );
}

const EXTENSIONS = [900, 1800, 3600, 7200, 14400];

/** The requester's own actions: reveal (MFA), extend (MFA), check in / withdraw. */
function OwnerActions({ checkout: c, onNotice: setNotice }: { checkout: CheckoutView; onNotice(text: string): void }) {
  const queries = useQueryClient();
  // a credential from the request that created this checkout, handed over in memory (read once)
  const [credential, setCredential] = useState<CredentialView | null>(() => credentialHandoff.peek(c.id));
  const [extendBy, setExtendBy] = useState(EXTENSIONS[2]);
  const { busy, error, run } = useAction();
  useEffect(() => credentialHandoff.drop(c.id), [c.id]);

  const refresh = (next: CheckoutView) => queries.setQueryData(['checkout', c.id], next);
  const active = c.status === 'active';
  // brokered only: the password never leaves the vault (reveal answers 409); the gateway panel connects instead
  const brokered = useAccount(c.accountId).data?.policy.brokeredOnly === true;

  const checkin = () =>
    run(async () => {
      setCredential(null);
      refresh(await checkoutCalls.checkin(c.id));
      setNotice(active ? 'Checked in: the password is being changed.' : 'Request withdrawn.');
    });

  return (
    <Section title="Your access">
      {active && credential && <CredentialPanel credential={credential} seconds={REVEAL_SECONDS} onHide={() => setCredential(null)} />}
      <div className="actions">
        {active && !credential && !brokered && (
          <StepUpAction
            label="Reveal password"
            confirmLabel="Reveal"
            onConfirm={async (code) => setCredential((await checkoutCalls.reveal(c.id, code)).credential)}
          />
        )}
        {active && (
          <StepUpAction
            label="Extend"
            onConfirm={async (code) => {
              refresh(await checkoutCalls.extend(c.id, extendBy, code));
              setNotice(`Extended by ${duration(extendBy)}.`);
            }}
          >
            <DurationSelect label="Extend by" value={extendBy} onChange={setExtendBy} options={EXTENSIONS} />
          </StepUpAction>
        )}
        <button type="button" disabled={busy} onClick={() => void checkin()}>
          {active ? 'Check in' : 'Withdraw request'}
        </button>
      </div>
      <ErrorMessage error={error} />
    </Section>
  );
}

/** An admin ends someone's checkout by force: sessions ended, password rotated. */
function RevokeAction({ checkout: c }: { checkout: CheckoutView }) {
  const queries = useQueryClient();
  const [reason, setReason] = useState('');
  const { busy, error, run } = useAction();
  const reasonId = useId();
  const revoke = () => run(async () => queries.setQueryData(['checkout', c.id], await checkoutCalls.revoke(c.id, reason.trim())));
  return (
    <Section title="Revoke (admin)">
      <div className="field">
        <label htmlFor={reasonId}>Reason (optional)</label>
        <input id={reasonId} maxLength={1000} value={reason} onChange={(e) => setReason(e.target.value)} />
      </div>
      <p>
        <button type="button" className="danger" disabled={busy} onClick={() => void revoke()}>
          Revoke checkout
        </button>
      </p>
      <ErrorMessage error={error} />
    </Section>
  );
}

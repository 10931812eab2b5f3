import { useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { useParams } from 'react-router';
import { Person, TargetName, useTargetMap } from '../../api/names';
import type { ClaimView, EphemeralView } from '../../api/views';
import { useMe } from '../../session';
import { connectionHints, CredentialPanel, guessTargetType } from '../../ui/credential';
import { ErrorMessage, Notice } from '../../ui/errors';
import { Facts, useAction } from '../../ui/fields';
import { duration, Remaining, StatusBadge, When } from '../../ui/format';
import { ItemPage, Section } from '../../ui/page';
import { StepUpAction } from '../../ui/step-up';
import { ApprovalsList, DecisionPanel } from '../approvals/decision';
import { Connect } from '../connect/connect';
import { LiveSessions } from '../sessions-live/live-sessions';
import { accessSummary } from './access';
import { oneTimeCalls, REVOCABLE, useOneTimeAccount } from './one-time-api';

/**
 * How long a claimed password stays on screen. Longer than a checkout's reveal (30 s): a claim answers it once and
 * never again, so the vendor gets time to copy it; "Hide now" ends it sooner.
 */
const CLAIM_SHOWN_SECONDS = 120;

export function OneTimeAccountPage() {
  const { id = '' } = useParams();
  return (
    <ItemPage title="One-time account" query={useOneTimeAccount(id)}>
      {(account) => <OneTimeDetail key={account.id} account={account} />}
    </ItemPage>
  );
}

function OneTimeDetail({ account: e }: { account: EphemeralView }) {
  const me = useMe();
  const queries = useQueryClient();
  const targets = useTargetMap();
  const [claim, setClaim] = useState<ClaimView | null>(null);
  const { busy, error, run } = useAction();
  const [notice, setNotice] = useState('');
  const isVendor = e.vendorId === me.id;
  const mayRevoke = (isVendor || e.requesterId === me.id || me.has('admin')) && REVOCABLE.includes(e.status);
  const update = (next: EphemeralView) => queries.setQueryData(['one-time', e.id], next);

  const revoke = () =>
    run(async () => {
      setClaim(null);
      update(await oneTimeCalls.revoke(e.id));
      setNotice('Revoked: the account is removed from the target and its sessions end.');
    });

  const hints = claim ? connectionHints(targets.get(e.targetId)?.type ?? guessTargetType(e.access, claim.port), claim, e.access.database) : [];
  return (
    <>
      <Section title="Status">
        <p className="status-line">
          <StatusBadge status={e.status} /> {e.status === 'active' && <Remaining until={e.expiresAt} />}
          {e.status === 'pending_approval' && <Remaining until={e.requestDeadline} label="left to decide" />}
          {e.status === 'approved' && <Remaining until={e.requestDeadline} label="left to claim" />}
        </p>
        <Facts
          rows={[
            ['Target', <TargetName id={e.targetId} />],
            ['Vendor', <Person id={e.vendorId} name={e.vendorName} />],
            ['Requested by', <Person id={e.requesterId} name={e.requesterName} />],
            ['Why', <span className="prewrap">{e.justification}</span>],
            ['Lifetime', `${duration(e.ttlSeconds)} from the claim`],
            ['Access', accessSummary(e.access)],
            !!e.username && ['Username on the target', <code>{e.username}</code>],
            ['Requested', <When at={e.requestedAt} />],
            !!e.claimedAt && ['Claimed', <When at={e.claimedAt} />],
            !!e.endedAt && [
              'Ended',
              <>
                <When at={e.endedAt} />
                {e.endReason && ` (${e.endReason.replace(/_/g, ' ')})`}
              </>,
            ],
            !!e.lastError && ['Last error', e.lastError],
          ]}
        />
      </Section>
      {claim?.password !== undefined && (
        <CredentialPanel title="Your one-time account" credential={{ ...claim, password: claim.password }} seconds={CLAIM_SHOWN_SECONDS} hints={hints} onHide={() => setClaim(null)} />
      )}
      {claim?.brokeredOnly && <Notice>Claimed. This account is brokered only: its password stays in the vault; connect through the SSH gateway below.</Notice>}
      <Connect to={{ ephemeralId: e.id }} active={isVendor && e.status === 'active'} />
      {(isVendor || mayRevoke) && (
        <Section title="Actions">
          {isVendor && e.status === 'approved' && !claim && (
            <p>The password is shown once, when you claim: have your client ready. It is never shown again.</p>
          )}
          <div className="actions">
            {isVendor && e.status === 'approved' && !claim && (
              <StepUpAction label="Claim" confirmLabel="Claim now" onConfirm={async (code) => setClaim(await oneTimeCalls.claim(e.id, code))} />
            )}
            {mayRevoke && (
              <button type="button" className="danger" disabled={busy} onClick={() => void revoke()}>
                {e.status === 'pending_approval' || e.status === 'approved' ? 'Withdraw request' : 'Revoke'}
              </button>
            )}
          </div>
          <ErrorMessage error={error} />
        </Section>
      )}
      <LiveSessions of={{ ephemeralId: e.id }} active={e.status === 'active'} />
      <Notice>{notice}</Notice>
      <Section title="Approvals">
        <ApprovalsList approvals={e.approvals} required={e.approvalsRequired} />
        <DecisionPanel kind="ephemeral-accounts" request={e} />
      </Section>
    </>
  );
}

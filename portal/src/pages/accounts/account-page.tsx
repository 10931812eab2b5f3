import { useId, useState, type FormEvent } from 'react';
import { Link, useNavigate, useParams } from 'react-router';
import { usePagedList } from '../../api/lists';
import { TargetName, useAccount } from '../../api/names';
import type { AccountView, CheckoutView } from '../../api/views';
import { useMe } from '../../session';
import { ErrorMessage } from '../../ui/errors';
import { DurationSelect, durationsUpTo, Facts, nearest, useAction } from '../../ui/fields';
import { duration, StatusBadge, When } from '../../ui/format';
import { Loading, Page, Section } from '../../ui/page';
import { MfaCodeField, proofOf, SecurityKeyButton, useMfaMethods } from '../../ui/step-up';
import { checkoutCalls, credentialHandoff } from '../checkouts/checkout-api';
import { CheckoutList } from '../checkouts/checkouts-page';
import { AccountAdminActions } from '../admin/accounts/account-actions';
import { policySummary } from './policy-summary';

/** One account: what it is, its rules, its recent checkouts, and (for operators) the checkout request. */
export function AccountPage() {
  const { id = '' } = useParams();
  const me = useMe();
  const { data: account, error, isPending } = useAccount(id);
  const recent = usePagedList<CheckoutView>('/v1/checkouts', { accountId: id }, { limit: 5 });
  return (
    <Page title={account ? `Account ${account.username}` : 'Account'}>
      {isPending && <Loading />}
      <ErrorMessage error={error} />
      {account && (
        <>
          <Section title="About this account">
            <Facts
              rows={[
                ['Username', <code>{account.username}</code>],
                ['Target', <TargetName id={account.targetId} />],
                ['Status', <StatusBadge status={account.status} />],
                ['Checkout rules', policySummary(account.policy)],
                ['Last rotated', <When at={account.lastRotatedAt} />],
                ['Next rotation', <When at={account.nextRotationAt} />],
              ]}
            />
          </Section>
          {me.has('admin') && <AccountAdminActions account={account} />}
          {me.has('operator') && <RequestCheckout account={account} held={recent.items.find((c) => c.status === 'active' || c.status === 'pending_approval')} />}
          <Section title={me.has('approver', 'admin', 'auditor') ? 'Recent checkouts' : 'Your recent checkouts'}>
            {recent.isPending ? <Loading /> : <CheckoutList items={recent.items} showRequester={me.has('approver', 'admin', 'auditor')} />}
          </Section>
        </>
      )}
    </Page>
  );
}

/** Durations offered: common lengths up to the policy's maximum (a break-glass one's is shorter), and its default. */
function durations(a: AccountView, breakGlass: boolean): number[] {
  const max = breakGlass ? Math.min(a.policy.breakGlassTtlSeconds, a.policy.maxCheckoutTtlSeconds) : a.policy.maxCheckoutTtlSeconds;
  return durationsUpTo(max, a.policy.checkoutTtlSeconds);
}

/** The checkout request; `held` is a live checkout of this account among the recent ones (the operator's own, for operators). */
function RequestCheckout({ account, held }: { account: AccountView; held?: CheckoutView }) {
  const navigate = useNavigate();
  const me = useMe();
  const [justification, setJustification] = useState('');
  const [breakGlass, setBreakGlass] = useState(false);
  const [ttl, setTtl] = useState(account.policy.checkoutTtlSeconds);
  const [code, setCode] = useState('');
  const { busy, error, run } = useAction();
  const methods = useMfaMethods();
  const whyId = useId();
  const bgId = useId();
  const options = durations(account, breakGlass);
  const chosen = nearest(options, ttl);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const proof = proofOf(e, code);
    const done = await run(async () => {
      const body = { accountId: account.id, justification: justification.trim(), ttlSeconds: chosen, ...(breakGlass ? { breakGlass: true } : {}) };
      const created = await checkoutCalls.request(body, proof);
      if (created.credential) credentialHandoff.give(created.id, created.credential);
      navigate(`/checkouts/${created.id}`);
    });
    // a code is accepted once: the next try needs a new one
    if (!done) setCode('');
  };

  if (account.status !== 'available')
    return (
      <Section title="Request a checkout">
        <p className="muted">This account is {account.status.replace(/_/g, ' ')}: it cannot be checked out now.</p>
        {held && held.requesterId === me.id && (
          <p>
            <Link to={`/checkouts/${held.id}`}>Open your checkout of this account</Link>
          </p>
        )}
      </Section>
    );
  return (
    <Section title="Request a checkout">
      <form className="stack" onSubmit={submit} aria-label="Request a checkout">
        <div className="field">
          <label htmlFor={whyId}>Why do you need it?</label>
          <textarea id={whyId} required minLength={3} maxLength={1000} value={justification} onChange={(e) => setJustification(e.target.value)} />
        </div>
        <DurationSelect label="For how long" value={chosen} onChange={setTtl} options={options} />
        {account.policy.breakGlassAllowed && (
          <div className="field inline">
            <input id={bgId} type="checkbox" checked={breakGlass} onChange={(e) => setBreakGlass(e.target.checked)} />
            <label htmlFor={bgId}>Break-glass: emergency access without approval (at most {duration(account.policy.breakGlassTtlSeconds)}, reviewed afterwards)</label>
          </div>
        )}
        <p className="muted">
          {account.policy.approvalsRequired > 0 && !breakGlass
            ? `Needs ${account.policy.approvalsRequired} approval${account.policy.approvalsRequired === 1 ? '' : 's'} before you get the password.`
            : 'You get the password at once.'}
        </p>
        {methods.totp && <MfaCodeField value={code} onChange={setCode} required={!methods.securityKey} />}
        <ErrorMessage error={error} />
        <div className="actions">
          {methods.totp && (
            <button type="submit" className={breakGlass ? 'danger' : 'primary'} disabled={busy}>
              {busy ? 'Requesting…' : breakGlass ? 'Break glass' : 'Request checkout'}
            </button>
          )}
          {methods.securityKey && (
            <SecurityKeyButton primary={!methods.totp} disabled={busy} label={`${breakGlass ? 'Break glass' : 'Request checkout'} with security key`} />
          )}
        </div>
      </form>
    </Section>
  );
}

import { useState } from 'react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useLocation, useNavigate, useParams } from 'react-router';
import { api, ok, withMfa } from '../../../api/client';
import { ErrorMessage, Notice } from '../../../ui/errors';
import { Loading, Page, Section } from '../../../ui/page';
import { StepUpAction } from '../../../ui/step-up';
import { TargetAccounts } from '../accounts/target-accounts';
import { LiveSessions } from '../../sessions-live/live-sessions';
import { EphemeralPolicyEditor } from '../policies/policy-editor';
import { Disclosure } from '../shared/disclosure';
import type { AdminTargetView } from '../views';
import { identityCheck } from './targets-page';
import { TargetEditForm } from './target-form';
import { VerifyPanel } from './verify-panel';
import { When } from '../../../ui/format';
import { Facts } from '../../../ui/fields';

/** `/targets/:id`: one target, its verify and host-key pin, its accounts, its one-time account policy. */
export function TargetPage() {
  const { id = '' } = useParams();
  const location = useLocation();
  const navigate = useNavigate();
  const queries = useQueryClient();
  const query = useQuery({
    queryKey: ['targets', 'one', id],
    queryFn: async () => ok(await api.GET('/v1/targets/{id}', { params: { path: { id } } })) as AdminTargetView,
  });
  const target = query.data;
  const [changed, setChanged] = useState(false);

  const remove = async (code: string) => {
    await api.DELETE('/v1/targets/{id}', withMfa(code, { params: { path: { id } } }));
    navigate('/targets', { replace: true });
    await queries.invalidateQueries();
  };

  if (!target) return <Page title="Target">{query.error ? <ErrorMessage error={query.error} /> : <Loading what="Loading the target" />}</Page>;
  return (
    <Page title={`Target ${target.name}`}>
      {(location.state as { created?: boolean } | null)?.created && <Notice>Target registered. Verify it next.</Notice>}
      <Section title="Details">
        <Facts
          rows={[
            ['Type', target.type],
            ['Address', <code>{`${target.host}:${target.port}`}</code>],
            ['Admin', `${target.admin.username} (${target.admin.credential.join(', ') || 'no credential'})`],
            ['Identity check', identityCheck(target)],
            !!target.options.hostKeySha256 && ['Host key', <code>SHA256:{target.options.hostKeySha256}</code>],
            !!target.options.tlsCertSha256 && ['Certificate pin', <code>{target.options.tlsCertSha256}</code>],
            !!target.options.database && ['Database', target.options.database],
            !!target.options.accountHost && ['Account host', target.options.accountHost],
            ['Registered', <When at={target.createdAt} />],
            ['Changed', <When at={target.updatedAt} />],
          ]}
        />
      </Section>
      <VerifyPanel target={target} />
      <TargetAccounts target={target} />
      <LiveSessions of={{ targetId: target.id }} />
      <Section title="One-time account policy">
        <EphemeralPolicyEditor target={target} />
      </Section>
      <Section title="Change">
        {changed && <Notice>Target changed. Verify it again if it moved.</Notice>}
        <Disclosure label="Change target">{(close) => <TargetEditForm key={target.updatedAt} target={target} onDone={() => (close(), setChanged(true))} />}</Disclosure>
      </Section>
      <Section title="Delete">
        <p className="hint">Only a target without accounts or open one-time accounts can be deleted.</p>
        <StepUpAction label="Delete target" danger onConfirm={remove} />
      </Section>
    </Page>
  );
}

import { useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { Link, useNavigate } from 'react-router';
import { api, ok, withMfa } from '../../api/client';
import { MoreButton, usePagedList } from '../../api/lists';
import { useMe } from '../../session';
import { ErrorMessage } from '../../ui/errors';
import { StatusBadge, When } from '../../ui/format';
import { Loading, Page, Section } from '../../ui/page';
import { StepUpAction } from '../../ui/step-up';
import { Disclosure } from '../admin/shared/disclosure';
import { Checkbox, optionsOf, splitList, TextField } from '../admin/shared/fields';
import { DataTable, type Column } from '../admin/shared/table';
import type { ChannelKind, ChannelView } from '../admin/views';
import { DeliveryLog } from './delivery-log';
import { CHANNEL_KINDS } from './notification-types';
import { SelectField } from '../../ui/fields';

/** Where a channel sends, as shown (a webhook URL comes back without its query; secrets never come back). */
export function channelWhere(c: ChannelView): string {
  if (c.kind === 'email') return (c.config.to ?? []).join(', ');
  if (c.kind === 'webhook') return c.config.url ?? '';
  return c.secretSet ? 'incoming webhook set' : 'no incoming webhook';
}

const COLUMNS: Column<ChannelView>[] = [
  { label: 'Name', cell: (c) => <Link to={`/notifications/${c.id}`}>{c.name}</Link> },
  { label: 'Kind', cell: (c) => c.kind },
  { label: 'Sends to', cell: (c) => <span className="mono">{channelWhere(c)}</span> },
  { label: 'Status', cell: (c) => <StatusBadge status={c.enabled ? 'enabled' : 'disabled'} /> },
  { label: 'Changed', cell: (c) => <When at={c.updatedAt} /> },
];

/** `/notifications`: the channels messages go out through, and the log of every delivery (admin, auditor). */
export function NotificationsPage() {
  const me = useMe();
  const channels = usePagedList<ChannelView>('/v1/notification-channels', {});
  return (
    <Page title="Notifications">
      <Section title="Channels">
        <ErrorMessage error={channels.error} />
        {channels.isPending ? <Loading what="Loading channels" /> : <DataTable caption="Notification channels" rows={channels.items} columns={COLUMNS} empty="No channels: only people's own e-mail is used." />}
        <MoreButton list={channels} />
        {me.has('admin') && <Disclosure label="Add a channel">{() => <ChannelCreateForm />}</Disclosure>}
      </Section>
      <Section title="Delivery log">
        <DeliveryLog />
      </Section>
    </Page>
  );
}

const KIND_LABELS: Array<{ value: ChannelKind; label: string }> = CHANNEL_KINDS.map((k) => ({ value: k, label: { email: 'E-mail', webhook: 'Signed webhook', slack: 'Slack', teams: 'Microsoft Teams' }[k] }));

/**
 * A new channel. A webhook's signing secret or a Slack/Teams incoming-webhook URL is typed here, kept in this form's
 * state only and sent once (stored encrypted, never shown again).
 */
function ChannelCreateForm() {
  const queries = useQueryClient();
  const navigate = useNavigate();
  const [name, setName] = useState('');
  const [kind, setKind] = useState<ChannelKind>('email');
  const [to, setTo] = useState('');
  const [url, setUrl] = useState('');
  const [secret, setSecret] = useState('');
  const [enabled, setEnabled] = useState(true);

  const create = async (code: string) => {
    const config = kind === 'email' ? { to: splitList(to) } : kind === 'webhook' ? { url: url.trim() } : {};
    const body = { name, kind, config, enabled, ...(kind !== 'email' ? { secret } : {}) };
    const channel = ok(await api.POST('/v1/notification-channels', withMfa(code, { body }))) as ChannelView;
    setSecret('');
    await queries.invalidateQueries();
    navigate(`/notifications/${channel.id}`);
  };

  return (
    <div className="stack">
      <SelectField label="Kind" value={kind} onChange={(k) => k && setKind(k)} options={optionsOf(KIND_LABELS)} />
      <TextField label="Channel name" value={name} onChange={setName} required autoComplete="off" />
      {kind === 'email' && <TextField label="Addresses" value={to} onChange={setTo} autoComplete="off" hint="Comma-separated e-mail addresses." />}
      {kind === 'webhook' && (
        <>
          <TextField label="Webhook URL" value={url} onChange={setUrl} type="url" autoComplete="off" hint="https (http only to this machine); no credential in the URL." />
          <TextField label="Signing secret" value={secret} onChange={setSecret} type="password" autoComplete="new-password" hint="At least 16 characters; the receiver checks each message's signature with it." />
        </>
      )}
      {(kind === 'slack' || kind === 'teams') && (
        <TextField label="Incoming-webhook URL" value={secret} onChange={setSecret} type="password" autoComplete="new-password" hint="Kept as a secret: stored encrypted, never shown again." />
      )}
      <Checkbox label="Enabled" checked={enabled} onChange={setEnabled} />
      <p className="hint">A channel receives the events its routes take: add routes on its page.</p>
      <StepUpAction label="Add channel" onConfirm={create} disabled={!name} />
    </div>
  );
}

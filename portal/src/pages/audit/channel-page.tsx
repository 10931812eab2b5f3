import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { useNavigate, useParams } from 'react-router';
import { api, ok, withMfa } from '../../api/client';
import { MoreButton, usePagedList } from '../../api/lists';
import { TargetName, useTargets } from '../../api/names';
import { useMe } from '../../session';
import { ErrorMessage, Notice } from '../../ui/errors';
import { StatusBadge, When } from '../../ui/format';
import { Loading, Page, Section } from '../../ui/page';
import { StepUpAction } from '../../ui/step-up';
import { Disclosure } from '../admin/shared/disclosure';
import { CheckboxGroup } from '../admin/shared/fields';
import { DataTable, type Column } from '../admin/shared/table';
import type { ChannelView, RouteView } from '../admin/views';
import { DeliveryLog } from './delivery-log';
import { NOTIFICATION_TYPE_OPTIONS, type NOTIFICATION_TYPES } from './notification-types';
import { channelWhere } from './notifications-page';
import { Facts } from '../../ui/fields';

/** `/notifications/:id`: one channel: where it sends, its routes, a test message, and its deliveries. */
export function ChannelPage() {
  const { id = '' } = useParams();
  const me = useMe();
  const queries = useQueryClient();
  const navigate = useNavigate();
  const [notice, setNotice] = useState('');
  const query = useQuery({
    queryKey: ['/v1/notification-channels', 'one', id],
    queryFn: async () => ok(await api.GET('/v1/notification-channels/{id}', { params: { path: { id } } })) as ChannelView,
  });
  const channel = query.data;
  if (!channel) return <Page title="Channel">{query.error ? <ErrorMessage error={query.error} /> : <Loading what="Loading the channel" />}</Page>;
  const admin = me.has('admin');
  const path = { params: { path: { id: channel.id } } };

  const setEnabled = async (code: string, enabled: boolean) => {
    ok(await api.PATCH('/v1/notification-channels/{id}', withMfa(code, { ...path, body: { enabled } })));
    setNotice(enabled ? 'Channel enabled: waiting deliveries go out now.' : 'Channel disabled: its deliveries wait until it is enabled again.');
    await queries.invalidateQueries();
  };
  const test = async (code: string) => {
    ok(await api.POST('/v1/notification-channels/{id}/test', withMfa(code, path)));
    setNotice('Test message queued: see it in the deliveries below.');
    await queries.invalidateQueries();
  };
  const remove = async (code: string) => {
    await api.DELETE('/v1/notification-channels/{id}', withMfa(code, path));
    navigate('/notifications', { replace: true });
    await queries.invalidateQueries();
  };

  return (
    <Page title={`Channel ${channel.name}`}>
      <Notice>{notice}</Notice>
      <Section title="Details">
        <Facts
          rows={[
            ['Kind', channel.kind],
            ['Sends to', <span className="mono">{channelWhere(channel)}</span>],
            ['Secret', channel.secretSet ? 'set (never shown)' : 'none'],
            ['Status', <StatusBadge status={channel.enabled ? 'enabled' : 'disabled'} />],
            ['Changed', <When at={channel.updatedAt} />],
          ]}
        />
        {admin && (
          <div className="actions">
            {channel.enabled ? (
              <StepUpAction label="Disable channel" onConfirm={(code) => setEnabled(code, false)} />
            ) : (
              <StepUpAction label="Enable channel" onConfirm={(code) => setEnabled(code, true)} />
            )}
            <StepUpAction label="Send a test message" onConfirm={test} disabled={!channel.enabled} />
            <StepUpAction label="Delete channel" danger onConfirm={remove} />
          </div>
        )}
      </Section>
      <ChannelRoutes channel={channel} admin={admin} />
      <Section title="Deliveries">
        <DeliveryLog channelId={channel.id} />
      </Section>
    </Page>
  );
}

function ChannelRoutes({ channel, admin }: { channel: ChannelView; admin: boolean }) {
  const queries = useQueryClient();
  const list = usePagedList<RouteView>('/v1/notification-routes', { channelId: channel.id });
  const remove = async (id: string, code: string) => {
    await api.DELETE('/v1/notification-routes/{id}', withMfa(code, { params: { path: { id } } }));
    await queries.invalidateQueries();
  };
  const columns: Column<RouteView>[] = [
    { label: 'Events', cell: (r) => (r.eventTypes.length ? r.eventTypes.join(', ') : 'every event') },
    {
      label: 'Targets',
      cell: (r) =>
        r.targetIds ? (
          <ul className="inline-list">
            {r.targetIds.map((t) => (
              <li key={t}>
                <TargetName id={t} />
              </li>
            ))}
          </ul>
        ) : (
          'any (and none)'
        ),
    },
    { label: 'Added', cell: (r) => <When at={r.createdAt} /> },
    ...(admin ? [{ label: 'Actions', cell: (r: RouteView) => <StepUpAction label="Delete route" danger onConfirm={(code) => remove(r.id, code)} /> }] : []),
  ];
  return (
    <Section title="Routes">
      <p className="hint">A route decides which events this channel receives.</p>
      <ErrorMessage error={list.error} />
      <DataTable caption={`Routes of ${channel.name}`} rows={list.items} columns={columns} empty="No routes: this channel receives nothing but test messages." />
      <MoreButton list={list} />
      {admin && <Disclosure label="Add a route">{(close) => <RouteForm channelId={channel.id} onDone={close} />}</Disclosure>}
    </Section>
  );
}

function RouteForm({ channelId, onDone }: { channelId: string; onDone(): void }) {
  const queries = useQueryClient();
  const targets = useTargets();
  const [eventTypes, setEventTypes] = useState<Array<(typeof NOTIFICATION_TYPES)[number]>>([]);
  const [targetIds, setTargetIds] = useState<string[]>([]);
  const add = async (code: string) => {
    const body = { channelId, eventTypes, ...(targetIds.length ? { targetIds } : {}) };
    ok(await api.POST('/v1/notification-routes', withMfa(code, { body })));
    await queries.invalidateQueries();
    onDone();
  };
  return (
    <div className="stack">
      <CheckboxGroup legend="Events (none ticked: every event)" options={NOTIFICATION_TYPE_OPTIONS} value={eventTypes} onChange={setEventTypes} />
      {(targets.data ?? []).length > 0 && (
        <CheckboxGroup
          legend="Only about these targets (none ticked: any)"
          options={(targets.data ?? []).map((t) => ({ value: t.id, label: t.name }))}
          value={targetIds}
          onChange={setTargetIds}
        />
      )}
      <StepUpAction label="Add route" onConfirm={add} />
    </div>
  );
}

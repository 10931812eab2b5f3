import { useState } from 'react';
import { MoreButton, usePagedList } from '../../api/lists';
import { Person } from '../../api/names';
import { ErrorMessage } from '../../ui/errors';
import { StatusBadge, When } from '../../ui/format';
import { Loading } from '../../ui/page';
import { optionsOf } from '../admin/shared/fields';
import { DataTable, type Column } from '../admin/shared/table';
import type { DeliveryView } from '../admin/views';
import { DELIVERY_STATUSES, NOTIFICATION_TYPE_OPTIONS } from './notification-types';
import { SubjectLink } from './subject-link';
import { SelectField } from '../../ui/fields';

const COLUMNS: Column<DeliveryView>[] = [
  { label: 'Created', cell: (d) => <When at={d.createdAt} /> },
  { label: 'Event', cell: (d) => <code>{d.eventType}</code> },
  { label: 'About', cell: (d) => <SubjectLink type={d.subject.type} id={d.subject.id} /> },
  { label: 'Summary', cell: (d) => d.summary },
  { label: 'To', cell: (d) => (d.recipientUserId ? <><Person id={d.recipientUserId} /> ({d.recipient})</> : d.recipient) },
  { label: 'Channel', cell: (d) => (d.channel.name ? `${d.channel.name} (${d.channel.kind})` : d.channel.kind) },
  { label: 'Status', cell: (d) => <StatusBadge status={d.status} /> },
  { label: 'Attempts', cell: (d) => d.attempts },
  { label: 'Last error', cell: (d) => (d.lastError ? <code>{d.lastError}</code> : '—') },
  { label: 'Sent', cell: (d) => <When at={d.sentAt} /> },
];

/** The delivery log (`GET /v1/notifications`), newest first, with its filters; `channelId` narrows it to one channel. */
export function DeliveryLog({ channelId }: { channelId?: string }) {
  const [status, setStatus] = useState<(typeof DELIVERY_STATUSES)[number] | ''>('');
  const [eventType, setEventType] = useState<string>('');
  // pending deliveries change by themselves: the log is read again while the tab is visible
  const list = usePagedList<DeliveryView>('/v1/notifications', { status, eventType, channelId }, { live: true });
  return (
    <div className="stack">
      <div className="filters">
        <SelectField label="Delivery status" value={status} onChange={setStatus} options={optionsOf(DELIVERY_STATUSES, 'Any status')} />
        <SelectField label="Event type" value={eventType} onChange={setEventType} options={optionsOf(NOTIFICATION_TYPE_OPTIONS, 'Any event')} />
      </div>
      <ErrorMessage error={list.error} />
      {list.isPending ? <Loading what="Loading deliveries" /> : <DataTable caption="Deliveries, newest first" rows={list.items} columns={COLUMNS} empty="No deliveries match." />}
      <MoreButton list={list} />
    </div>
  );
}

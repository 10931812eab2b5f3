import { useQuery } from '@tanstack/react-query';
import { Link, useParams } from 'react-router';
import { api, ok } from '../../api/client';
import { Person } from '../../api/names';
import { ApiError } from '../../api/errors';
import { ErrorMessage } from '../../ui/errors';
import { StatusBadge, When } from '../../ui/format';
import { Loading, Page, Section } from '../../ui/page';
import type { AuditEventView } from '../admin/views';
import { SubjectLink } from './subject-link';
import { Facts } from '../../ui/fields';

/** One event, or null when there is none with this id (the API answers 404 NOT_FOUND). */
async function readEvent(id: string): Promise<AuditEventView | null> {
  try {
    return ok(await api.GET('/v1/audit-events/{id}', { params: { path: { id } } })) as AuditEventView;
  } catch (e) {
    if (e instanceof ApiError && e.code === 'NOT_FOUND') return null;
    throw e;
  }
}

/** `/audit/:id`: one audit event with its details (auditor, admin). */
export function AuditEventPage() {
  const { id = '' } = useParams();
  const query = useQuery({ queryKey: ['/v1/audit-events', 'one', id], queryFn: () => readEvent(id) });
  const event = query.data;
  if (query.isPending) return <Page title={`Audit event ${id}`}><Loading what="Loading the event" /></Page>;
  if (!event)
    return (
      <Page title={`Audit event ${id}`}>
        {query.error ? <ErrorMessage error={query.error} /> : <p>There is no audit event {id}.</p>}
        <p>
          <Link to="/audit">Back to the audit log</Link>
        </p>
      </Page>
    );
  return (
    <Page title={`Audit event ${event.id}`}>
      <Section title="Event">
        <Facts
          rows={[
            ['Type', <code>{event.type}</code>],
            ['When', <When at={event.at} />],
            ['Outcome', <StatusBadge status={event.outcome} />],
            ['Actor', <><Person id={event.actorId} /> {event.actorId && <code className="muted">{event.actorId}</code>}</>],
            ['Subject', <><SubjectLink type={event.subjectType} id={event.subjectId} /> {event.subjectId && <code className="muted">{event.subjectId}</code>}</>],
            ['Sealed in the chain', event.sealed ? 'yes' : 'not yet (sealed shortly after it is written)'],
          ]}
        />
      </Section>
      <Section title="Details">
        <pre className="details-json" tabIndex={0} aria-label="Event details (JSON)">
          {JSON.stringify(event.details, null, 2)}
        </pre>
      </Section>
      <p className="actions">
        {event.subjectId && <Link to={`/audit?subjectType=${encodeURIComponent(event.subjectType)}&subjectId=${encodeURIComponent(event.subjectId)}`}>Other events about this {event.subjectType.replace(/_/g, ' ')}</Link>}
        {event.actorId && <Link to={`/audit?actorId=${encodeURIComponent(event.actorId)}`}>Other events by this actor</Link>}
        <Link to="/audit">Back to the audit log</Link>
      </p>
    </Page>
  );
}

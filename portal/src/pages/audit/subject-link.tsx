import { Link } from 'react-router';
import { shortId } from '../../ui/format';

/** Where the portal shows each kind of subject an audit event or a notification is about. */
const SUBJECT_PAGES: Record<string, string> = {
  checkout: '/checkouts',
  ephemeral_account: '/one-time-accounts',
  account: '/accounts',
  target: '/targets',
  user: '/users',
  audit: '/audit',
  notification_channel: '/notifications',
  channel: '/notifications',
};

/** `checkout 1a2b3c4d`, linked to the subject's page when the portal has one. */
export function SubjectLink({ type, id }: { type: string; id: string | null }) {
  const label = `${type.replace(/_/g, ' ')}${id ? ` ${shortId(id)}` : ''}`;
  const page = SUBJECT_PAGES[type];
  if (!id || !page) return <span>{label}</span>;
  return (
    <Link to={`${page}/${encodeURIComponent(id)}`} title={id}>
      {label}
    </Link>
  );
}

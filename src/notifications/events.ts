import type { Recipients } from '../identity/user-standing';
import type { RenderedMessage, WebhookPayload } from './senders/sender';

/**
 * Every kind of message the vault sends (README "Notifications" lists them): who is told is decided by the emitter
 * (`to`), what the message says comes only from `NotificationFacts` — never a password, TOTP code or token.
 * `optional`: a user may mute it for themselves; the others are what their role requires (an approver cannot mute
 * the requests they must decide, nor an administrator the alerts).
 */
export const NOTIFICATION_TYPES = {
  'approval.requested': { optional: false, title: 'Approval requested' },
  'request.approved': { optional: true, title: 'Request approved' },
  'request.denied': { optional: true, title: 'Request denied' },
  'request.lapsed': { optional: true, title: 'Request lapsed' },
  'request.revoked': { optional: true, title: 'Access revoked' },
  'ephemeral.ready': { optional: false, title: 'One-time account ready to claim' },
  'checkout.expiring': { optional: true, title: 'Checkout expiring soon' },
  'ephemeral.expiring': { optional: true, title: 'One-time account expiring soon' },
  'alert.break_glass': { optional: false, title: 'Break-glass checkout used' },
  'alert.account_needs_attention': { optional: false, title: 'Account needs attention' },
  'alert.cleanup_failed': { optional: false, title: 'Session cleanup failed' },
  'alert.ephemeral_remove_failed': { optional: false, title: 'One-time account could not be removed' },
  'alert.audit_verify_failed': { optional: false, title: 'Audit chain verification failed' },
  'alert.mfa_failures': { optional: false, title: 'Repeated MFA failures' },
  'alert.break_glass_login': { optional: false, title: 'Break-glass password sign-in' },
  'alert.webauthn_clone_suspected': { optional: false, title: 'Cloned security key suspected' },
  'alert.delivery_failed': { optional: false, title: 'A notification could not be delivered' },
  'notification.test': { optional: false, title: 'Test notification' },
} as const satisfies Record<string, { optional: boolean; title: string }>;

export type NotificationType = keyof typeof NOTIFICATION_TYPES;
export const OPTIONAL_TYPES = (Object.keys(NOTIFICATION_TYPES) as NotificationType[]).filter((t) => NOTIFICATION_TYPES[t].optional);

export type { Recipients };

/** What a message may say. Each field is shown as is; none may hold a secret. */
export interface NotificationFacts {
  /** One line: what happened. */
  summary: string;
  requester?: string;
  target?: string;
  account?: string;
  justification?: string;
  /** ISO time: an approval deadline, an expiry. */
  deadline?: string;
  ttlSeconds?: number;
  reason?: string;
  code?: string;
  count?: number;
}

export interface NotifyInput {
  type: NotificationType;
  /** What the message is about (`checkout`, `ephemeral_account`, `account`, `user`, `audit`, `channel`). */
  subjectType: string;
  subjectId?: string | null;
  /** Routes may be limited to targets. */
  targetId?: string | null;
  to: Recipients;
  facts: NotificationFacts;
}

export const FACT_LABELS: Array<[keyof NotificationFacts, string]> = [
  ['requester', 'Requested by'],
  ['target', 'Target'],
  ['account', 'Account'],
  ['justification', 'Justification'],
  ['deadline', 'Deadline'],
  ['ttlSeconds', 'Duration (seconds)'],
  ['reason', 'Reason'],
  ['code', 'Code'],
  ['count', 'Count'],
];

/** Where the item is in the web portal: `<VAULT_PUBLIC_URL>/portal/<kind>/<id>` (null without a public URL). */
export function portalLink(publicUrl: string | undefined, subjectType: string, subjectId: string | null): string | null {
  if (!publicUrl) return null;
  const kind: Record<string, string> = { checkout: 'checkouts', ephemeral_account: 'one-time-accounts', account: 'accounts', user: 'users', audit: 'audit', channel: 'notifications' };
  const path = kind[subjectType] ?? 'notifications';
  return `${publicUrl.replace(/\/+$/, '')}/portal/${path}${subjectId && kind[subjectType] ? `/${encodeURIComponent(subjectId)}` : ''}`;
}

/** Line breaks of every kind (a value's own lines), and the other control characters (dropped). */
const LINE_BREAK = /\r\n|[\n\r\v\f\u0085\u2028\u2029]/;
const CONTROL = /[\u0000-\u0008\u000e-\u001f\u007f-\u0084\u0086-\u009f]/g;
const INDENT = '    ';

/** A value in the plain-text part: its continuation lines indented under the label, never at a line's start. */
export function textValue(v: string): string {
  return v.replace(CONTROL, '').split(LINE_BREAK).join(`\n${INDENT}`);
}

/** A value on one line (a subject header). */
const oneLine = (v: string) => v.replace(CONTROL, '').split(LINE_BREAK).join(' ');

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);

/** The one rendering of an event: the e-mail's subject, text and HTML, and the webhook's JSON. */
export function render(
  delivery: { id: string },
  event: { id: string; type: string; subjectType: string; subjectId: string | null; createdAt: Date; payload: NotificationFacts },
  publicUrl: string | undefined,
): RenderedMessage {
  const facts = event.payload;
  const title = NOTIFICATION_TYPES[event.type as NotificationType]?.title ?? event.type;
  const link = portalLink(publicUrl, event.subjectType, event.subjectId);
  const rows = FACT_LABELS.filter(([k]) => facts[k] !== undefined && facts[k] !== '').map(([k, label]) => [label, String(facts[k])] as const);
  const flat: Record<string, string | number> = {};
  for (const [k] of FACT_LABELS) if (facts[k] !== undefined) flat[k] = facts[k] as string | number;
  const payload: WebhookPayload = {
    id: delivery.id,
    eventId: event.id,
    type: event.type,
    occurredAt: event.createdAt.toISOString(),
    subject: { type: event.subjectType, id: event.subjectId },
    summary: facts.summary,
    link,
    facts: flat,
  };
  // the link first, then what people wrote: a value's own lines are indented, so none of them can pass for a line of
  // the message (a second `Open:` link, a footer)
  const text = [
    ...(link ? [`Open: ${link}`, ''] : []),
    textValue(facts.summary),
    '',
    ...rows.map(([l, v]) => `${l}: ${textValue(v)}`),
    '',
    '— PAM vault',
  ].join('\n');
  const html = [
    `<h2>${escapeHtml(title)}</h2>`,
    `<p>${escapeHtml(facts.summary)}</p>`,
    rows.length ? `<table>${rows.map(([l, v]) => `<tr><th align="left">${escapeHtml(l)}</th><td>${escapeHtml(v)}</td></tr>`).join('')}</table>` : '',
    link ? `<p><a href="${escapeHtml(link)}">Open in the vault</a></p>` : '',
  ].join('\n');
  return { subject: `[vault] ${title}: ${oneLine(facts.summary)}`.slice(0, 200), text, html, payload };
}

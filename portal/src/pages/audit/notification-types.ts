/**
 * The notification event types the vault sends (src/notifications/events.ts NOTIFICATION_TYPES; the delivery log's
 * `eventType` filter and a route's `eventTypes` accept only these).
 */
export const NOTIFICATION_TYPES = [
  'approval.requested',
  'request.approved',
  'request.denied',
  'request.lapsed',
  'request.revoked',
  'ephemeral.ready',
  'checkout.expiring',
  'ephemeral.expiring',
  'alert.break_glass',
  'alert.account_needs_attention',
  'alert.cleanup_failed',
  'alert.ephemeral_remove_failed',
  'alert.audit_verify_failed',
  'alert.mfa_failures',
  'alert.break_glass_login',
  'alert.webauthn_clone_suspected',
  'alert.delivery_failed',
  'notification.test',
] as const;

export const DELIVERY_STATUSES = ['pending', 'sent', 'failed', 'muted', 'no_address'] as const;

export const CHANNEL_KINDS = ['email', 'webhook', 'slack', 'teams'] as const;

/** The types as options, named exactly as the API and the log show them (no underscores turned into spaces). */
export const NOTIFICATION_TYPE_OPTIONS = NOTIFICATION_TYPES.map((t) => ({ value: t, label: t }));

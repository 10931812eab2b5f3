import { CheckoutCleanup, CheckoutEndReason, CheckoutStatus } from './checkout.entity';

/**
 * The checkout life cycle as a state machine (docs/architecture.md, "Checkout life cycle"). A checkout is created
 * `pending_approval` (approvals needed) or `active` (none needed, or break-glass); every later change of its status is
 * one of the transitions below, and the statement that makes it (CheckoutStore) checks the `from` status in its WHERE
 * and bumps `version`, so a transition that is not in this table cannot happen, whatever the caller read before.
 *
 * Ending an active checkout also starts its cleanup (ending the account's sessions on the target): the cleanup
 * sub-state goes `none → pending` in the same statement, then `pending → done` or, after failed attempts with backoff,
 * `pending → failed` (a person must look). A checkout that ended while pending never revealed the password: its
 * cleanup stays `none`.
 */

export const CHECKOUT_STATUSES: readonly CheckoutStatus[] = ['pending_approval', 'active', 'returned', 'expired', 'revoked', 'denied'];
export const CLEANUP_STATES: readonly CheckoutCleanup[] = ['none', 'pending', 'done', 'failed'];

/** The named status transitions; `reasons` are the end reasons recorded with it (none for an approval). */
export const CHECKOUT_TRANSITIONS = [
  { name: 'approve', from: 'pending_approval', to: 'active', reasons: [] },
  { name: 'deny', from: 'pending_approval', to: 'denied', reasons: ['denied'] },
  { name: 'lapse', from: 'pending_approval', to: 'expired', reasons: ['approval_timeout'] },
  { name: 'withdraw', from: 'pending_approval', to: 'returned', reasons: ['checked_in'] },
  { name: 'revoke', from: 'pending_approval', to: 'revoked', reasons: ['revoked', 'requester_disabled', 'requester_role_removed'] },
  { name: 'check_in', from: 'active', to: 'returned', reasons: ['checked_in'] },
  { name: 'expire', from: 'active', to: 'expired', reasons: ['expired'] },
  { name: 'revoke', from: 'active', to: 'revoked', reasons: ['revoked', 'requester_disabled', 'requester_role_removed'] },
] as const satisfies ReadonlyArray<{ name: string; from: CheckoutStatus; to: CheckoutStatus; reasons: readonly CheckoutEndReason[] }>;


/**
 * Changes that keep the status (also checked in their statement, also bumping `version`): a lease is extended only
 * while active; a break-glass checkout is reviewed once, only after it ended.
 */
export const CHECKOUT_UPDATES = {
  extend: { in: ['active'] },
  review: { in: ['returned', 'expired', 'revoked', 'denied'] },
} as const satisfies Record<string, { in: readonly CheckoutStatus[] }>;

export type CleanupTransitionName = 'owe' | 'finish' | 'defer' | 'retry' | 'give_up';

/** The cleanup sub-state's transitions (each statement but `owe` also requires this instance's cleanup claim). */
export const CLEANUP_TRANSITIONS: ReadonlyArray<{ name: CleanupTransitionName; from: CheckoutCleanup; to: CheckoutCleanup; when: string }> = [
  { name: 'owe', from: 'none', to: 'pending', when: 'an active checkout ends (same statement); claimed by the ending instance' },
  { name: 'finish', from: 'pending', to: 'done', when: "sessions ended after the account's post-check-in rotation settled" },
  { name: 'defer', from: 'pending', to: 'pending', when: 'sessions ended before the rotation settled: the claim lapses now, the sweep ends them again after it' },
  { name: 'retry', from: 'pending', to: 'pending', when: 'ending sessions failed: attempts + 1, claimed again after a backoff (15 s doubling, at most 3600 s, jittered)' },
  { name: 'give_up', from: 'pending', to: 'failed', when: 'ending sessions failed the last allowed time (VAULT_CHECKOUT_CLEANUP_MAX_ATTEMPTS): a person must look' },
];

export type EndReason = Exclude<CheckoutEndReason, 'denied'>;

/** The statuses a checkout that ends for `reason` may be in (the WHERE of the end statement). */
export function endableFrom(reason: EndReason): CheckoutStatus[] {
  return CHECKOUT_TRANSITIONS.filter((t) => (t.reasons as readonly string[]).includes(reason)).map((t) => t.from);
}

/** The status a checkout that ends for `reason` gets (the same from either open status). */
export function endStatus(reason: EndReason): CheckoutStatus {
  const t = CHECKOUT_TRANSITIONS.find((x) => (x.reasons as readonly string[]).includes(reason));
  if (!t) throw new Error(`no transition ends a checkout for ${reason}`);
  return t.to;
}

/** The status a checkout in `from` gets when it ends for `reason`; undefined when that is no transition. */
export function statusAfter(from: CheckoutStatus, reason: CheckoutEndReason): CheckoutStatus | undefined {
  return CHECKOUT_TRANSITIONS.find((t) => t.from === from && (t.reasons as readonly string[]).includes(reason))?.to;
}

/** Open: holds its account (the partial unique index allows one per account). */
export function isOpen(status: CheckoutStatus): boolean {
  return status === 'pending_approval' || status === 'active';
}

/** The transition tables as docs/architecture.md shows them (a test compares the two). */
export function checkoutTransitionsMarkdown(): string {
  const status = CHECKOUT_TRANSITIONS.map((t) => `| \`${t.name}\` | ${t.from} | ${t.to} | ${t.reasons.length ? t.reasons.join(', ') : '—'} |`);
  const updates = Object.entries(CHECKOUT_UPDATES).map(([name, u]) => `| \`${name}\` | ${u.in.join(', ')} | (same) | — |`);
  const cleanup = CLEANUP_TRANSITIONS.map((t) => `| \`${t.name}\` | ${t.from} | ${t.to} | ${t.when} |`);
  return [
    '| transition | from | to | end reason |',
    '|---|---|---|---|',
    ...status,
    ...updates,
    '',
    '| cleanup transition | from | to | when |',
    '|---|---|---|---|',
    ...cleanup,
  ].join('\n');
}

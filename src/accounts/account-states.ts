/**
 * The account life cycle as a state machine. `AccountStore` (account-store.ts) is the only code that changes
 * `accounts.status`, and each of its transitions checks the `from` states of its row here IN its statement
 * (`WHERE a.status IN (…)`), so a transition that is not in this table cannot happen, whatever the caller believed.
 * docs/architecture.md "Account life cycle" shows this table; a test checks the two are the same.
 */
export type AccountStatus = 'available' | 'checked_out' | 'rotating' | 'needs_attention';

export const ACCOUNT_STATUSES: readonly AccountStatus[] = ['available', 'checked_out', 'rotating', 'needs_attention'];

/** The named transitions (AccountStore methods; `needsAttention` is `failRotation` at the failure limit). */
export type AccountTransition = 'takeForCheckout' | 'release' | 'beginRotation' | 'markMustRotate' | 'finishRotation' | 'failRotation' | 'needsAttention' | 'remove';

export interface TransitionRule {
  from: readonly AccountStatus[];
  /** The status after it; `deleted`: the row is gone. */
  to: AccountStatus | 'deleted';
  /** Conditions besides the status, checked in the same statement. */
  guard: string;
  /** What else it sets. */
  effect: string;
}

export const ACCOUNT_TRANSITIONS: Readonly<Record<AccountTransition, TransitionRule>> = {
  takeForCheckout: {
    from: ['available'],
    to: 'checked_out',
    guard: "has a password, not must_rotate, and the caller's guard (no session cleanup owed)",
    effect: '',
  },
  release: { from: ['checked_out'], to: 'available', guard: '', effect: '' },
  beginRotation: { from: ['available', 'checked_out', 'needs_attention'], to: 'rotating', guard: '', effect: '' },
  markMustRotate: { from: ['rotating'], to: 'rotating', guard: '', effect: 'must_rotate (no checkout until a rotation succeeds)' },
  finishRotation: {
    from: ['rotating'],
    to: 'available',
    guard: '',
    effect: 'the new password, last_rotated_at, next_rotation_at; rotation_failures 0, must_rotate cleared',
  },
  failRotation: { from: ['rotating'], to: 'available', guard: '', effect: 'rotation_failures, next_rotation_at after a backoff' },
  needsAttention: { from: ['rotating'], to: 'needs_attention', guard: '', effect: 'rotation_failures at the limit, next_rotation_at cleared' },
  remove: { from: ['available', 'needs_attention'], to: 'deleted', guard: '', effect: 'its rotations and checkouts go with it' },
};

/** `<alias>.status IN ('…', …)`: a transition's precondition on the status, as its statement checks it. */
export function fromStatusSql(transition: AccountTransition, alias = 'a'): string {
  return `${alias}.status IN (${ACCOUNT_TRANSITIONS[transition].from.map((s) => `'${s}'`).join(', ')})`;
}

/** The transition table as the Markdown table docs/architecture.md shows (a test compares them). */
export function accountTransitionsMarkdown(): string {
  const rows = (Object.entries(ACCOUNT_TRANSITIONS) as Array<[AccountTransition, TransitionRule]>).map(
    ([name, t]) => `| \`${name}\` | ${t.from.join(', ')} | ${t.to} | ${t.guard || '—'} | ${t.effect || '—'} |`,
  );
  return ['| transition | from | to | also requires | also sets |', '|---|---|---|---|---|', ...rows].join('\n');
}

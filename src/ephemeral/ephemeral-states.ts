import type { EphemeralStatus } from './ephemeral.entity';

/** Every status a one-time account row can have (the table's CHECK constraint). */
export const EPHEMERAL_STATUSES: readonly EphemeralStatus[] = [
  'pending_approval', 'approved', 'denied', 'creating', 'active', 'revoking', 'revoked', 'expired', 'needs_attention',
];

/** A request nobody has claimed yet: nothing exists on the target. */
export const OPEN_REQUEST: readonly EphemeralStatus[] = ['pending_approval', 'approved'];
/** Ended: nothing exists on the target any more (or never did). */
export const FINAL: readonly EphemeralStatus[] = ['denied', 'revoked', 'expired'];
/** The account exists, may exist, or may still be created on the target. */
export const ON_TARGET: readonly EphemeralStatus[] = ['creating', 'active', 'revoking', 'needs_attention'];

interface Transition {
  readonly from: readonly EphemeralStatus[];
  readonly to: readonly EphemeralStatus[];
  /** Who takes it and when (docs/architecture.md, *One-time account life cycle*). */
  readonly why: string;
}

/**
 * The one-time account life cycle: every named transition, the statuses it may start from and the ones it may end in.
 * Each transition is one statement of EphemeralStore whose WHERE checks `status IN (from)` (through `fromSql`) and
 * whatever else it needs (the claimant, a lapsed claim), and which bumps `version`. Any other change of status is
 * forbidden; test/e2e/ephemeral-states.e2e-spec.ts walks every pair on a real database.
 */
export const EPHEMERAL_TRANSITIONS = {
  approve: { from: ['pending_approval'], to: ['approved'], why: 'the last approval needed' },
  deny: { from: ['pending_approval'], to: ['denied'], why: 'one denial' },
  requireReapproval: { from: ['approved'], to: ['pending_approval'], why: 'at claim, the policy in force asks for more approvals than were given' },
  lapse: { from: ['pending_approval', 'approved'], to: ['expired'], why: 'the reaper: not approved and claimed before the request deadline' },
  withdraw: { from: ['pending_approval', 'approved'], to: ['revoked'], why: 'the vendor, the requester or an admin revokes it before the claim' },
  claim: { from: ['approved'], to: ['creating'], why: 'the vendor claims it: the intent (username, expiry, claim) is committed before the target is touched' },
  activate: { from: ['creating'], to: ['active'], why: 'the claimant created it and still holds its claim' },
  failCreate: { from: ['creating'], to: ['revoking'], why: 'the claimant failed to create it (or cannot tell): the reaper removes what may exist once the claim lapses' },
  revoke: { from: ['creating', 'active', 'needs_attention'], to: ['revoking'], why: 'a person revokes it after the claim (a creating one waits for its claim to lapse)' },
  takeForRemoval: {
    from: ['active', 'creating', 'revoking', 'needs_attention'],
    to: ['revoking'],
    why: 'the reaper: its time is up or its vendor is gone (active), its claimant died (creating), a removal to retry (revoking, needs_attention; the claim lapsed)',
  },
  finishRemoval: { from: ['revoking'], to: ['revoked', 'expired'], why: 'the target said it is gone: expired when its time was up, revoked otherwise' },
  failRemoval: { from: ['revoking'], to: ['revoking', 'needs_attention'], why: 'the target refused or did not answer: retried after a backoff, needs_attention at the attempt limit' },
  reopenForRemoval: {
    from: ['revoked', 'expired', 'needs_attention'],
    to: ['revoking'],
    why: 'a claimant that lost its row created the account anyway: whatever the row says, the reaper removes it again',
  },
} as const satisfies Record<string, Transition>;

export type EphemeralTransition = keyof typeof EPHEMERAL_TRANSITIONS;

const quoted = (statuses: readonly EphemeralStatus[]) => statuses.map((s) => `'${s}'`).join(', ');

/** `<column> IN (<the transition's from-statuses>)`: the precondition every transition statement carries. */
export function fromSql(transition: EphemeralTransition, column = 'status'): string {
  return `${column} IN (${quoted(EPHEMERAL_TRANSITIONS[transition].from)})`;
}

/** `<column> IN (<statuses>)` for one of the groups above. */
export function statusInSql(statuses: readonly EphemeralStatus[], column = 'status'): string {
  return `${column} IN (${quoted(statuses)})`;
}

/** Every allowed `from → to` change of status, as `from>to` strings (for the docs and the transition test). */
export function allowedChanges(): Set<string> {
  const out = new Set<string>();
  for (const t of Object.values(EPHEMERAL_TRANSITIONS) as Transition[]) for (const f of t.from) for (const to of t.to) out.add(`${f}>${to}`);
  return out;
}

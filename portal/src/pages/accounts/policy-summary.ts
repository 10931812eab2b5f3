import type { AccountPolicy } from '../../api/views';
import { duration } from '../../ui/format';

/** An account's checkout rules in one line: `1 h by default, at most 8 h · 1 approval · break-glass allowed`. */
export function policySummary(p: AccountPolicy): string {
  const approvals = p.approvalsRequired === 0 ? 'no approval' : `${p.approvalsRequired} approval${p.approvalsRequired === 1 ? '' : 's'}`;
  return [
    `${duration(p.checkoutTtlSeconds)} by default, at most ${duration(p.maxCheckoutTtlSeconds)}`,
    approvals,
    p.breakGlassAllowed ? `break-glass allowed (${duration(p.breakGlassTtlSeconds)})` : null,
  ]
    .filter(Boolean)
    .join(' · ');
}

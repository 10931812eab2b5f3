import type { Actor } from '../common/actor';

export type AuditOutcome = 'success' | 'failure' | 'denied';

/** What a service says happened; the audit service adds id, time and MAC. */
export interface AuditInput {
  type: string;
  actor: Actor | null;
  subjectType: string;
  subjectId?: string | null;
  outcome?: AuditOutcome;
  /** Never a secret: use AuditService.hmacOf() for sensitive values. */
  details?: Record<string, unknown>;
}

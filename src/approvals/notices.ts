import type { EntityManager } from 'typeorm';
import type { Tx, UnitOfWork } from '../database/unit-of-work';
import type { NotificationType, Recipients } from '../notifications/events';
import { notifiedSql, NotificationStore } from '../notifications/notification-store';

/**
 * Who may decide on a request at this moment, as the recipients of its `approval.requested` message: every enabled
 * user holding the approver role (the rule recordDecision and countApprovals apply), except those the request's kind
 * excludes — its requester, and for a one-time account also its vendor. An administrator is told only when they are
 * an approver too. The outbox resolves this in the request's transaction and records each recipient, so the delivery
 * log shows who was told; an approver added later is not, a disabled one never.
 */
export function mayDecide(except: string[]): Recipients {
  return { roles: ['approver'], except };
}

/** A length of time for a one-line summary: `45 s`, `15 min`, `1h`, `2h 30 min`, `3d`. */
export function durationText(seconds: number): string {
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  const days = Math.floor(minutes / 1440);
  if (days >= 1 && minutes % 1440 === 0) return `${days}d`;
  const hours = Math.floor(minutes / 60);
  const rest = minutes % 60;
  return rest ? `${hours}h ${rest} min` : `${hours}h`;
}

/** What an owner's reminder statement is given: lock what expires within `leadSeconds` after `now`, not reminded yet. */
export interface ExpiringSoonQuery {
  now: Date;
  leadSeconds: number;
  limit: number;
  /** The notifications owner's fragment: a reminder was written about the row already. */
  remindedSql: string;
}

/**
 * The reminder step both kinds of access share (checkouts, one-time accounts), in one unit of work: what expires
 * within the lead is locked by its owner (`lock`: FOR UPDATE SKIP LOCKED, leaving out what was reminded), checked again
 * for a reminder in a new statement — it sees what a sweep that held the rows before has committed — and each of the
 * rest is reminded (`remind`, with the seconds left) in the same transaction. So two sweeps, on one instance or two,
 * never both remind. Answers how many were reminded.
 */
export function remindOnce<T extends { id: string; expiresAt: Date | null }>(
  uow: UnitOfWork,
  notifications: NotificationStore,
  o: {
    type: NotificationType;
    /** The locked row's id column in the owner's statement (`c.id`). */
    idColumn: string;
    query: Omit<ExpiringSoonQuery, 'remindedSql'>;
    lock: (em: EntityManager, q: ExpiringSoonQuery) => Promise<T[]>;
    remind: (tx: Tx, item: T, secondsLeft: number) => Promise<unknown>;
  },
): Promise<number> {
  return uow.run(async (tx) => {
    const soon = await o.lock(tx.em, { ...o.query, remindedSql: notifiedSql(o.type, o.idColumn) });
    const reminded = await notifications.notifiedAmong(tx.em, o.type, soon.map((s) => s.id));
    let written = 0;
    for (const item of soon) {
      if (reminded.has(item.id)) continue;
      await o.remind(tx, item, Math.max(0, Math.round(((item.expiresAt as Date).getTime() - o.query.now.getTime()) / 1000)));
      written++;
    }
    return written;
  });
}

import { Injectable } from '@nestjs/common';
import type { Queryable } from '../database/claimed-work';
import { checkoutSessionEndSql } from '../checkouts/checkout-store';
import { ephemeralSessionEndSql } from '../ephemeral/ephemeral-store';
import { userDisabledSql } from '../identity/user-standing';
import { sqlIdentifier } from '../database/sql-names';

/** Why a gateway session ended (gateway_sessions.end_reason). */
export const SESSION_END_REASONS = ['client_closed', 'upstream_closed', 'checked_in', 'expired', 'revoked', 'terminated', 'recording_failed', 'shutdown', 'error'] as const;
export type SessionEndReason = (typeof SESSION_END_REASONS)[number];

export type TicketMode = 'publickey' | 'password';

/** A ticket row, never its text (only its hash is stored). */
export interface TicketRow {
  id: string;
  userId: string;
  checkoutId: string | null;
  ephemeralId: string | null;
  mode: TicketMode;
  /** publickey: the wire blob of the key it is bound to. */
  publicKey: Buffer | null;
}

export interface NewTicket extends TicketRow {
  hash: Buffer;
  issuedAt: Date;
  expiresAt: Date;
}

export interface NewGatewaySession {
  id: string;
  ticketId: string;
  userId: string;
  checkoutId: string | null;
  ephemeralId: string | null;
  targetId: string;
  account: string;
  instanceId: string;
  clientAddress: string | null;
  startedAt: Date;
}

export interface GatewaySessionRow extends NewGatewaySession {
  seq: string;
  endedAt: Date | null;
  endReason: SessionEndReason | null;
  endRequestedAt: Date | null;
}

/** Every gateway_sessions column under its entity name (GatewaySessionRow), the row aliased `alias` (for the sessions API's joins). */
export function gatewaySessionColumns(alias: string): string {
  const a = sqlIdentifier(alias);
  return `${a}.id, ${a}.seq::text AS seq, ${a}.ticket_id AS "ticketId", ${a}.user_id AS "userId", ${a}.checkout_id AS "checkoutId",
  ${a}.ephemeral_id AS "ephemeralId", ${a}.target_id AS "targetId", ${a}.account, ${a}.instance_id AS "instanceId", ${a}.client_address AS "clientAddress",
  ${a}.started_at AS "startedAt", ${a}.ended_at AS "endedAt", ${a}.end_reason AS "endReason", ${a}.end_requested_at AS "endRequestedAt"`;
}
const GATEWAY_SESSION_COLUMNS = gatewaySessionColumns('s');

const TICKET_COLUMNS = `t.id, t.user_id AS "userId", t.checkout_id AS "checkoutId", t.ephemeral_id AS "ephemeralId", t.mode, t.public_key AS "publicKey"`;

/**
 * The owner of `gateway_host_keys`, `gateway_tickets` and `gateway_sessions`: every statement on them is here.
 * A ticket is spent by one conditional UPDATE (unused, not expired, its user enabled): of two connections presenting
 * it at once exactly one gets the row. Callers run these in their own unit of work where they change something.
 */
@Injectable()
export class GatewayStore {
  // ---- the host key ------------------------------------------------------------------------------------------

  async hostKey(q: Queryable): Promise<{ publicKey: string; privateKey: Buffer } | null> {
    const [row] = (await q.query('SELECT public_key AS "publicKey", private_key AS "privateKey" FROM gateway_host_keys WHERE id = 1')) as Array<{
      publicKey: string;
      privateKey: Buffer;
    }>;
    return row ?? null;
  }

  /** The first instance's key wins: two instances starting at once both read the one that was inserted. */
  async insertHostKey(q: Queryable, publicKey: string, privateKey: Buffer): Promise<void> {
    await q.query('INSERT INTO gateway_host_keys (id, public_key, private_key) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING', [publicKey, privateKey]);
  }

  /**
   * Replaces a stored key that is not well formed (`broken` is its public half as read): compare-and-swap, so
   * instances starting at once all end up with the one key that replaced it.
   */
  async replaceBrokenHostKey(q: Queryable, broken: string, publicKey: string, privateKey: Buffer): Promise<void> {
    await q.query('UPDATE gateway_host_keys SET public_key = $2, private_key = $3 WHERE id = 1 AND public_key = $1', [broken, publicKey, privateKey]);
  }

  // ---- tickets -----------------------------------------------------------------------------------------------

  async insertTicket(q: Queryable, t: NewTicket): Promise<void> {
    await q.query(
      `INSERT INTO gateway_tickets (id, ticket_hash, user_id, checkout_id, ephemeral_id, mode, public_key, issued_at, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [t.id, t.hash, t.userId, t.checkoutId, t.ephemeralId, t.mode, t.publicKey, t.issuedAt, t.expiresAt],
    );
  }

  /** A ticket that could still be spent (unused, not expired at `now`), without spending it: the publickey query step. */
  async usableTicket(q: Queryable, hash: Buffer, now: Date): Promise<TicketRow | null> {
    const [row] = (await q.query(
      `SELECT ${TICKET_COLUMNS} FROM gateway_tickets t WHERE t.ticket_hash = $1 AND t.used_at IS NULL AND t.expires_at > $2`,
      [hash, now],
    )) as TicketRow[];
    return row ?? null;
  }

  /** Spends a ticket of `mode`: one statement, unused, not expired at `now`, its user enabled. Null: nothing was spent. */
  async spendTicket(q: Queryable, hash: Buffer, mode: TicketMode, now: Date): Promise<TicketRow | null> {
    const [rows] = (await q.query(
      `UPDATE gateway_tickets t SET used_at = $2
        WHERE t.ticket_hash = $1 AND t.mode = $3 AND t.used_at IS NULL AND t.expires_at > $2 AND NOT ${userDisabledSql('t.user_id')}
        RETURNING ${TICKET_COLUMNS}`,
      [hash, now, mode],
    )) as [TicketRow[], number];
    return rows[0] ?? null;
  }

  /** Why a ticket cannot be spent now, for the refusal's audit event (never the ticket itself): its id when there is one. */
  async refusal(q: Queryable, hash: Buffer, mode: TicketMode, now: Date): Promise<{ ticketId: string | null; userId: string | null; why: string }> {
    const [row] = (await q.query(
      `SELECT t.id, t.user_id AS "userId", CASE WHEN t.used_at IS NOT NULL THEN 'used' WHEN t.expires_at <= $2 THEN 'expired'
                   WHEN t.mode <> $3 THEN 'wrong_method' WHEN ${userDisabledSql('t.user_id')} THEN 'user_disabled' ELSE 'refused' END AS why
         FROM gateway_tickets t WHERE t.ticket_hash = $1`,
      [hash, now, mode],
    )) as Array<{ id: string; userId: string; why: string }>;
    return row ? { ticketId: row.id, userId: row.userId, why: row.why } : { ticketId: null, userId: null, why: 'unknown' };
  }

  /** Forgets tickets that expired before `before` (spent or not: a spent one lives on as its session's ticket_id). */
  async purgeTickets(q: Queryable, before: Date): Promise<number> {
    const [, n] = (await q.query('DELETE FROM gateway_tickets WHERE expires_at < $1', [before])) as [unknown, number];
    return n;
  }

  // ---- sessions ----------------------------------------------------------------------------------------------

  async insertSession(q: Queryable, s: NewGatewaySession): Promise<void> {
    await q.query(
      `INSERT INTO gateway_sessions (id, ticket_id, user_id, checkout_id, ephemeral_id, target_id, account, instance_id, client_address, started_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
      [s.id, s.ticketId, s.userId, s.checkoutId, s.ephemeralId, s.targetId, s.account, s.instanceId, s.clientAddress, s.startedAt],
    );
  }

  async find(q: Queryable, id: string): Promise<GatewaySessionRow | null> {
    const [row] = (await q.query(`SELECT ${GATEWAY_SESSION_COLUMNS} FROM gateway_sessions s WHERE s.id = $1`, [id])) as GatewaySessionRow[];
    return row ?? null;
  }

  /**
   * Ends a live session once; answers the reason recorded, null when it had ended already. A session whose target side
   * closed (`upstream_closed`) after its grant ended — a check-in, revoke or expiry ends the account's sessions on the
   * target, which may close the connection before the gateway's end poll sees the grant end — is recorded with the
   * grant's reason: that is why it ended.
   */
  async end(q: Queryable, id: string, reason: SessionEndReason, at: Date): Promise<SessionEndReason | null> {
    const [rows] = (await q.query(
      `UPDATE gateway_sessions s SET ended_at = $3,
              end_reason = CASE WHEN $2 = 'upstream_closed' THEN COALESCE(${grantEndSql('s', '$3')}, $2) ELSE $2 END
        WHERE s.id = $1 AND s.ended_at IS NULL RETURNING s.end_reason AS "reason"`,
      [id, reason, at],
    )) as [Array<{ reason: SessionEndReason }>, number];
    return rows[0]?.reason ?? null;
  }

  /** An admin asks for the end of a live session (its instance closes it within a second); null: no such session or ended. */
  async requestEnd(q: Queryable, id: string, by: string, at: Date): Promise<Date | null> {
    const [rows] = (await q.query(
      `UPDATE gateway_sessions SET end_requested_at = COALESCE(end_requested_at, $3), end_requested_by = COALESCE(end_requested_by, $2)
        WHERE id = $1 AND ended_at IS NULL RETURNING end_requested_at AS "at"`,
      [id, by, at],
    )) as [Array<{ at: Date }>, number];
    return rows[0]?.at ?? null;
  }

  /** This instance still holds these sessions (they are not lost). */
  async touch(q: Queryable, ids: readonly string[]): Promise<void> {
    if (ids.length) await q.query('UPDATE gateway_sessions SET seen_at = now() WHERE id = ANY ($1::uuid[]) AND ended_at IS NULL', [ids]);
  }

  /**
   * Ends (reason `error`) live sessions no instance has stamped for `staleSeconds`: their instance died without
   * ending them. Answers them, for their audit events; each is ended once whichever instance gets there first.
   */
  async endLost(q: Queryable, staleSeconds: number, at: Date): Promise<Array<{ id: string; instanceId: string }>> {
    const [rows] = (await q.query(
      `UPDATE gateway_sessions SET ended_at = $2, end_reason = 'error'
        WHERE ended_at IS NULL AND seen_at < now() - make_interval(secs => $1) RETURNING id, instance_id AS "instanceId"`,
      [staleSeconds, at],
    )) as [Array<{ id: string; instanceId: string }>, number];
    return rows;
  }

  /**
   * Of these live sessions (this instance's), those that must end now and why: already ended in the database (taken
   * for lost while this instance could not stamp them), an admin asked (terminated), or the checkout / one-time
   * account they were opened for is no longer active or past its time (the owners' fragments).
   */
  async dueToEnd(q: Queryable, ids: readonly string[], now: Date): Promise<Array<{ id: string; reason: SessionEndReason }>> {
    if (ids.length === 0) return [];
    return (await q.query(
      `SELECT d.id, d.reason FROM (
         SELECT s.id, CASE WHEN s.ended_at IS NOT NULL THEN s.end_reason ELSE ${grantEndSql('s', '$2')} END AS reason
           FROM gateway_sessions s WHERE s.id = ANY ($1::uuid[])) d
        WHERE d.reason IS NOT NULL`,
      [ids, now],
    )) as Array<{ id: string; reason: SessionEndReason }>;
  }
}

/** Why a live session must end now (an admin's end request, or its checkout's or one-time account's end), else NULL. */
function grantEndSql(alias: string, nowParam: string): string {
  return `(CASE WHEN ${alias}.end_requested_at IS NOT NULL THEN 'terminated'
                WHEN ${alias}.checkout_id IS NOT NULL THEN ${checkoutSessionEndSql(`${alias}.checkout_id`, nowParam)}
                ELSE ${ephemeralSessionEndSql(`${alias}.ephemeral_id`, nowParam)} END)`;
}

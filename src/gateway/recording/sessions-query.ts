import type { Queryable } from '../../database/claimed-work';
import { decodeCursor, DEFAULT_PAGE_SIZE, Page, toPage } from '../../common/pagination';
import { gatewaySessionColumns, GatewaySessionRow } from '../gateway-store';

/** Reading `gateway_sessions` for the sessions API, with the columns its owner (../gateway-store.ts) names. */
export type { GatewaySessionRow };

export interface SessionFilter {
  /** Only this user's sessions (operators and vendors). */
  visibleTo: string | null;
  userId?: string;
  targetId?: string;
  checkoutId?: string;
  ephemeralId?: string;
  live?: boolean;
  limit?: number;
  cursor?: string;
}

/** Newest first, keyset on seq. */
export async function pageSessions(db: Queryable, f: SessionFilter): Promise<Page<GatewaySessionRow>> {
  const limit = f.limit ?? DEFAULT_PAGE_SIZE;
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, value: unknown) => {
    params.push(value);
    where.push(sql.replace('?', `$${params.length}`));
  };
  const cursor = decodeCursor(f.cursor, ['int64']);
  if (cursor) add('s.seq < ?::bigint', cursor[0]);
  if (f.visibleTo !== null) add('s.user_id = ?', f.visibleTo);
  if (f.userId) add('s.user_id = ?', f.userId);
  if (f.targetId) add('s.target_id = ?', f.targetId);
  if (f.checkoutId) add('s.checkout_id = ?', f.checkoutId);
  if (f.ephemeralId) add('s.ephemeral_id = ?', f.ephemeralId);
  if (f.live !== undefined) where.push(f.live ? 's.ended_at IS NULL' : 's.ended_at IS NOT NULL');
  params.push(limit + 1);
  const rows = (await db.query(
    `SELECT ${gatewaySessionColumns('s')} FROM gateway_sessions s ${where.length ? 'WHERE ' + where.join(' AND ') : ''}
      ORDER BY s.seq DESC LIMIT $${params.length}`,
    params,
  )) as GatewaySessionRow[];
  return toPage(rows, limit, (r) => [r.seq], (r) => r);
}

export async function findSession(db: Queryable, id: string): Promise<GatewaySessionRow | null> {
  const rows = (await db.query(`SELECT ${gatewaySessionColumns('s')} FROM gateway_sessions s WHERE s.id = $1`, [id])) as GatewaySessionRow[];
  return rows[0] ?? null;
}

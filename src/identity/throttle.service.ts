import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { DomainException } from '../common/errors';

/**
 * Attempt counters in the database (shared by every instance), in fixed windows that always expire.
 *
 * An attempt (a password at login, or a TOTP code at login, step-up or enrollment) is RESERVED before it is
 * evaluated: one transaction adds 1 to every key of the attempt, but only if each key is still under its limit
 * (conditional INSERT … ON CONFLICT DO UPDATE … WHERE failures < max RETURNING); if one key is full, nothing is
 * counted and the attempt is refused with 429 before argon2 or TOTP runs. So however many requests arrive at
 * once, at most `max` attempts per key and window are ever evaluated. A success, and a replay of an already
 * burned code (not a guess), give their reservation back; a failure keeps it until the window ends.
 *
 * Keys (for passwords and for codes separately, `kind` = `pw` | `mfa`):
 * - `pair:<kind>:<user>@<address>`: 10 per 15 minutes. What one address can try against one user.
 * - `user:<kind>:<user>`: 100 per hour, from everywhere. One address cannot fill it (at most 5 pair windows, so
 *   50 attempts, fit in one hour window), so an attacker at one address cannot lock the user out of another.
 * - `addr:<address>`: 30 per 15 minutes, for passwords of usernames that do not exist only: what one address may
 *   spray at names it guesses. Real users are never counted there, so nobody at a shared address (a NAT, a VPN) can
 *   lock everybody else there out, and step-up codes of a logged-in user never are.
 * `<user>` is the user id, or a keyed HMAC of a username that does not exist (no typed name is stored); `<address>` is
 * normalised (IPv4, or an IPv6 /64, or `invalid`: src/common/client-address.ts).
 */
export const THROTTLE_RULES = {
  pair: { max: 10, windowSeconds: 15 * 60 },
  user: { max: 100, windowSeconds: 60 * 60 },
  addr: { max: 30, windowSeconds: 15 * 60 },
} as const;
type Rule = keyof typeof THROTTLE_RULES;

export type AttemptKind = 'pw' | 'mfa';

export interface ThrottleSubject {
  /** A user id, or a keyed HMAC of a username that does not exist. */
  subject: string;
  address?: string;
  /** The username does not exist: its password attempts also count against the address. */
  unknownUser?: boolean;
}

/** A counted attempt: the window each key was counted in, so a give-back never takes from a later window. */
export interface Reservation {
  keys: string[];
  windows: string[];
  /** What each key counted in its window, this attempt included (as it was reserved). */
  counts: number[];
  released: boolean;
}

/** A counter and its limit: at most `max` in a window of `windowSeconds`. */
interface Limited {
  key: string;
  max: number;
  windowSeconds: number;
}

function keysOf(kind: AttemptKind, s: ThrottleSubject): Limited[] {
  const address = s.address || 'unknown';
  const keys: Array<{ key: string; rule: Rule }> = [
    ...(kind === 'pw' && s.unknownUser ? [{ key: `addr:${address}`, rule: 'addr' as const }] : []),
    { key: `pair:${kind}:${s.subject}@${address}`, rule: 'pair' as const },
    { key: `user:${kind}:${s.subject}`, rule: 'user' as const },
  ];
  return keys.map(({ key, rule }) => ({ key, ...THROTTLE_RULES[rule] })).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** A window's identity: its start in microseconds since the epoch (exact, unlike a JS Date). */
const WINDOW_ID = '(extract(epoch FROM window_start) * 1000000)::bigint::text';

/** SQLSTATE of the deliberate division by zero that refuses a reservation with a full key (see `reserve`). */
const DIVISION_BY_ZERO = '22012';

/** About one reservation in a hundred also clears out long-expired rows (pair keys are many: one per user and address). */
const SWEEP_CHANCE = 0.01;

@Injectable()
export class ThrottleService {
  constructor(private readonly dataSource: DataSource) {}

  /**
   * Counts one attempt against every key of the subject, atomically and before it is evaluated; throws 429
   * THROTTLED (with the seconds to wait) and counts nothing when any key is at its limit. Rows are locked in
   * key order (here and in `release`), so concurrent reservations cannot deadlock.
   */
  async reserve(kind: AttemptKind, s: ThrottleSubject): Promise<Reservation> {
    return this.count(keysOf(kind, s));
  }

  /**
   * One more anonymous request that makes the vault do work on someone's behalf (a single sign-on start: a row, and a
   * call to the identity provider), counted against `key` (`oidc-start:<address>`), at most `max` a minute; never
   * given back. 429 THROTTLED when full.
   */
  async limit(key: string, max: number, windowSeconds = 60): Promise<void> {
    await this.count([{ key, max, windowSeconds }]);
  }

  private async count(keys: Limited[]): Promise<Reservation> {
    let rows: Array<{ key: string; win: string; failures: number }>;
    try {
      // one statement, so one round trip and atomic without BEGIN/COMMIT: when some keys were counted and another was
      // full, the division by zero in the outer SELECT aborts the whole statement (the counted keys too), so a refused
      // attempt counts nowhere; when every key was full nothing was counted and no row comes back
      rows = await this.dataSource.query(
        `WITH counted AS (
           INSERT INTO auth_throttle (key, failures, window_start)
           SELECT k.key, 1, now() FROM unnest($1::text[], $2::int[], $3::int[]) AS k(key, max, secs) ORDER BY k.key COLLATE "C"
           ON CONFLICT (key) DO UPDATE SET
             failures = CASE WHEN auth_throttle.window_start + make_interval(secs => ($3::int[])[array_position($1::text[], auth_throttle.key)]) <= now()
                             THEN 1 ELSE auth_throttle.failures + 1 END,
             window_start = CASE WHEN auth_throttle.window_start + make_interval(secs => ($3::int[])[array_position($1::text[], auth_throttle.key)]) <= now()
                                 THEN now() ELSE auth_throttle.window_start END
           WHERE auth_throttle.window_start + make_interval(secs => ($3::int[])[array_position($1::text[], auth_throttle.key)]) <= now()
              OR auth_throttle.failures < ($2::int[])[array_position($1::text[], auth_throttle.key)]
           RETURNING key, failures, ${WINDOW_ID} AS win)
         SELECT key, failures, win, 1 / ((SELECT count(*) FROM counted) = cardinality($1::text[]))::int AS whole FROM counted`,
        [keys.map((k) => k.key), keys.map((k) => k.max), keys.map((k) => k.windowSeconds)],
      );
    } catch (e) {
      if ((e as { code?: string }).code !== DIVISION_BY_ZERO) throw e;
      rows = [];
    }
    if (rows.length !== keys.length) throw await this.throttled(keys);
    if (Math.random() < SWEEP_CHANCE) void this.sweep();
    const byKey = new Map(rows.map((r) => [r.key, r]));
    return { keys: keys.map((k) => k.key), windows: keys.map((k) => byKey.get(k.key)!.win), counts: keys.map((k) => byKey.get(k.key)!.failures), released: false };
  }

  /** Gives an attempt back (a success, or a replayed code): it no longer counts. Idempotent. */
  async release(r: Reservation | undefined): Promise<void> {
    if (!r || r.released) return;
    r.released = true;
    await this.decrement(this.dataSource.manager, r);
  }

  /**
   * The same inside the caller's transaction (`em`): the reservation counts as released only once that transaction
   * committed (the caller marks it: `r.released = true` in its after-commit hook), so a rollback leaves it to release.
   */
  async releaseOn(em: EntityManager, r: Reservation): Promise<void> {
    if (!r.released) await this.decrement(em, r);
  }

  private async decrement(em: EntityManager, r: Reservation): Promise<void> {
    await em.query(
      `WITH mine AS (
         SELECT t.key FROM auth_throttle t JOIN unnest($1::text[], $2::text[]) AS r(key, win) ON r.key = t.key
          WHERE (extract(epoch FROM t.window_start) * 1000000)::bigint::text = r.win
          ORDER BY t.key COLLATE "C" FOR UPDATE OF t)
       UPDATE auth_throttle SET failures = greatest(auth_throttle.failures - 1, 0) FROM mine WHERE auth_throttle.key = mine.key`,
      [r.keys, r.windows],
    );
  }

  /** How many attempts of this kind the user's own key (from everywhere) counted in its window, this one included. */
  userCount(r: Reservation, kind: AttemptKind, userId: string): number {
    return r.counts[r.keys.indexOf(`user:${kind}:${userId}`)] ?? 0;
  }

  /**
   * True the first time it is asked in the current window of the user's key (`user:<kind>:<id>`), false after: an
   * alert about a user's failures is raised once per window, by whichever instance asks first. A marker row
   * (`alert:<kind>:<id>`, no failures) carries the window it was raised in; run in the caller's transaction, so it is
   * kept only with the alert it allowed. Nothing is marked when the user's key has no window (nothing counted).
   */
  async firstAlertOfWindow(em: EntityManager, kind: AttemptKind, userId: string): Promise<boolean> {
    const rows: unknown[] = await em.query(
      `INSERT INTO auth_throttle (key, failures, window_start)
       SELECT $1, 0, t.window_start FROM auth_throttle t WHERE t.key = $2
       ON CONFLICT (key) DO UPDATE SET window_start = EXCLUDED.window_start WHERE auth_throttle.window_start < EXCLUDED.window_start
       RETURNING 1`,
      [`alert:${kind}:${userId}`, `user:${kind}:${userId}`],
    );
    return rows.length === 1;
  }

  /**
   * Housekeeping, now and then: rows whose window ended more than the longest window ago count for nothing and go.
   * Rows another transaction holds are skipped (never waited for), so the sweep cannot deadlock with a reservation.
   */
  private async sweep(): Promise<void> {
    await this.dataSource
      .query(
        `DELETE FROM auth_throttle WHERE key IN (
           SELECT key FROM auth_throttle WHERE window_start < now() - make_interval(secs => $1) LIMIT 1000 FOR UPDATE SKIP LOCKED)`,
        [Math.max(...Object.values(THROTTLE_RULES).map((r) => r.windowSeconds))],
      )
      .catch(() => undefined);
  }

  private async throttled(keys: Limited[]): Promise<DomainException> {
    const rows: Array<{ key: string; failures: number; elapsed: number }> = await this.dataSource.query(
      `SELECT key, failures, floor(extract(epoch FROM now() - window_start))::int AS elapsed FROM auth_throttle WHERE key = ANY($1)`,
      [keys.map((k) => k.key)],
    );
    let wait = 1;
    for (const row of rows) {
      const rule = keys.find((k) => k.key === row.key)!;
      const left = rule.windowSeconds - row.elapsed;
      if (row.failures >= rule.max && left > 0) wait = Math.max(wait, left);
    }
    return new DomainException('THROTTLED', `too many attempts; try again in ${wait} s`, { retryAfterSeconds: wait });
  }
}

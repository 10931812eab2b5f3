import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { DomainException } from '../common/errors';

/**
 * Failure counters in the database (shared by every instance), in fixed windows that always expire:
 * an address, a user, and a user's hourly cap. A locked key stays locked only until its window ends, so
 * nobody can lock a user out for ever; a success clears the user's short window.
 */
const RULES = {
  addr: { max: 30, windowSeconds: 15 * 60 },
  user: { max: 10, windowSeconds: 15 * 60 },
  'user-hour': { max: 30, windowSeconds: 60 * 60 },
} as const;
type Rule = keyof typeof RULES;

export interface ThrottleSubject {
  /** A user id, or a keyed HMAC of a username that does not exist. */
  subject: string;
  address?: string;
}

function keysOf(s: ThrottleSubject): Array<{ key: string; rule: Rule }> {
  const keys: Array<{ key: string; rule: Rule }> = [
    { key: `user:${s.subject}`, rule: 'user' },
    { key: `user-hour:${s.subject}`, rule: 'user-hour' },
  ];
  if (s.address) keys.push({ key: `addr:${s.address}`, rule: 'addr' });
  return keys;
}

@Injectable()
export class ThrottleService {
  constructor(private readonly dataSource: DataSource) {}

  /**
   * Throws 429 THROTTLED (with the seconds to wait) while any of the subject's keys is over its limit. Resolves to
   * whether the user has a short window to clear on success (most requests have none: no DELETE then).
   */
  async assertAllowed(s: ThrottleSubject): Promise<boolean> {
    const keys = keysOf(s);
    const rows: Array<{ key: string; failures: number; remaining: number }> = await this.dataSource.query(
      `SELECT key, failures, ceil(extract(epoch FROM window_start - now()))::int AS remaining FROM auth_throttle WHERE key = ANY($1)`,
      [keys.map((k) => k.key)],
    );
    let wait = 0;
    for (const row of rows) {
      const rule = RULES[keys.find((k) => k.key === row.key)!.rule];
      const left = row.remaining + rule.windowSeconds;
      if (row.failures >= rule.max && left > 0) wait = Math.max(wait, left);
    }
    if (wait > 0) {
      throw new DomainException(429, 'THROTTLED', `too many failed attempts; try again in ${wait} s`, { retryAfterSeconds: wait });
    }
    return rows.some((r) => r.key === `user:${s.subject}`);
  }

  /** Counts one failure against every key (outside any request transaction, so it sticks). */
  async recordFailure(s: ThrottleSubject): Promise<void> {
    for (const { key, rule } of keysOf(s)) {
      await this.dataSource.query(
        `INSERT INTO auth_throttle (key, failures, window_start) VALUES ($1, 1, now())
         ON CONFLICT (key) DO UPDATE SET
           failures = CASE WHEN auth_throttle.window_start + make_interval(secs => $2) <= now() THEN 1 ELSE auth_throttle.failures + 1 END,
           window_start = CASE WHEN auth_throttle.window_start + make_interval(secs => $2) <= now() THEN now() ELSE auth_throttle.window_start END`,
        [key, RULES[rule].windowSeconds],
      );
    }
  }

  /** After a success: the user's short window starts over (the hourly cap and the address keep counting). */
  async recordSuccess(s: ThrottleSubject): Promise<void> {
    await this.dataSource.query('DELETE FROM auth_throttle WHERE key = $1', [`user:${s.subject}`]);
  }
}

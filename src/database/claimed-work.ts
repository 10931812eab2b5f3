import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { BeforeApplicationShutdown, Global, Inject, Injectable, Logger, Module } from '@nestjs/common';
import { DomainException } from '../common/errors';
import { APP_CONFIG, AppConfig, CrashPointName } from '../config/config';
import { sqlIdentifier, sqlTable } from './sql-names';

/**
 * Claimed background work: the one way the vault's sweeps (rotation recovery, scheduled rotation, heartbeat,
 * checkout expiry and cleanup, the one-time account reaper) take work that several instances share.
 *
 * - Work is claimed in the database: a row carries its claimant (`claimed_by`, this process's INSTANCE_ID) and a
 *   deadline (`claimed_until`). `claimBatch` takes unclaimed (or lapsed) rows with `FOR UPDATE SKIP LOCKED`, so two
 *   instances never take the same row; `renew` extends a claim only while this instance still holds it and it has
 *   not lapsed, which a claimant checks right before it touches a target.
 * - `drain` runs a sweep: take one item at a time (each in its own transaction), run a batch of them together,
 *   repeat. One item that fails never stops the rest of its batch or the batches after it; only the database itself
 *   failing (`take` throwing anything but SkipItem) stops the sweep, which the next tick retries.
 * - Failures retry after `backoffSeconds` (capped, jittered).
 * - `crash` is the crash-matrix tests' hook: the process SIGKILLs itself where VAULT_CRASH_POINT says.
 */

/** This process's claimant id: `<hostname>:<pid>:<8 random hex>`, one per process. */
export const INSTANCE_ID = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;

/** Where the vault can be made to die (tests only, VAULT_CRASH_POINT; the list lives in config). */
export type CrashPoint = CrashPointName;

/**
 * The wait before attempt `attempt + 1` after `attempt` failures (1-based): `min(cap, base * 2^(attempt-1))`, jittered
 * down to between half and all of it, so instances that failed together do not retry together.
 */
export function backoffSeconds(attempt: number, o: { baseSeconds: number; capSeconds: number }): number {
  const full = Math.min(o.capSeconds, o.baseSeconds * 2 ** (Math.max(1, attempt) - 1));
  return full * (0.5 + Math.random() / 2);
}

/** Thrown by a drain's `take` when it found an item but could not take it: the item is skipped for this drain. */
export class SkipItem extends Error {
  constructor(
    readonly key: string,
    override readonly cause: unknown,
  ) {
    super(`skipped ${key}`);
    this.name = 'SkipItem';
  }
}

export interface DrainOptions<T> {
  /** For logs ("rotation-recovery", "checkout-expiry", …). */
  name: string;
  /**
   * Claims ONE item (its own transaction, SKIP LOCKED) that is not in `skip`; null when none is left. Throws
   * SkipItem(key) when it found an item it cannot take; any other throw means the database failed and ends the drain.
   */
  take(skip: readonly string[]): Promise<T | null>;
  key(item: T): string;
  /** The work on one item. A throw is logged (the item's key and the error's type, never its message) and the batch goes on. */
  run(item: T): Promise<void>;
  /** Items run in parallel per round. */
  batchSize: number;
  /** At most this many items per drain. */
  limit: number;
}

/** What runs a statement: a DataSource or a transaction's EntityManager. */
export interface Queryable {
  query(sql: string, params?: unknown[]): Promise<unknown>;
}

export interface ClaimColumns {
  /** Default `claimed_by`. */
  claimedBy?: string;
  /** Default `claimed_until`. */
  claimedUntil?: string;
}

export interface ClaimBatchOptions extends ClaimColumns {
  /** The table (owned by the caller's module), optionally with an alias: `checkouts c`. */
  table: string;
  /** Which rows may be taken; `$1…$n` are `params`. Must exclude rows whose claim has not lapsed. */
  where: string;
  orderBy: string;
  limit: number;
  /** How long the claim lasts. */
  seconds: number;
  /** The RETURNING list (`id, account_id AS "accountId"`). */
  returning: string;
  params?: unknown[];
  /** More assignments made with the claim (`version = version + 1`), optional. */
  set?: string;
  /**
   * Optional: a SELECT over the claimed rows (the RETURNING list, as a CTE named `claimed`) answered instead of them,
   * so what the work needs from other tables comes in the same round trip.
   */
  select?: string;
}

export interface RenewOptions extends ClaimColumns {
  table: string;
  id: string;
  /** A further condition (`status = 'pending'`), literal SQL without parameters. */
  where?: string;
  seconds: number;
}

/** Logs an error by its type (and stable code), never its message: a driver's or target's text may hold a secret. */
export function errorType(e: unknown): { type: string; code?: string } {
  const type = e instanceof Error ? e.name : typeof e;
  return e instanceof DomainException ? { type, code: e.code } : { type };
}


/**
 * Target work a service runs after its transaction committed (rotations, session cleanup, account removal): tracked
 * so that shutdown waits for it instead of closing the database under it.
 */
class BackgroundWork {
  private readonly running = new Set<Promise<unknown>>();

  async track<T>(p: Promise<T>): Promise<T> {
    this.running.add(p);
    try {
      return await p;
    } finally {
      this.running.delete(p);
    }
  }

  async settle(): Promise<void> {
    while (this.running.size) await Promise.allSettled([...this.running]);
  }
}

@Injectable()
export class ClaimedWork implements BeforeApplicationShutdown {
  readonly instanceId = INSTANCE_ID;
  private readonly logger = new Logger(ClaimedWork.name);
  private readonly background = new BackgroundWork();

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

  /**
   * One sweep: takes up to `batchSize` items (one `take` each), runs them together (tracked: shutdown waits for
   * them), and repeats until `take` finds nothing or `limit` items were taken. Returns how many were taken.
   * An item whose `run` throws is logged and skipped for the rest of this drain; a `take` that throws SkipItem
   * skips that key; any other `take` error propagates after the running batch has finished.
   */
  async drain<T>(o: DrainOptions<T>): Promise<number> {
    const skip: string[] = [];
    let total = 0;
    let exhausted = false;
    while (!exhausted && total < o.limit) {
      const batch: T[] = [];
      while (batch.length < Math.max(1, o.batchSize) && total + batch.length < o.limit) {
        let item: T | null;
        try {
          item = await o.take(skip);
        } catch (e) {
          if (!(e instanceof SkipItem)) {
            // the database failed: what was taken still runs (its claim is ours), then the sweep stops
            if (batch.length) await this.runBatch(o, batch, skip);
            throw e;
          }
          this.logger.warn({ work: o.name, key: e.key, err: errorType(e.cause) }, 'an item could not be taken; skipped this sweep');
          skip.push(e.key);
          continue;
        }
        if (item === null) {
          exhausted = true;
          break;
        }
        batch.push(item);
      }
      if (batch.length === 0) break;
      total += batch.length;
      await this.runBatch(o, batch, skip);
    }
    return total;
  }

  /**
   * Claims up to `limit` rows of `table` matching `where` for this instance, with SKIP LOCKED (rows another
   * transaction is claiming right now are passed over, never waited for):
   *
   *     UPDATE <table> SET <claimed_by> = INSTANCE_ID, <claimed_until> = now() + seconds [, <set>]
   *      WHERE id IN (SELECT id FROM <table> WHERE <where> ORDER BY <orderBy> LIMIT <limit> FOR UPDATE SKIP LOCKED)
   *      RETURNING <returning>
   */
  async claimBatch<R>(q: Queryable, o: ClaimBatchOptions): Promise<R[]> {
    const params = o.params ?? [];
    const n = params.length;
    const table = sqlTable(o.table);
    const alias = table.includes(' ') ? `${table.split(' ')[1]}.` : '';
    const sql =
      `UPDATE ${table} SET ${sqlIdentifier(o.claimedBy ?? 'claimed_by')} = $${n + 1}, ${sqlIdentifier(o.claimedUntil ?? 'claimed_until')} = now() + make_interval(secs => $${n + 2})` +
      (o.set ? `, ${o.set}` : '') +
      ` WHERE ${alias}id IN (SELECT ${alias}id FROM ${table} WHERE ${o.where} ORDER BY ${o.orderBy} LIMIT $${n + 3} FOR UPDATE SKIP LOCKED)` +
      ` RETURNING ${o.returning}`;
    const args = [...params, this.instanceId, o.seconds, o.limit];
    if (o.select) return (await q.query(`WITH claimed AS (${sql}) ${o.select}`, args)) as R[];
    const result = (await q.query(sql, args)) as [R[], number];
    return result[0];
  }

  /**
   * Extends this instance's claim on one row, only while it still holds it and it has not lapsed (and `where`
   * holds). False when the claim lapsed or another instance took it over: the caller must not touch the target then.
   */
  async renew(q: Queryable, o: RenewOptions): Promise<boolean> {
    const by = sqlIdentifier(o.claimedBy ?? 'claimed_by');
    const until = sqlIdentifier(o.claimedUntil ?? 'claimed_until');
    const sql =
      `UPDATE ${sqlIdentifier(o.table)} SET ${until} = now() + make_interval(secs => $3)` +
      ` WHERE id = $1 AND ${by} = $2 AND ${until} > now()` +
      (o.where ? ` AND (${o.where})` : '');
    const result = (await q.query(sql, [o.id, this.instanceId, o.seconds])) as [unknown, number];
    return result[1] === 1;
  }

  /** Runs `p` tracked, so that `settle` (shutdown) waits for it. */
  track<T>(p: Promise<T>): Promise<T> {
    return this.background.track(p);
  }

  /** Waits for tracked work (shutdown, tests). */
  settle(): Promise<void> {
    return this.background.settle();
  }

  /** Before the database is closed (onApplicationShutdown is when TypeORM closes it): running work finishes first. */
  beforeApplicationShutdown(): Promise<void> {
    return this.settle();
  }

  /** Tests only: SIGKILLs this process when VAULT_CRASH_POINT names `point`. */
  crash(point: CrashPoint): void {
    if (this.config.crashPoint === point) process.kill(process.pid, 'SIGKILL');
  }

  private async runBatch<T>(o: DrainOptions<T>, batch: T[], skip: string[]): Promise<void> {
    await this.track(
      Promise.all(
        batch.map(async (item) => {
          try {
            await o.run(item);
          } catch (e) {
            const key = o.key(item);
            skip.push(key);
            this.logger.warn({ work: o.name, key, err: errorType(e) }, 'an item failed; the rest of the sweep goes on');
          }
        }),
      ),
    );
  }
}

/** Global: every feature module's sweeps share the one ClaimedWork (one instance id, one set of tracked work). */
@Global()
@Module({ providers: [ClaimedWork], exports: [ClaimedWork] })
export class ClaimedWorkModule {}

import { Global, Injectable, Module } from '@nestjs/common';
import { DataSource, EntityManager, QueryRunner } from 'typeorm';

/**
 * One database transaction as the application sees it: the entity manager every statement of the change runs on,
 * plus what the participants add. Participants are other modules that join every transaction (the audit module adds
 * `audit`, so a change and its events commit or fail together); they extend this interface by declaration merging:
 *
 *     declare module '../database/unit-of-work' { interface Tx { audit: (input: AuditInput) => Promise<string> } }
 *
 * so the database layer knows none of them.
 */
export interface Tx {
  readonly em: EntityManager;
  /**
   * Runs `fn` after the work, right before COMMIT, in the transaction (hooks in the order they were added; a hook added
   * by a hook runs too). A throwing `fn` rolls the transaction back and the unit of work throws.
   */
  beforeCommit(fn: () => Promise<void>): void;
  /** Runs `fn` after the transaction committed (never when it rolled back). A throwing `fn` is ignored. */
  afterCommit(fn: () => void): void;
  /** Runs `fn` after the transaction rolled back (the work threw, or the commit failed). A throwing `fn` is ignored. */
  afterRollback(fn: () => void): void;
}

/**
 * A module that joins every unit of work: it adds its members to the transaction and may hook its commit. `begin`, when
 * a participant has it, runs inside the transaction after every participant joined and before the work (the MFA
 * module burns a step-up code there, so the burn and the action commit or roll back together).
 */
export interface TxParticipant {
  join(tx: Tx): void;
  /**
   * A parameterless query sent in the same round trip as the transaction's BEGIN (a simple-protocol batch), its rows
   * handed to `withBegin.rows` before `begin` runs: the audit module takes its event ids there, so an event costs one
   * round trip (its INSERT). Read-only, no parameters: the text is fixed at registration.
   */
  readonly withBegin?: { sql: string; rows(tx: Tx, rows: Array<Record<string, unknown>>): void };
  begin?(tx: Tx): Promise<void>;
}

/**
 * The unit of work: `run` is the one way to make a change. It opens a transaction, lets every registered participant
 * join it (audit first: "no change without its audit event"), runs the work, commits, then runs the after-commit
 * hooks. Participants register at module init (`UnitOfWork.register`).
 */
@Injectable()
export class UnitOfWork {
  private readonly participants: TxParticipant[] = [];

  constructor(private readonly dataSource: DataSource) {}

  register(participant: TxParticipant): void {
    if (!this.participants.includes(participant)) this.participants.push(participant);
  }

  async run<T>(work: (tx: Tx) => Promise<T>): Promise<T> {
    const hooks: Array<() => void> = [];
    const undo: Array<() => void> = [];
    const last: Array<() => Promise<void>> = [];
    let result: T;
    const qr = this.dataSource.createQueryRunner();
    try {
      const preludes = await this.begin(qr);
      try {
        const tx = {
          em: qr.manager,
          beforeCommit: (fn: () => Promise<void>) => void last.push(fn),
          afterCommit: (fn: () => void) => void hooks.push(fn),
          afterRollback: (fn: () => void) => void undo.push(fn),
        } as Tx;
        for (const p of this.participants) p.join(tx);
        preludes.forEach(([p, rows]) => p.withBegin!.rows(tx, rows));
        for (const p of this.participants) if (p.begin) await p.begin(tx);
        result = await work(tx);
        for (let i = 0; i < last.length; i++) await last[i]();
        await qr.commitTransaction();
      } catch (e) {
        // the original error is what the caller sees, whatever the rollback does (a broken connection is discarded)
        await qr.rollbackTransaction().catch(() => undefined);
        throw e;
      }
    } catch (e) {
      runAll(undo);
      throw e;
    } finally {
      await qr.release().catch(() => undefined);
    }
    // after-commit hooks are nudges (seal soon, deliver soon) and state changes; the change itself is committed
    runAll(hooks);
    return result;
  }

  /**
   * BEGIN and the participants' `withBegin` queries in one round trip (simple protocol: one message, several
   * statements, executed in order, in the transaction they open), then hands TypeORM's query runner the open
   * transaction as if its own startTransaction had opened it (commit/rollback and nested savepoints work as usual).
   */
  private async begin(qr: QueryRunner): Promise<Array<[TxParticipant, Array<Record<string, unknown>>]>> {
    const withBegin = this.participants.filter((p) => p.withBegin);
    const client = (await qr.connect()) as { query(sql: string): Promise<PgResult | PgResult[]> };
    const sql = ['START TRANSACTION', ...withBegin.map((p) => p.withBegin!.sql)].join('; ');
    let results: PgResult | PgResult[];
    try {
      results = await client.query(sql);
    } catch (e) {
      // a statement after START TRANSACTION failed: the session is in an aborted transaction; end it before release
      await client.query('ROLLBACK').catch(() => undefined);
      throw e;
    }
    const list = Array.isArray(results) ? results : [results];
    const open = qr as unknown as { isTransactionActive: boolean; transactionDepth: number };
    open.isTransactionActive = true;
    open.transactionDepth = 1;
    return withBegin.map((p, i) => [p, list[i + 1]?.rows ?? []]);
  }
}

/**
 * True while `em` (a unit of work's entity manager) runs inside a nested `em.transaction` (a savepoint): what is written
 * there must be written there, so that a rollback to the savepoint takes it back with the rest (the audit module writes
 * such events at once instead of buffering them for the flush before COMMIT). The depth is TypeORM's own count, which
 * `begin` sets by hand for the transaction it opens.
 */
export function inSavepoint(em: EntityManager): boolean {
  return ((em.queryRunner as unknown as { transactionDepth?: number } | undefined)?.transactionDepth ?? 0) > 1;
}

/** What node-postgres answers for one statement of a simple-protocol query. */
interface PgResult {
  rows: Array<Record<string, unknown>>;
}

function runAll(fns: Array<() => void>): void {
  for (const fn of fns) {
    try {
      fn();
    } catch {
      // a hook's failure changes nothing about the transaction's outcome
    }
  }
}

@Global()
@Module({ providers: [UnitOfWork], exports: [UnitOfWork] })
export class UnitOfWorkModule {}

import { Global, Injectable, Module } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';

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
    let result: T;
    try {
      result = await this.dataSource.transaction(async (em) => {
        const tx = { em, afterCommit: (fn: () => void) => void hooks.push(fn), afterRollback: (fn: () => void) => void undo.push(fn) } as Tx;
        for (const p of this.participants) p.join(tx);
        for (const p of this.participants) if (p.begin) await p.begin(tx);
        return work(tx);
      });
    } catch (e) {
      runAll(undo);
      throw e;
    }
    // after-commit hooks are nudges (seal soon, deliver soon) and state changes; the change itself is committed
    runAll(hooks);
    return result;
  }
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

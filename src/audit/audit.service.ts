import { Injectable } from '@nestjs/common';
import { EntityManager } from 'typeorm';
import { inSavepoint, Tx, TxParticipant, UnitOfWork } from '../database/unit-of-work';
import { Clock } from '../common/clock';
import { toStorable } from '../common/text';
import { KeyringService } from '../crypto/keyring.service';
import { eventMac, sensitiveHmac } from './audit-chain';
import { AuditInput } from './audit.types';
import { AuditSealer } from './audit-sealer.service';

/** Event ids taken with each transaction's BEGIN (one round trip): enough for the hot paths' events; more are fetched. */
const IDS_WITH_BEGIN = 4;
/** The ids a transaction took with its BEGIN and has not used yet (ascending). */
const spareIds = new WeakMap<EntityManager, string[]>();

/** One audit_events row as inserted: id, at, type, actor_id, subject_type, subject_id, outcome, details, mac. */
type AuditRow = unknown[];

/** What a unit of work's `audit` member does: records one event in that transaction. */
export type AuditFn = (input: AuditInput) => Promise<string>;

declare module '../database/unit-of-work' {
  interface Tx {
    /** Records an audit event in this transaction (the audit module joins every unit of work). */
    audit: AuditFn;
  }
}

/**
 * Writes audit events inside the caller's transaction, so the event and the change commit or fail together. It is a
 * participant of every unit of work (`src/database/unit-of-work.ts`): `tx.audit(event)` records in that transaction,
 * and the sealer is nudged after commit.
 */
@Injectable()
export class AuditService implements TxParticipant {
  constructor(
    private readonly uow: UnitOfWork,
    private readonly keyring: KeyringService,
    private readonly sealer: AuditSealer,
    private readonly clock: Clock,
  ) {
    uow.register(this);
  }

  readonly withBegin = {
    sql: `SELECT nextval('audit_events_id_seq')::text AS id FROM generate_series(1, ${IDS_WITH_BEGIN})`,
    rows: (tx: Tx, rows: Array<Record<string, unknown>>) => void spareIds.set(tx.em, rows.map((r) => String(r.id)).sort(byNumber)),
  };

  /**
   * `tx.audit(event)` gives the event its id and MAC at once (ids taken with BEGIN while they last) and writes every
   * event of the transaction in one INSERT right before COMMIT (`beforeCommit`): a unit of work costs one audit round
   * trip whatever its number of events, and the events commit or roll back with the change as before. An event
   * recorded after that flush (by a later before-commit hook), or inside a savepoint (a nested `em.transaction`: a
   * rollback to it must take the event back too), is written at once.
   */
  join(tx: Tx): void {
    const pending: AuditRow[] = [];
    let flushed = false;
    tx.audit = async (input) => {
      const [row] = this.rowsOf(await this.idsFor(tx.em, 1), [input]);
      // inside a savepoint the event is written there, so a rollback to it takes the event back with its change
      if (flushed || inSavepoint(tx.em)) await this.insert(tx.em, [row]);
      else pending.push(row);
      return row[0] as string;
    };
    tx.beforeCommit(async () => {
      flushed = true;
      await this.insert(tx.em, pending.splice(0));
    });
    tx.afterCommit(() => this.sealer.nudge());
  }

  async record(em: EntityManager, input: AuditInput): Promise<string> {
    return (await this.recordMany(em, [input]))[0];
  }

  /**
   * Several events in one INSERT whatever their number, in the given order, at once (outside the buffering of
   * `tx.audit`). Their ids come from those the unit of work took with its BEGIN (`withBegin`) while they last, so an
   * event costs one round trip; beyond them (or on an entity manager outside a unit of work) one more takes the rest.
   */
  async recordMany(em: EntityManager, inputs: AuditInput[]): Promise<string[]> {
    if (inputs.length === 0) return [];
    const rows = this.rowsOf(await this.idsFor(em, inputs.length), inputs);
    await this.insert(em, rows);
    return rows.map((r) => r[0] as string);
  }

  /** `n` fresh event ids, ascending: the spare ones `em`'s unit of work took with BEGIN first. */
  private async idsFor(em: EntityManager, n: number): Promise<string[]> {
    const spare = spareIds.get(em);
    const ids = (spare ?? []).splice(0, n);
    if (ids.length < n) {
      // in a unit of work, as many more as BEGIN took, at least: the next events need no round trip for theirs
      const more = spare ? Math.max(n - ids.length, IDS_WITH_BEGIN) : n - ids.length;
      const rows: Array<{ id: string }> = await em.query("SELECT nextval('audit_events_id_seq')::text AS id FROM generate_series(1, $1)", [more]);
      const fresh = rows.map((r) => r.id).sort(byNumber);
      ids.push(...fresh.splice(0, n - ids.length));
      spare?.push(...fresh);
    }
    return ids;
  }

  /** The rows of `inputs` (ids given), each with its MAC over exactly what PostgreSQL will give back. */
  private rowsOf(ids: string[], inputs: AuditInput[]): AuditRow[] {
    const at = this.clock.now();
    const key = this.keyring.auditKey();
    return inputs.map((input, i) => {
      // toStorable: what is MACed must be exactly what PostgreSQL gives back (no NUL, no lone surrogates)
      const event = toStorable({
        id: ids[i],
        at,
        type: input.type,
        actorId: input.actor?.id ?? null,
        subjectType: input.subjectType,
        subjectId: input.subjectId ?? null,
        outcome: input.outcome ?? 'success',
        // JSON round trip now, so the MAC covers exactly what jsonb will give back
        details: JSON.parse(JSON.stringify(input.details ?? {})) as Record<string, unknown>,
      });
      return [event.id, event.at, event.type, event.actorId, event.subjectType, event.subjectId, event.outcome, JSON.stringify(event.details), eventMac(key, event)];
    });
  }

  private async insert(em: EntityManager, rows: AuditRow[]): Promise<void> {
    if (rows.length === 0) return;
    const params: unknown[] = [];
    const values = rows.map((row) => {
      const placeholders = row.map((_, j) => `$${params.length + j + 1}`);
      params.push(...row);
      return `(${placeholders.join(', ')})`;
    });
    await em.query(`INSERT INTO audit_events (id, at, type, actor_id, subject_type, subject_id, outcome, details, mac) VALUES ${values.join(', ')}`, params);
  }

  /** Records a single event on its own (failed logins, denied actions). */
  async recordAlone(input: AuditInput): Promise<string> {
    return this.uow.run((tx) => tx.audit(input));
  }

  hmacOf(value: string): string {
    return sensitiveHmac(this.keyring.auditKey(), value);
  }
}

function byNumber(a: string, b: string): number {
  return BigInt(a) < BigInt(b) ? -1 : BigInt(a) > BigInt(b) ? 1 : 0;
}

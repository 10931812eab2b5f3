import { BeforeApplicationShutdown, Injectable, Logger } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { KeyringService } from '../crypto/keyring.service';
import { ClaimedWork } from '../database/claimed-work';
import { ChainHead, chainLink, GENESIS_HASH, headMac } from './audit-chain';

/** Held by whoever links events into the chain: the sealer (try-lock, per pass) or verify (waits). */
export const SEAL_LOCK = 7_301_002;
const BATCH = 1000;
/**
 * How long a nudge waits before its pass: the events of every commit in that time are linked in one pass (a pass is
 * five statements in a transaction of its own). Events are MACed as they commit; the link follows within this delay.
 */
const NUDGE_DELAY_MS = 200;

/**
 * Links committed audit events into the hash chain. Only one sealer works at a time across all
 * instances (transaction-scoped advisory lock; the others skip). Request transactions never wait on it:
 * they only insert their event with its MAC.
 */
@Injectable()
export class AuditSealer implements BeforeApplicationShutdown {
  private readonly logger = new Logger(AuditSealer.name);
  private running: Promise<void> | null = null;
  private again = false;
  private closed = false;
  private closing = false;

  constructor(
    private readonly dataSource: DataSource,
    private readonly keyring: KeyringService,
    private readonly work: ClaimedWork,
  ) {}

  /** Asks for a sealing pass soon; calls made while one runs are folded into one more pass. */
  nudge(): void {
    if (this.closed || this.closing) return;
    if (this.running) {
      this.again = true;
      return;
    }
    // a short delay folds the events of many concurrent commits into one sealing pass
    this.running = new Promise<void>((resolve) => setTimeout(resolve, NUDGE_DELAY_MS))
      .then(() => this.sealPending())
      .then(
        () => undefined,
        (e: unknown) => this.logger.warn({ err: { type: (e as Error)?.name } }, 'audit sealing pass failed; will retry'),
      )
      .finally(() => {
        this.running = null;
        if (this.again) {
          this.again = false;
          this.nudge();
        }
      });
  }

  /** Seals everything committed so far; returns how many events it linked (0 if another instance holds the lock). */
  async sealPending(): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await this.dataSource.transaction(async (em) => {
        const [{ locked }] = await em.query('SELECT pg_try_advisory_xact_lock($1) AS locked', [SEAL_LOCK]);
        return locked ? this.sealBatch(em) : -1;
      });
      if (n < 0) return total;
      total += n;
      if (n < BATCH) return total;
    }
  }

  /**
   * Before the database is closed (onApplicationShutdown is when TypeORM closes it): the background work still running
   * (rotations, session cleanups, removals — ClaimedWork, a global module whose own hook runs after this one) commits
   * its last events first, then every sealing pass asked for so far runs, so nothing this instance wrote stays unsealed.
   */
  async beforeApplicationShutdown(): Promise<void> {
    await this.work.settle();
    // from now on nudges start no pass (sweeps still committing every few hundred milliseconds would otherwise keep a
    // pass pending for as long as they run): the running pass ends, then one last pass seals everything committed
    this.closing = true;
    while (this.running) await this.running;
    await this.sealPending().catch((e: unknown) => this.logger.warn({ err: { type: (e as Error)?.name } }, 'the last audit sealing pass failed; the next start seals'));
    this.closed = true;
  }

  /** Seals every unsealed event `em` can see. The caller holds SEAL_LOCK. */
  async sealAllLocked(em: EntityManager): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await this.sealBatch(em);
      total += n;
      if (n < BATCH) return total;
    }
  }

  private async sealBatch(em: EntityManager): Promise<number> {
    const rows: Array<{ id: string; mac: Buffer }> = await em.query(
      // e.id, not the text alias id: seal in numeric id order
      'SELECT e.id::text AS id, e.mac FROM audit_events e WHERE e.seq IS NULL ORDER BY e.id LIMIT $1',
      [BATCH],
    );
    if (rows.length === 0) return 0;
    const key = this.keyring.auditKey();
    const head = await readHead(em, true);
    let seq = BigInt(head?.seq ?? '0');
    let hash = head?.hash ?? GENESIS_HASH;
    const ids: string[] = [];
    const seqs: string[] = [];
    const hashes: Buffer[] = [];
    for (const row of rows) {
      seq += 1n;
      hash = chainLink(key, hash, seq, row.mac);
      ids.push(row.id);
      seqs.push(seq.toString());
      hashes.push(hash);
    }
    await em.query(
      `UPDATE audit_events AS e SET seq = v.seq, chain_hash = v.hash
         FROM unnest($1::bigint[], $2::bigint[], $3::bytea[]) AS v(id, seq, hash)
        WHERE e.id = v.id`,
      [ids, seqs, hashes],
    );
    await em.query(
      `INSERT INTO audit_chain_head (id, seq, hash, mac) VALUES (1, $1, $2, $3)
       ON CONFLICT (id) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash, mac = EXCLUDED.mac`,
      [seq.toString(), hash, headMac(key, seq, hash)],
    );
    return rows.length;
  }
}

export async function readHead(em: EntityManager, forUpdate = false): Promise<ChainHead | null> {
  const rows: Array<{ seq: string; hash: Buffer; mac: Buffer }> = await em.query(
    `SELECT seq::text AS seq, hash, mac FROM audit_chain_head WHERE id = 1${forUpdate ? ' FOR UPDATE' : ''}`,
  );
  return rows[0] ?? null;
}

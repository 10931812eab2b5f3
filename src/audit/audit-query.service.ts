import { Inject, Injectable, Logger } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '../config/config';
import { DataSource, EntityManager } from 'typeorm';
import { decodeCursor, DEFAULT_PAGE_SIZE, Page, toPage } from '../common/pagination';
import { KeyringService } from '../crypto/keyring.service';
import { DomainException, Errors } from '../common/errors';
import { errorType } from '../database/claimed-work';
import { UnitOfWork } from '../database/unit-of-work';
import { timingSafeEqual } from 'node:crypto';
import { ChainAnchor, chainLink, ChainVerifier, eventMac, GENESIS_HASH, StoredAuditEvent, VerifyResult } from './audit-chain';
import { AuditSealer, readHead, SEAL_LOCK } from './audit-sealer.service';
import { AuditEventView, AuditListQuery, mapAuditEvent } from './audit.dto';

/**
 * `id` and `seq` come back as text (bigint does not fit a JS number), so every ORDER BY below names the table's
 * columns (`e.id`, `e.seq`): a bare `ORDER BY id` would sort by the text alias, putting "10" before "9".
 */
const COLUMNS = `id::text AS id, at, type, actor_id AS "actorId", subject_type AS "subjectType",
  subject_id AS "subjectId", outcome, details, mac, seq::text AS seq, chain_hash AS "chainHash"`;
const VERIFY_BATCH = 2000;
/** How often a waiting verify tries the sealing lock again (on a connection it takes for the try only). */
const LOCK_POLL_MS = 100;
/** What a client is told to wait when verify cannot run now. */
export const VERIFY_RETRY_AFTER_SECONDS = 5;

/** 503 UNAVAILABLE with `retryAfterSeconds` (the controller sets Retry-After from it). */
function verifyUnavailable(message: string): DomainException {
  return new DomainException('UNAVAILABLE', message, { retryAfterSeconds: VERIFY_RETRY_AFTER_SECONDS });
}

/** Reading and verifying the audit log. */
/** How often, and how far apart, `vouched` tries to seal an event another sealing pass is holding up (≤ 2 s). */
const VOUCH_SEAL_TRIES = 20;
const VOUCH_SEAL_PAUSE_MS = 100;

@Injectable()
export class AuditQueryService {
  private readonly logger = new Logger(AuditQueryService.name);
  /** A verify runs on this instance (at most one at a time). */
  private verifying = false;

  /**
   * Whether the vault was ever set up (identity answers: a user exists; the bootstrap admin is created together with
   * its audit event). Registered by the module that owns the users table; until then the vault counts as set up, so an
   * emptied log is reported rather than excused.
   */
  private initialised: (em: EntityManager) => Promise<boolean> = async () => true;

  whenInitialised(check: (em: EntityManager) => Promise<boolean>): void {
    this.initialised = check;
  }

  constructor(
    private readonly dataSource: DataSource,
    private readonly keyring: KeyringService,
    private readonly sealer: AuditSealer,
    private readonly uow: UnitOfWork,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** Newest first, keyset on id. */
  async list(q: AuditListQuery): Promise<Page<AuditEventView>> {
    const limit = q.limit ?? DEFAULT_PAGE_SIZE;
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (sql: string, value: unknown) => {
      params.push(value);
      where.push(sql.replace('?', `$${params.length}`));
    };
    const cursor = decodeCursor(q.cursor, ['int64']);
    if (cursor) add('id < ?::bigint', cursor[0]);
    if (q.type) add('type = ?', q.type);
    if (q.subjectType) add('subject_type = ?', q.subjectType);
    if (q.subjectId) add('subject_id = ?', q.subjectId);
    if (q.actorId) add('actor_id = ?', q.actorId);
    params.push(limit + 1);
    const rows: StoredAuditEvent[] = await this.dataSource.query(
      `SELECT ${COLUMNS} FROM audit_events e ${where.length ? 'WHERE ' + where.join(' AND ') : ''}
        ORDER BY e.id DESC LIMIT $${params.length}`,
      params,
    );
    return toPage(rows, limit, (r) => [r.id], mapAuditEvent);
  }

  /** One event; 404 for an id that is not one (ids are decimal bigints: anything else names no event). */
  async get(id: string): Promise<AuditEventView> {
    if (!/^[1-9]\d{0,17}$/.test(id)) throw Errors.notFound('audit event');
    const rows: StoredAuditEvent[] = await this.dataSource.query(`SELECT ${COLUMNS} FROM audit_events e WHERE e.id = $1::bigint`, [id]);
    if (rows.length !== 1) throw Errors.notFound('audit event');
    return mapAuditEvent(rows[0]);
  }

  /**
   * The latest event of `type` about a subject, and what the chain says of it: whether its content still matches its
   * MAC and, once sealed, whether it links to the event before it and the next event links to it. Other modules use
   * it to prove that a fact they store (e.g. a session recording's hash) is the one the audit log vouches for.
   * Seals what is pending first, so a committed event is in the chain. Null when there is no such event.
   */
  async vouched(type: string, subjectType: string, subjectId: string): Promise<{ event: AuditEventView; problems: string[] } | null> {
    let e: StoredAuditEvent | undefined;
    // a sealing pass running elsewhere holds the lock (sealPending then seals nothing): try again for a moment; still
    // unsealed after that, the event is checked against its MAC and reported unsealed
    for (let tries = 0; tries < VOUCH_SEAL_TRIES; tries++) {
      if (tries > 0) await new Promise((r) => setTimeout(r, VOUCH_SEAL_PAUSE_MS));
      await this.sealer.sealPending().catch(() => 0);
      [e] = (await this.dataSource.query(
        `SELECT ${COLUMNS} FROM audit_events e WHERE e.subject_type = $1 AND e.subject_id = $2 AND e.type = $3 ORDER BY e.id DESC LIMIT 1`,
        [subjectType, subjectId, type],
      )) as StoredAuditEvent[];
      if (!e || e.seq !== null) break;
    }
    if (!e) return null;
    const key = this.keyring.auditKey();
    const same = (a: Buffer | null | undefined, b: Buffer) => !!a && a.length === b.length && timingSafeEqual(a, b);
    const problems: string[] = [];
    if (!same(e.mac, eventMac(key, e))) problems.push(`audit event ${e.id} does not match its MAC (edited)`);
    if (e.seq === null) {
      problems.push(`audit event ${e.id} is not sealed into the chain yet`);
    } else {
      const links = (await this.dataSource.query(`SELECT seq::text AS seq, mac, chain_hash AS "chainHash" FROM audit_events WHERE seq IN ($1::bigint - 1, $1::bigint + 1)`, [
        e.seq,
      ])) as Array<Pick<StoredAuditEvent, 'seq' | 'mac' | 'chainHash'>>;
      const prev = BigInt(e.seq) === 1n ? { chainHash: GENESIS_HASH } : links.find((l) => BigInt(l.seq as string) < BigInt(e.seq as string));
      const next = links.find((l) => BigInt(l.seq as string) > BigInt(e.seq as string));
      if (!prev?.chainHash || !same(e.chainHash, chainLink(key, prev.chainHash, e.seq, e.mac))) {
        problems.push(`audit event ${e.id} does not link to the event before it in the chain`);
      }
      if (next && (!e.chainHash || !same(next.chainHash, chainLink(key, e.chainHash, next.seq as string, next.mac)))) {
        problems.push(`the event after audit event ${e.id} does not link to it in the chain`);
      }
    }
    return { event: mapAuditEvent(e), problems };
  }

  /**
   * Takes the sealing lock (waiting for a running sealer, but not for ever: a session that holds it to keep
   * events unsealed makes verify answer 503), seals everything committed, and checks the whole chain in one
   * snapshot. `anchor` is a head recorded earlier outside the database: it must still be in the chain.
   *
   * One verify at a time per instance (the others answer 503 UNAVAILABLE at once, with Retry-After), and it never
   * holds a pool connection while it waits: it tries the lock on a connection it gives back between tries. So
   * verify takes at most one of the pool's connections, and a held lock cannot starve every other route of them.
   */
  async verify(q: { headSeq?: string; headHash?: string } = {}): Promise<VerifyResult> {
    if ((q.headSeq === undefined) !== (q.headHash === undefined)) throw Errors.validation('give headSeq and headHash together');
    const anchor: ChainAnchor | undefined = q.headSeq !== undefined ? { seq: q.headSeq, hash: q.headHash as string } : undefined;
    if (this.verifying) throw verifyUnavailable('another audit verification is running on this instance; try again shortly');
    this.verifying = true;
    try {
      const deadline = Date.now() + this.config.auditVerifyLockWaitMs;
      for (;;) {
        const result = await this.verifyIfUnlocked(anchor);
        if (result && !result.ok) await this.alert(result);
        if (result) return result;
        const left = deadline - Date.now();
        if (left <= 0) throw verifyUnavailable('the audit log is locked by another session; cannot verify it now');
        await new Promise((resolve) => setTimeout(resolve, Math.min(LOCK_POLL_MS, left)));
      }
    } finally {
      this.verifying = false;
    }
  }

  /**
   * A verify found the chain broken: administrators and auditors are told (`alert.audit_verify_failed`, through the
   * outbox's unit of work: this module does not import the notifications module). No audit event is written for it:
   * sealing one onto a broken chain (an emptied log would start anew) could hide what the verify has just found.
   * The verdict is answered even when the alert cannot be written.
   */
  private async alert(result: Extract<VerifyResult, { ok: false }>): Promise<void> {
    const at = result.firstInvalidId ? ` at event ${result.firstInvalidId}` : '';
    await this.uow
      .run((tx) =>
        tx.notify({
          type: 'alert.audit_verify_failed',
          subjectType: 'audit',
          subjectId: result.firstInvalidId,
          to: { roles: ['admin', 'auditor'] },
          facts: { summary: `Audit chain verification failed${at}: ${result.reason}`, reason: result.reason, code: 'AUDIT_CHAIN_INVALID' },
        }),
      )
      .catch((e: unknown) => this.logger.warn({ err: errorType(e) }, 'the audit verify failure could not be written to the outbox'));
  }

  /** One try: undefined when someone else holds the sealing lock (the connection is given back at once). */
  private async verifyIfUnlocked(anchor?: ChainAnchor): Promise<VerifyResult | undefined> {
    const qr = this.dataSource.createQueryRunner();
    await qr.connect();
    try {
      const [{ locked }]: Array<{ locked: boolean }> = await qr.query('SELECT pg_try_advisory_lock($1) AS locked', [SEAL_LOCK]);
      if (!locked) return undefined;
      try {
        await qr.startTransaction('REPEATABLE READ');
        await this.sealer.sealAllLocked(qr.manager);
        const result = await this.verifyIn(qr.manager, anchor);
        await qr.commitTransaction();
        return result;
      } catch (e) {
        if (qr.isTransactionActive) await qr.rollbackTransaction();
        throw e;
      } finally {
        await qr.query('SELECT pg_advisory_unlock($1)', [SEAL_LOCK]);
      }
    } finally {
      await qr.release();
    }
  }

  private async verifyIn(em: EntityManager, anchor?: ChainAnchor): Promise<VerifyResult> {
    const verifier = new ChainVerifier(this.keyring.auditKey(), anchor);
    let after = '0';
    for (;;) {
      const rows: StoredAuditEvent[] = await em.query(
        `SELECT ${COLUMNS} FROM audit_events e WHERE e.seq > $1::bigint ORDER BY e.seq LIMIT $2`,
        [after, VERIFY_BATCH],
      );
      rows.forEach((r) => verifier.pushSealed(r));
      if (verifier.failed || rows.length < VERIFY_BATCH) break;
      after = rows[rows.length - 1].seq as string;
    }
    // None in this snapshot after sealing under the lock; checked anyway, in batches.
    let afterId = '0';
    for (;;) {
      const rows: StoredAuditEvent[] = await em.query(
        `SELECT ${COLUMNS} FROM audit_events e WHERE e.seq IS NULL AND e.id > $1::bigint ORDER BY e.id LIMIT $2`,
        [afterId, VERIFY_BATCH],
      );
      rows.forEach((r) => verifier.pushUnsealed(r));
      if (verifier.failed || rows.length < VERIFY_BATCH) break;
      afterId = rows[rows.length - 1].id;
    }
    // The bootstrap admin is created with its audit event: users without any event means the log was emptied.
    return verifier.finish(await readHead(em), { initialised: await this.initialised(em) });
  }
}

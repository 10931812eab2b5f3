import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { decodeCursor, DEFAULT_PAGE_SIZE, Page, toPage } from '../common/pagination';
import { KeyringService } from '../crypto/keyring.service';
import { ChainVerifier, StoredAuditEvent, VerifyResult } from './audit-chain';
import { AuditSealer, readHead } from './audit-sealer.service';
import { AuditEventView, AuditListQuery, mapAuditEvent } from './audit.dto';

/**
 * `id` and `seq` come back as text (bigint does not fit a JS number), so every ORDER BY below names the table's
 * columns (`e.id`, `e.seq`): a bare `ORDER BY id` would sort by the text alias, putting "10" before "9".
 */
const COLUMNS = `id::text AS id, at, type, actor_id AS "actorId", subject_type AS "subjectType",
  subject_id AS "subjectId", outcome, details, mac, seq::text AS seq, chain_hash AS "chainHash"`;
const VERIFY_BATCH = 2000;

/** Reading and verifying the audit log. */
@Injectable()
export class AuditQueryService {
  constructor(
    private readonly dataSource: DataSource,
    private readonly keyring: KeyringService,
    private readonly sealer: AuditSealer,
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

  /** Seals what is pending, then checks the whole chain in one consistent snapshot. */
  async verify(): Promise<VerifyResult> {
    await this.sealer.sealPending();
    const qr = this.dataSource.createQueryRunner();
    await qr.connect();
    try {
      await qr.startTransaction('REPEATABLE READ');
      const result = await this.verifyIn(qr.manager);
      await qr.commitTransaction();
      return result;
    } catch (e) {
      await qr.rollbackTransaction();
      throw e;
    } finally {
      await qr.release();
    }
  }

  private async verifyIn(em: EntityManager): Promise<VerifyResult> {
    const verifier = new ChainVerifier(this.keyring.auditKey());
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
    // Events committed after the sealing pass above are not linked yet; their MACs still protect them.
    const unsealed: StoredAuditEvent[] = await em.query(`SELECT ${COLUMNS} FROM audit_events e WHERE e.seq IS NULL ORDER BY e.id`);
    unsealed.forEach((r) => verifier.pushUnsealed(r));
    return verifier.finish(await readHead(em));
  }
}

import { Injectable } from '@nestjs/common';
import { Readable } from 'node:stream';
import { DataSource } from 'typeorm';
import type { Actor } from '../../common/actor';
import { Errors } from '../../common/errors';
import { Page } from '../../common/pagination';
import { AuditQueryService } from '../../audit/audit-query.service';
import { UnitOfWork } from '../../database/unit-of-work';
import { RecordingService } from './recording.service';
import { RecordingStore } from './recording-store';
import { mapSession, RecordingVerifyView, SessionListQuery, SessionView } from './sessions.dto';
import { findSession, GatewaySessionRow, pageSessions } from './sessions-query';

/** The audit event that closes a gateway session and carries its recording's hash (written by the gateway). */
export const SESSION_ENDED_EVENT = 'gateway.session_ended';
export const SESSION_SUBJECT = 'gateway_session';

/** Admins and auditors see every session; anyone else only their own. */
const seesAll = (actor: Actor) => actor.roles.includes('admin') || actor.roles.includes('auditor');

/** The sessions API: who connected through the gateway, their recordings (download, audited) and their verification. */
@Injectable()
export class SessionsService {
  constructor(
    private readonly dataSource: DataSource,
    private readonly store: RecordingStore,
    private readonly recordings: RecordingService,
    private readonly audit: AuditQueryService,
    private readonly uow: UnitOfWork,
  ) {}

  async list(actor: Actor, q: SessionListQuery): Promise<Page<SessionView>> {
    const live = q.live === undefined ? undefined : q.live === 'true';
    const page = await pageSessions(this.dataSource, { ...q, live, visibleTo: seesAll(actor) ? null : actor.id });
    const recs = await this.store.findMany(
      this.dataSource,
      page.items.map((s) => s.id),
    );
    return { items: page.items.map((s) => mapSession(s, recs.get(s.id) ?? null)), nextCursor: page.nextCursor };
  }

  async get(actor: Actor, id: string): Promise<SessionView> {
    const s = await this.visible(actor, id);
    return mapSession(s, await this.store.find(this.dataSource, id));
  }

  /**
   * The asciicast file as stored so far (a live session's recording grows), streamed chunk by chunk. The read is
   * audited before the first byte leaves (`session.recording_read`).
   */
  async download(actor: Actor, id: string): Promise<{ stream: Readable; size: number }> {
    const s = await this.visible(actor, id);
    const rec = await this.store.find(this.dataSource, id);
    if (!rec) throw Errors.notFound('recording');
    await this.uow.run(({ audit }) =>
      audit({
        type: 'session.recording_read',
        actor,
        subjectType: SESSION_SUBJECT,
        subjectId: id,
        details: { sessionId: id, targetId: s.targetId, status: rec.status, size: Number(rec.size), sha256: rec.sha256 },
      }),
    );
    return { stream: Readable.from(this.recordings.plaintext(id), { objectMode: false }), size: Number(rec.size) };
  }

  /**
   * Recomputes the recording's hash from the stored chunks (each decrypted: a changed, moved or swapped chunk fails
   * there) and compares it with the hash in the session's `gateway.session_ended` event, whose MAC and chain links are
   * checked too; the row's sealed hash and size are compared as well. Reading only: nothing is changed.
   */
  async verify(actor: Actor, id: string): Promise<RecordingVerifyView> {
    await this.visible(actor, id);
    const rec = await this.store.find(this.dataSource, id);
    const vouched = await this.audit.vouched(SESSION_ENDED_EVENT, SESSION_SUBJECT, id);
    const problems: string[] = [];
    const recorded = (vouched?.event.details as { recording?: { sha256?: unknown; size?: unknown } | null } | undefined)?.recording;
    const auditedSha256 = typeof recorded?.sha256 === 'string' ? recorded.sha256 : null;
    if (!vouched) problems.push('no gateway.session_ended audit event for this session (still live, or the event is missing)');
    else {
      problems.push(...vouched.problems);
      if (auditedSha256 === null) problems.push('the gateway.session_ended audit event carries no recording hash');
    }
    if (!rec) {
      problems.push('the session has no recording');
      return { ok: false, computedSha256: null, storedSha256: null, auditedSha256, computedSize: null, auditEventId: vouched?.event.id ?? null, problems };
    }
    const digest = await this.recordings.digest(id);
    problems.push(...digest.problems);
    if (rec.status !== 'complete') problems.push(`the recording is ${rec.status}, not complete`);
    if (auditedSha256 !== null && digest.sha256 !== auditedSha256) problems.push('the stored recording does not hash to the SHA-256 in the audit event');
    if (typeof recorded?.size === 'number' && digest.size !== recorded.size) problems.push(`the stored recording is ${digest.size} bytes, the audit event says ${recorded.size}`);
    if (rec.sha256 !== null && rec.sha256 !== digest.sha256) problems.push("the stored recording does not hash to the SHA-256 sealed on its row");
    if (digest.chunks !== rec.chunkCount) problems.push(`${digest.chunks} chunks stored, the recording's row says ${rec.chunkCount}`);
    return {
      ok: problems.length === 0,
      computedSha256: digest.sha256,
      storedSha256: rec.sha256,
      auditedSha256,
      computedSize: digest.size,
      auditEventId: vouched?.event.id ?? null,
      problems,
    };
  }

  /** The session, or 404 when it does not exist or is not the caller's to see. */
  private async visible(actor: Actor, id: string): Promise<GatewaySessionRow> {
    const s = await findSession(this.dataSource, id);
    if (!s || (!seesAll(actor) && s.userId !== actor.id)) throw Errors.notFound('session');
    return s;
  }
}

import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import { Gauge } from 'prom-client';
import { DataSource, EntityManager } from 'typeorm';
import { Errors } from '../common/errors';
import { APP_CONFIG, AppConfig } from '../config/config';
import { SecretBoxService } from '../crypto/secret-box.service';
import { ClaimedWork, INSTANCE_ID } from '../database/claimed-work';
import { MetricsService } from '../metrics/metrics.service';

export type RotationReason = 'manual' | 'scheduled' | 'onboard' | 'checkin' | 'drift' | 'retry';
export type RotationStatus = 'pending' | 'succeeded' | 'failed';

/** A written-ahead rotation not settled yet, with its new password in clear. */
export interface PendingRotation {
  id: string;
  accountId: string;
  reason: RotationReason;
  claimedBy: string;
  password: string;
}

/** History without secrets. */
export interface RotationView {
  id: string;
  reason: RotationReason;
  status: RotationStatus;
  errorCode: string | null;
  requestedBy: string | null;
  createdAt: string;
  finishedAt: string | null;
}

/** Where a pending password's ciphertext is bound (associated data). */
const pendingRef = (rotationId: string) => ({ table: 'rotations', rowId: rotationId, column: 'pending_secret' });

/**
 * The owner of the `rotations` table: every statement on it is here. A rotation is written `pending` with its new
 * password encrypted and claimed by this instance; it ends `succeeded` or `failed` (the pending password dropped),
 * each only while this instance holds the claim (`lockIfOurs` in the settling transaction).
 */
@Injectable()
export class RotationStore implements OnModuleInit {
  constructor(
    private readonly dataSource: DataSource,
    private readonly secrets: SecretBoxService,
    private readonly work: ClaimedWork,
    private readonly metrics: MetricsService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onModuleInit(): void {
    const registry = this.metrics.registry;
    if (registry.getSingleMetric('vault_rotations_pending')) return; // one registration per registry
    const countPending = () => this.countPending();
    new Gauge({
      name: 'vault_rotations_pending',
      help: 'Rotations written ahead and not settled yet (a growing number means targets are slow or instances died)',
      registers: [registry],
      async collect() {
        // while the database does not answer, the gauge keeps its last value (/metrics still answers)
        await countPending().then((n) => this.set(n), () => undefined);
      },
    });
  }

  /** Step 1 of a rotation (in the caller's transaction): the new password, encrypted, claimed by this instance. */
  async insertPending(em: EntityManager, r: { id: string; accountId: string; reason: RotationReason; password: string; requestedBy: string }): Promise<void> {
    await em.query(
      `INSERT INTO rotations (id, account_id, reason, status, pending_secret, requested_by, claimed_by, claimed_until)
       VALUES ($1, $2, $3, 'pending', $4, $5, $6, now() + make_interval(secs => $7))`,
      [r.id, r.accountId, r.reason, this.secrets.encrypt(pendingRef(r.id), r.password), r.requestedBy, INSTANCE_ID, this.config.rotation.claimSeconds],
    );
  }

  /** The account's pending rotation, if any (there is at most one). */
  async pendingOf(em: EntityManager, accountId: string): Promise<string | null> {
    const [row]: Array<{ id: string }> = await em.query("SELECT id FROM rotations WHERE account_id = $1 AND status = 'pending'", [accountId]);
    return row?.id ?? null;
  }

  /** A pending rotation with its password decrypted; 404 when it is not pending (any more). Throws when it does not decrypt. */
  async loadPending(id: string): Promise<PendingRotation> {
    const [row]: Array<Omit<PendingRotation, 'password'> & { pendingSecret: Buffer }> = await this.dataSource.query(
      `SELECT id, account_id AS "accountId", reason, claimed_by AS "claimedBy", pending_secret AS "pendingSecret" FROM rotations WHERE id = $1 AND status = 'pending'`,
      [id],
    );
    if (!row) throw Errors.notFound('pending rotation');
    const { pendingSecret, ...rest } = row;
    return { ...rest, password: this.secrets.decrypt(pendingRef(row.id), pendingSecret) };
  }

  /** Recovery: claims the oldest pending rotation whose claim lapsed (not in `skip`), SKIP LOCKED; null when none. */
  async claimLapsed(skip: readonly string[]): Promise<string | null> {
    const [row] = await this.work.claimBatch<{ id: string }>(this.dataSource, {
      table: 'rotations',
      where: "status = 'pending' AND claimed_until < now() AND NOT (id = ANY ($1::uuid[]))",
      params: [skip],
      orderBy: 'created_at',
      limit: 1,
      seconds: this.config.rotation.claimSeconds,
      returning: 'id',
    });
    return row?.id ?? null;
  }

  /**
   * Extends this instance's claim, only while it still holds it and it has not lapsed. Called right before the
   * target is changed: a recovery that took over a lapsed claim may already have discarded the pending password,
   * and setting it on the target afterwards would leave the vault without a working one.
   */
  renew(id: string): Promise<boolean> {
    return this.work.renew(this.dataSource, { table: 'rotations', id, where: "status = 'pending'", seconds: this.config.rotation.claimSeconds });
  }

  /** Locks the pending rotation in the settling transaction: true only while this instance holds its claim. */
  async lockIfOurs(em: EntityManager, id: string): Promise<boolean> {
    const [row]: Array<{ claimed_by: string }> = await em.query("SELECT claimed_by FROM rotations WHERE id = $1 AND status = 'pending' FOR UPDATE", [id]);
    return row?.claimed_by === INSTANCE_ID;
  }

  /** pending → succeeded; the pending password is dropped (it is the account's now). */
  async succeed(em: EntityManager, id: string): Promise<void> {
    await em.query("UPDATE rotations SET status = 'succeeded', pending_secret = NULL, finished_at = now() WHERE id = $1 AND status = 'pending'", [id]);
  }

  /** pending → failed; the pending password is dropped. */
  async fail(em: EntityManager, id: string, errorCode: string): Promise<void> {
    await em.query("UPDATE rotations SET status = 'failed', pending_secret = NULL, error_code = $2, finished_at = now() WHERE id = $1 AND status = 'pending'", [id, errorCode]);
  }

  /** The account's last 200 rotations, newest first, without secrets. */
  async history(accountId: string): Promise<RotationView[]> {
    const rows: RotationView[] = await this.dataSource.query(
      `SELECT id, reason, status, error_code AS "errorCode", requested_by AS "requestedBy", created_at AS "createdAt", finished_at AS "finishedAt"
         FROM rotations WHERE account_id = $1 ORDER BY created_at DESC LIMIT 200`,
      [accountId],
    );
    return rows.map((r) => ({ ...r, createdAt: new Date(r.createdAt).toISOString(), finishedAt: r.finishedAt ? new Date(r.finishedAt).toISOString() : null }));
  }

  /** Rotations written ahead and not settled yet (the metrics gauge). */
  async countPending(): Promise<number> {
    const [{ n }]: Array<{ n: number }> = await this.dataSource.query("SELECT count(*)::int AS n FROM rotations WHERE status = 'pending'");
    return n;
  }
}

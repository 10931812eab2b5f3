import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { BeforeApplicationShutdown, Inject, Injectable, Logger } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { AccountEntity, accountSecretRef } from '../accounts/account.entity';
import { AuditService } from '../audit/audit.service';
import { AuditInput } from '../audit/audit.types';
import { Clock } from '../common/clock';
import { DomainException, Errors } from '../common/errors';
import { APP_CONFIG, AppConfig } from '../config/config';
import { ConnectorError } from '../connectors/connector.errors';
import { ConnectorRegistry } from '../connectors/connector.registry';
import { PasswordGenerator } from '../crypto/password-generator';
import { SecretBoxService } from '../crypto/secret-box.service';
import { findByIdOrThrow } from '../database/queries';
import { MetricsService } from '../metrics/metrics.service';
import { Actor } from '../identity/actor';
import { TargetEntity } from '../targets/target.entity';
import { TargetsService } from '../targets/targets.service';

export type RotationReason = 'manual' | 'scheduled' | 'onboard' | 'checkin' | 'drift' | 'retry';
const pendingRef = (rotationId: string) => ({ table: 'rotations', rowId: rotationId, column: 'pending_secret' });

/** Crash points for the crash-matrix test: the process SIGKILLs itself there when VAULT_CRASH_POINT says so. */
export type CrashPoint = 'after-pending-write' | 'after-target-change' | 'after-login-check' | 'before-commit';

interface PendingRotation {
  id: string;
  accountId: string;
  reason: RotationReason;
  claimedBy: string;
  pendingSecret: Buffer;
}

/**
 * Crash-safe rotation (INVARIANTS 7–9, 16). Order: (1) the new password is committed encrypted as a pending
 * rotation, claimed by this instance; (2) it is set on the target through the admin credential; (3) the vault
 * logs in with it; (4) it is committed as current — only if this instance still holds the claim. Any failure,
 * and recovery of a claim left by a dead instance, is resolved by test logins: the pending password works →
 * it becomes current; the current one works → the pending one is discarded; neither → counted as a failure,
 * retried later with a fresh password (the admin credential can always set one), `needs_attention` at the limit.
 */
@Injectable()
export class RotationService implements BeforeApplicationShutdown {
  readonly instanceId = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  private readonly logger = new Logger(RotationService.name);
  private readonly running = new Set<Promise<unknown>>();

  constructor(
    private readonly dataSource: DataSource,
    private readonly audit: AuditService,
    private readonly secrets: SecretBoxService,
    private readonly targets: TargetsService,
    private readonly connectors: ConnectorRegistry,
    private readonly generator: PasswordGenerator,
    private readonly clock: Clock,
    private readonly metrics: MetricsService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /**
   * `POST /v1/accounts/:id/rotate`: writes the pending rotation now, does the target work in the background
   * (or, with `wait`, before returning, for callers that want the outcome).
   */
  async request(actor: Actor, accountId: string, opts: { wait?: boolean } = {}): Promise<{ rotationId: string }> {
    const { rotationId, fresh } = await this.audit.transaction(async (em, audit) => {
      const account = await findByIdOrThrow(em, AccountEntity, accountId, 'account', true);
      if (account.status === 'rotating') {
        const [pending] = await em.query("SELECT id FROM rotations WHERE account_id = $1 AND status = 'pending'", [accountId]);
        // one rotation at a time: the caller gets the running one, which its claimant (or recovery) finishes
        if (pending) return { rotationId: pending.id as string, fresh: false };
      }
      if (account.status === 'checked_out') throw Errors.conflict('ACCOUNT_CHECKED_OUT', 'the account is checked out; it rotates at check-in');
      return { rotationId: await this.writeAhead(em, audit, account, 'manual', actor), fresh: true };
    });
    if (fresh) {
      const done = this.track(this.execute(rotationId));
      if (opts.wait) await done;
    }
    return { rotationId };
  }

  /**
   * Step 1 inside the caller's transaction (the account row locked by the caller): a fresh password,
   * encrypted, committed with the claim before anything touches the target.
   */
  async writeAhead(em: EntityManager, audit: (i: AuditInput) => Promise<string>, account: AccountEntity, reason: RotationReason, actor: Actor | null): Promise<string> {
    const target = await findByIdOrThrow(em, TargetEntity, account.targetId, 'target');
    const password = this.generator.generate(target.type, { length: account.policy.passwordLength, classes: account.policy.passwordClasses });
    const id = randomUUID();
    await em.query(
      `INSERT INTO rotations (id, account_id, reason, status, pending_secret, requested_by, claimed_by, claimed_until)
       VALUES ($1, $2, $3, 'pending', $4, $5, $6, now() + make_interval(secs => $7))`,
      [id, account.id, reason, this.secrets.encrypt(pendingRef(id), password), actor?.id ?? 'system', this.instanceId, this.config.rotation.claimSeconds],
    );
    await em.query("UPDATE accounts SET status = 'rotating', version = version + 1 WHERE id = $1", [account.id]);
    await audit({ type: 'rotation.started', actor, subjectType: 'account', subjectId: account.id, details: { rotationId: id, reason } });
    return id;
  }

  /** Steps 2–4 for a rotation this instance has written and claimed. Never throws. */
  async execute(rotationId: string): Promise<'succeeded' | 'failed' | 'pending'> {
    this.crash('after-pending-write');
    let ctx: Awaited<ReturnType<RotationService['load']>>;
    try {
      ctx = await this.load(rotationId);
    } catch (e) {
      this.logger.warn({ rotationId, err: { type: (e as Error)?.name } }, 'rotation could not be loaded');
      return 'pending';
    }
    try {
      const connector = this.connectors.get(ctx.target.type);
      // a claim that lapsed while this rotation waited its turn may be someone else's now: never touch the target then
      if (!(await this.renewClaim(rotationId))) return 'pending';
      await connector.rotate(ctx.connectorTarget, { username: ctx.account.username, password: ctx.password });
      this.crash('after-target-change');
      await connector.login(ctx.connectorTarget, { username: ctx.account.username, password: ctx.password });
      this.crash('after-login-check');
      this.crash('before-commit');
      return (await this.commit(ctx.rotation, ctx.password, 'verified')) ? 'succeeded' : 'pending';
    } catch (e) {
      return this.resolve(ctx, e instanceof DomainException ? e.code : 'TARGET_ERROR');
    }
  }

  /** Recovery (start-up and periodic): takes over pending rotations whose claim has expired and settles them. */
  async recoverStale(limit = 50): Promise<number> {
    let n = 0;
    for (; n < limit; n++) {
      const rows: Array<{ id: string }> = await this.dataSource.query(
        `UPDATE rotations SET claimed_by = $1, claimed_until = now() + make_interval(secs => $2)
          WHERE id = (SELECT id FROM rotations WHERE status = 'pending' AND claimed_until < now()
                       ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
          RETURNING id`,
        [this.instanceId, this.config.rotation.claimSeconds],
      ).then((r: [Array<{ id: string }>, number]) => r[0]);
      if (rows.length === 0) break;
      // one rotation that cannot be loaded (its target's credential no longer decrypts, say) never stops the others:
      // it keeps its claim until the claim lapses, so this pass moves on to the next
      try {
        const ctx = await this.load(rows[0].id);
        await this.resolve(ctx, null);
      } catch (e) {
        this.logger.warn({ rotationId: rows[0].id, code: e instanceof DomainException ? e.code : (e as Error)?.name }, 'a pending rotation could not be recovered; skipped until its claim lapses');
      }
    }
    return n;
  }

  /**
   * The scheduler's sweep: claims due accounts with SKIP LOCKED (so each is rotated once across instances),
   * writes their pending rotations in the same transaction, then runs them with bounded concurrency.
   */
  async rotateDue(limit = this.config.rotation.concurrency): Promise<number> {
    const ids = await this.audit.transaction(async (em, audit) => {
      const due: AccountEntity[] = await em
        .getRepository(AccountEntity)
        .createQueryBuilder('a')
        .where("a.status = 'available' AND a.next_rotation_at <= :now", { now: this.clock.now() })
        .orderBy('a.next_rotation_at', 'ASC')
        .limit(limit)
        .setLock('pessimistic_write')
        .setOnLocked('skip_locked')
        .getMany();
      const out: string[] = [];
      for (const account of due) {
        out.push(await this.writeAhead(em, audit, account, account.rotationFailures > 0 ? 'retry' : 'scheduled', null));
      }
      return out;
    });
    await Promise.all(ids.map((id) => this.track(this.execute(id))));
    return ids.length;
  }

  /** Waits for background rotations (tests, shutdown). */
  async settle(): Promise<void> {
    while (this.running.size) await Promise.allSettled([...this.running]);
  }

  /** Before the database is closed (onApplicationShutdown is when TypeORM closes it): running work finishes first. */
  async beforeApplicationShutdown(): Promise<void> {
    await this.settle();
  }

  async history(accountId: string): Promise<RotationView[]> {
    await findByIdOrThrow(this.dataSource.manager, AccountEntity, accountId, 'account');
    const rows: RotationView[] = await this.dataSource.query(
      `SELECT id, reason, status, error_code AS "errorCode", requested_by AS "requestedBy", created_at AS "createdAt", finished_at AS "finishedAt"
         FROM rotations WHERE account_id = $1 ORDER BY created_at DESC LIMIT 200`,
      [accountId],
    );
    return rows.map((r) => ({ ...r, createdAt: new Date(r.createdAt).toISOString(), finishedAt: r.finishedAt ? new Date(r.finishedAt).toISOString() : null }));
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.running.add(p);
    void p.finally(() => this.running.delete(p));
    return p;
  }

  /**
   * Extends this instance's claim, only while it still holds it and it has not lapsed. Called right before the
   * target is changed: a recovery that took over a lapsed claim may already have discarded the pending password,
   * and setting it on the target afterwards would leave the vault without a working one.
   */
  private async renewClaim(rotationId: string): Promise<boolean> {
    const [, renewed]: [unknown[], number] = await this.dataSource.query(
      `UPDATE rotations SET claimed_until = now() + make_interval(secs => $3)
        WHERE id = $1 AND status = 'pending' AND claimed_by = $2 AND claimed_until > now()`,
      [rotationId, this.instanceId, this.config.rotation.claimSeconds],
    );
    return renewed === 1;
  }

  private crash(point: CrashPoint): void {
    if (this.config.crashPoint === point) process.kill(process.pid, 'SIGKILL');
  }

  private async load(rotationId: string) {
    const [rotation]: PendingRotation[] = await this.dataSource.query(
      `SELECT id, account_id AS "accountId", reason, claimed_by AS "claimedBy", pending_secret AS "pendingSecret" FROM rotations WHERE id = $1 AND status = 'pending'`,
      [rotationId],
    );
    if (!rotation) throw Errors.notFound('pending rotation');
    const account = await findByIdOrThrow(this.dataSource.manager, AccountEntity, rotation.accountId, 'account');
    const target = await findByIdOrThrow(this.dataSource.manager, TargetEntity, account.targetId, 'target');
    return {
      rotation,
      account,
      target,
      connectorTarget: await this.targets.connectorTarget(target),
      password: this.secrets.decrypt(pendingRef(rotation.id), rotation.pendingSecret),
    };
  }

  /** Decides a rotation that failed or was abandoned, by logging in with each password the vault holds. */
  private async resolve(ctx: Awaited<ReturnType<RotationService['load']>>, errorCode: string | null): Promise<'succeeded' | 'failed' | 'pending'> {
    const connector = this.connectors.get(ctx.target.type);
    const works = async (password: string | null) => {
      if (password === null) return false;
      try {
        await connector.login(ctx.connectorTarget, { username: ctx.account.username, password });
        return true;
      } catch (e) {
        if (e instanceof ConnectorError && e.connectorCode === 'TARGET_AUTH_FAILED') return false;
        throw e; // cannot tell: keep the rotation pending for a later recovery
      }
    };
    const current = ctx.account.passwordSecret ? this.secrets.decrypt(accountSecretRef(ctx.account.id), ctx.account.passwordSecret) : null;
    try {
      if (await works(ctx.password)) return (await this.commit(ctx.rotation, ctx.password, 'recovered')) ? 'succeeded' : 'pending';
      const currentWorks = await works(current);
      await this.fail(ctx.rotation, errorCode ?? 'ABANDONED', currentWorks);
      return 'failed';
    } catch (e) {
      this.logger.warn(
        { accountId: ctx.account.id, targetId: ctx.target.id, rotationId: ctx.rotation.id, code: errorCode, loginCode: e instanceof DomainException ? e.code : 'ERROR' },
        'rotation failed and the target cannot tell which password works now: the rotation stays pending and recovery tries again',
      );
      return 'pending';
    }
  }

  /** Step 4: the pending password becomes current — only for the instance that still holds the claim. */
  private async commit(rotation: PendingRotation, password: string, how: 'verified' | 'recovered'): Promise<boolean> {
    return this.audit.transaction(async (em, audit) => {
      const [row] = await em.query("SELECT claimed_by FROM rotations WHERE id = $1 AND status = 'pending' FOR UPDATE", [rotation.id]);
      if (!row || row.claimed_by !== this.instanceId) return false; // a newer claimant owns it now
      const account = await findByIdOrThrow(em, AccountEntity, rotation.accountId, 'account', true);
      const now = this.clock.now();
      await em.getRepository(AccountEntity).update(
        { id: account.id },
        {
          passwordSecret: this.secrets.encrypt(accountSecretRef(account.id), password),
          status: 'available',
          lastRotatedAt: now,
          rotationFailures: 0,
          mustRotate: false,
          nextRotationAt: new Date(now.getTime() + account.policy.rotationIntervalSeconds * 1000),
        },
      );
      await em.query("UPDATE rotations SET status = 'succeeded', pending_secret = NULL, finished_at = now() WHERE id = $1", [rotation.id]);
      await audit({ type: 'rotation.succeeded', actor: null, subjectType: 'account', subjectId: account.id, details: { rotationId: rotation.id, how } });
      this.metrics.rotations.inc({ outcome: 'succeeded', reason: rotation.reason });
      return true;
    });
  }

  /** A failed attempt: the pending password is discarded; retry later with capped, jittered backoff. */
  private async fail(rotation: PendingRotation, errorCode: string, currentWorks: boolean): Promise<void> {
    await this.audit.transaction(async (em, audit) => {
      const [row] = await em.query("SELECT claimed_by FROM rotations WHERE id = $1 AND status = 'pending' FOR UPDATE", [rotation.id]);
      if (!row || row.claimed_by !== this.instanceId) return;
      const account = await findByIdOrThrow(em, AccountEntity, rotation.accountId, 'account', true);
      const failures = account.rotationFailures + 1;
      const attention = failures >= this.config.rotation.maxFailures;
      const backoffMs = Math.min(3600_000, 30_000 * 2 ** (failures - 1)) * (0.5 + Math.random() / 2);
      await em.getRepository(AccountEntity).update(
        { id: account.id },
        {
          status: attention ? 'needs_attention' : 'available',
          rotationFailures: failures,
          nextRotationAt: attention ? null : new Date(this.clock.now().getTime() + backoffMs),
        },
      );
      await em.query("UPDATE rotations SET status = 'failed', pending_secret = NULL, error_code = $2, finished_at = now() WHERE id = $1", [rotation.id, errorCode]);
      await audit({
        type: 'rotation.failed',
        actor: null,
        subjectType: 'account',
        subjectId: account.id,
        outcome: 'failure',
        details: { rotationId: rotation.id, errorCode, failures, currentPasswordWorks: currentWorks, needsAttention: attention },
      });
      this.metrics.rotations.inc({ outcome: 'failed', reason: rotation.reason });
      // operators tailing the logs see it too (what, which account and target, the code; never a secret)
      const where = { accountId: account.id, targetId: account.targetId, rotationId: rotation.id, reason: rotation.reason, code: errorCode, failures };
      if (attention) this.logger.warn(where, `rotation failed ${failures} times in a row: the account is needs_attention and is not rotated again until an admin acts`);
      else this.logger.warn({ ...where, currentPasswordWorks: currentWorks }, 'rotation failed; retried with a fresh password after a backoff');
    });
  }
}

export interface RotationView {
  id: string;
  reason: RotationReason;
  status: 'pending' | 'succeeded' | 'failed' | 'discarded';
  errorCode: string | null;
  requestedBy: string | null;
  createdAt: string;
  finishedAt: string | null;
}

import { randomBytes } from 'node:crypto';
import { BeforeApplicationShutdown, Inject, Injectable, Logger } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { AuditService } from '../audit/audit.service';
import { Clock } from '../common/clock';
import { DomainException, Errors } from '../common/errors';
import { APP_CONFIG, AppConfig } from '../config/config';
import { ConnectorRegistry } from '../connectors/connector.registry';
import { PasswordGenerator } from '../crypto/password-generator';
import { findByIdOrThrow } from '../database/queries';
import { Actor } from '../identity/actor';
import { UserEntity } from '../identity/user.entity';
import { RotationService } from '../rotation/rotation.service';
import { isValidAccountName } from '../connectors/names';
import { TargetEntity } from '../targets/target.entity';
import { TargetsService } from '../targets/targets.service';
import { ClaimView, EphemeralView } from './ephemeral.dto';
import { EphemeralAccountEntity, EphemeralEndReason } from './ephemeral.entity';
import { EphemeralService } from './ephemeral.service';
import { BackgroundWork } from '../common/background';

/** Crash points for the crash-matrix test (the process SIGKILLs itself there when VAULT_CRASH_POINT says so). */
export type EphemeralCrashPoint = 'ephemeral-after-intent' | 'ephemeral-after-create' | 'ephemeral-before-commit';

const SECOND = 1000;
const OPEN_REQUEST = ['pending_approval', 'approved'];
const FINAL = ['denied', 'revoked', 'expired'];

/**
 * The target side of one-time accounts (INVARIANTS 11–13). Claim: (1) the intent — status `creating`, the generated
 * username and this instance's claim — is committed; (2) the account is created on the target with a backstop
 * expiry; (3) it becomes `active` only if this instance still holds the claim. Removal (revoke, expiry, or the reaper
 * finding an intent that never completed): the row goes `revoking` (claimed), the connector ends the sessions and
 * removes the account (idempotent), then the row is final; failures back off and end in `needs_attention`. Every
 * step is claimed in the database, so several instances never work on the same account at once.
 */
@Injectable()
export class EphemeralProvisioner implements BeforeApplicationShutdown {
  private readonly logger = new Logger(EphemeralProvisioner.name);
  private readonly background = new BackgroundWork();

  constructor(
    private readonly dataSource: DataSource,
    private readonly audit: AuditService,
    private readonly ephemeral: EphemeralService,
    private readonly targets: TargetsService,
    private readonly connectors: ConnectorRegistry,
    private readonly generator: PasswordGenerator,
    private readonly rotation: RotationService,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  private get me(): string {
    return this.rotation.instanceId;
  }

  /** The vendor's one claim (MFA): creates the account just in time and answers its credential, once. */
  async claim(actor: Actor, id: string): Promise<ClaimView> {
    await this.checkTargetStillAllows(actor, id);
    const intent = await this.audit.transaction(async (em, audit) => {
      const row = await this.ephemeral.find(em, actor, id, true);
      if (row.vendorId !== actor.id) throw Errors.forbidden('only the vendor it is for may claim it');
      if (row.claimedAt) throw Errors.gone('ALREADY_CLAIMED', 'this one-time account was already claimed');
      if (row.status === 'expired' || (OPEN_REQUEST.includes(row.status) && row.requestDeadline <= this.clock.now())) throw Errors.gone('EXPIRED', 'the request has expired');
      if (row.status === 'pending_approval') throw Errors.conflict('NOT_APPROVED', 'the request is waiting for approval');
      if (row.status !== 'approved') throw Errors.conflict('REQUEST_ENDED', `the request is ${row.status}`);
      const vendor = await em.getRepository(UserEntity).findOneByOrFail({ id: actor.id });
      const target = await findByIdOrThrow(em, TargetEntity, row.targetId, 'target');
      // the policy in force now decides, not the one the request was approved under
      const ttlSeconds = await this.ephemeral.checkAgainstPolicyInForce(em, audit, row, target.type);
      if (ttlSeconds === null) return null;
      // everything that can fail without touching the target is done before the intent is committed
      const username = generateUsername(vendor.username, target.type);
      const password = this.generator.generate(target.type, { length: 24, classes: ['lower', 'upper', 'digit', 'symbol'] });
      const connectorTarget = await this.targets.connectorTarget(target);
      const now = this.clock.now();
      const expiresAt = new Date(now.getTime() + ttlSeconds * SECOND);
      await em.query(
        `UPDATE ephemeral_accounts SET status = 'creating', username = $2, claimed_at = $3, expires_at = $4, claimed_by = $5,
                claimed_until = now() + make_interval(secs => $6), version = version + 1 WHERE id = $1`,
        [id, username, now, expiresAt, this.me, this.config.ephemeral.claimSeconds],
      );
      await audit({ type: 'ephemeral.claimed', actor, subjectType: 'ephemeral_account', subjectId: id, details: { targetId: target.id, username, expiresAt: expiresAt.toISOString() } });
      return { row, target, username, password, connectorTarget, expiresAt };
    });
    if (!intent) throw Errors.conflict('NOT_APPROVED', "the target's policy now asks for more approvals than this request has; it is waiting for approval again");
    this.crash('ephemeral-after-intent');
    const { row, target, username, password, connectorTarget, expiresAt } = intent;
    try {
      // a claim that lapsed meanwhile may be the reaper's now: never create what it may already have "removed"
      if (!(await this.renewClaim(id, 'creating'))) throw Errors.gone('REVOKED', 'the one-time account was revoked while it was being created');
      await this.connectors.get(target.type).createEphemeral(connectorTarget, { username, password }, { ...row.access, validUntil: expiresAt });
    } catch (e) {
      await this.afterFailedCreate(id, username, e);
      throw e;
    }
    this.crash('ephemeral-after-create');
    const committed = await this.audit.transaction(async (em, audit) => {
      const [, n]: [unknown, number] = await em.query(
        "UPDATE ephemeral_accounts SET status = 'active', claimed_by = NULL, claimed_until = NULL, version = version + 1 WHERE id = $1 AND status = 'creating' AND claimed_by = $2",
        [id, this.me],
      );
      if (n !== 1) return false;
      await audit({ type: 'ephemeral.created', actor, subjectType: 'ephemeral_account', subjectId: id, details: { targetId: target.id, username } });
      this.crash('ephemeral-before-commit');
      return true;
    });
    if (!committed) {
      // revoked or reaped while the target worked, perhaps "removed" before it existed: it goes back to the reaper
      await this.reopenForRemoval(id, username);
      throw Errors.gone('REVOKED', 'the one-time account was revoked while it was being created');
    }
    return { id, username, password, host: target.host, port: target.port, expiresAt: expiresAt.toISOString() };
  }

  /**
   * Before the intent, with no lock held while the target answers: what the request would hand out is checked again
   * against the target's own catalog (a role may have become privileged since the policy was set). Anything that is
   * not claimable now is left to the claim's own checks.
   */
  private async checkTargetStillAllows(actor: Actor, id: string): Promise<void> {
    const em = this.dataSource.manager;
    const row = await this.ephemeral.find(em, actor, id);
    if (row.status !== 'approved' || row.claimedAt || row.vendorId !== actor.id) return;
    const target = await findByIdOrThrow(em, TargetEntity, row.targetId, 'target');
    const a = row.access;
    const refused = await this.ephemeral.refusedByTarget(target, { groups: a.groups, roles: a.grantRoles, databases: a.database ? [a.database] : [], grants: a.grants });
    if (refused.length) throw new DomainException('ACCESS_NOT_ALLOWED', `the target no longer allows what this request asks: ${refused.slice(0, 5).join('; ')}`);
  }

  /**
   * The vendor, the requester or an admin ends it: nothing to do on the target before the claim; a live account is
   * removed with its sessions. Revoking what has ended already answers it as it is.
   */
  async revoke(actor: Actor, id: string): Promise<EphemeralView> {
    const claimed = await this.audit.transaction(async (em, audit) => {
      const row = await this.ephemeral.find(em, actor, id, true);
      const allowed = row.vendorId === actor.id || row.requesterId === actor.id || actor.roles.includes('admin');
      if (!allowed) throw Errors.forbidden('only the vendor, the requester or an admin may revoke it');
      if (FINAL.includes(row.status) || row.status === 'revoking') return false;
      const now = this.clock.now();
      if (OPEN_REQUEST.includes(row.status)) {
        await em.query("UPDATE ephemeral_accounts SET status = 'revoked', end_reason = 'revoked', ended_at = $2, ended_by = $3, version = version + 1 WHERE id = $1", [id, now, actor.id]);
        await audit({ type: 'ephemeral.revoked', actor, subjectType: 'ephemeral_account', subjectId: id, details: { created: false } });
        return false;
      }
      // creating: the claimant may still be creating it — the removal waits for its claim to lapse (the claimant's
      // own commit fails and removes it too); active / needs_attention: removed now by this instance
      const takeOver = row.status !== 'creating';
      await em.query(
        `UPDATE ephemeral_accounts SET status = 'revoking', end_reason = 'revoked', ended_by = $2, attempts = 0, version = version + 1,
                claimed_by = CASE WHEN $3 THEN $4 ELSE NULL END,
                claimed_until = CASE WHEN $3 THEN now() + make_interval(secs => $5) ELSE claimed_until END
          WHERE id = $1`,
        [id, actor.id, takeOver, this.me, this.config.ephemeral.claimSeconds],
      );
      await audit({ type: 'ephemeral.revoked', actor, subjectType: 'ephemeral_account', subjectId: id, details: { created: true, username: row.username } });
      return takeOver;
    });
    if (claimed) await this.background.track(this.removeClaimed(id));
    const em = this.dataSource.manager;
    return this.ephemeral.view(em, await this.ephemeral.find(em, actor, id));
  }

  /**
   * The reaper, on every instance: lapses unclaimed requests, starts the removal of accounts whose time is up (or
   * whose vendor was disabled) and of intents whose claimant died (`creating` past its claim), and retries removals whose claim lapsed (backoff). Each
   * row is taken with `FOR UPDATE SKIP LOCKED`; removals run a batch at a time.
   */
  async reap(limit = 50): Promise<{ lapsed: number; removed: number }> {
    const lapsed = await this.lapseRequests(limit);
    let removed = 0;
    while (removed < limit) {
      const batch: string[] = [];
      while (batch.length < this.config.rotation.concurrency) {
        const id = await this.takeForRemoval();
        if (!id) break;
        batch.push(id);
      }
      if (batch.length === 0) break;
      removed += batch.length;
      await this.background.track(Promise.all(batch.map((id) => this.removeClaimed(id))));
    }
    return { lapsed, removed };
  }

  /** Before the database is closed (onApplicationShutdown is when TypeORM closes it): running work finishes first. */
  beforeApplicationShutdown(): Promise<void> {
    return this.background.settle();
  }

  /** Requests nobody claimed (or approved) in time: nothing exists on the target, they just end. */
  private async lapseRequests(limit: number): Promise<number> {
    return this.audit.transaction(async (em, audit) => {
      const [rows]: [Array<{ id: string }>, number] = await em.query(
        `UPDATE ephemeral_accounts SET status = 'expired', end_reason = 'request_timeout', ended_at = $1, ended_by = 'system', version = version + 1
          WHERE id IN (SELECT id FROM ephemeral_accounts WHERE status IN ('pending_approval', 'approved') AND request_deadline <= $1
                        ORDER BY request_deadline LIMIT $2 FOR UPDATE SKIP LOCKED)
          RETURNING id`,
        [this.clock.now(), limit],
      );
      for (const r of rows) await audit({ type: 'ephemeral.expired', actor: null, subjectType: 'ephemeral_account', subjectId: r.id, details: { reason: 'request_timeout', created: false } });
      return rows.length;
    });
  }

  /** Claims one account to remove: time up, an abandoned intent, or a removal to retry. */
  private async takeForRemoval(): Promise<string | null> {
    return this.audit.transaction(async (em, audit) => {
      const now = this.clock.now();
      const [row]: Array<Pick<EphemeralAccountEntity, 'id' | 'status' | 'username' | 'expiresAt'>> = await em.query(
        `SELECT e.id, e.status, e.username, e.expires_at AS "expiresAt" FROM ephemeral_accounts e
          WHERE (e.status = 'active' AND (e.expires_at <= $1 OR EXISTS (SELECT 1 FROM users u WHERE u.id = e.vendor_id AND (u.disabled OR NOT 'vendor' = ANY (u.roles)))))
             OR (e.status IN ('creating', 'revoking', 'needs_attention') AND (e.claimed_until IS NULL OR e.claimed_until < now()))
          ORDER BY e.seq LIMIT 1 FOR UPDATE OF e SKIP LOCKED`,
        [now],
      );
      if (!row) return null;
      // active: its time is up, or its vendor was disabled or is no vendor any more (revoked); creating: an intent
      // whose claimant died; revoking: a removal to retry; needs_attention: the slow (hourly) retry
      const reason: EphemeralEndReason | null =
        row.status === 'active' ? ((row.expiresAt as Date) <= now ? 'expired' : 'revoked') : row.status === 'creating' ? 'reaped' : null;
      await em.query(
        `UPDATE ephemeral_accounts SET status = 'revoking', end_reason = COALESCE($2, end_reason), ended_by = COALESCE(ended_by, 'system'),
                claimed_by = $3, claimed_until = now() + make_interval(secs => $4), version = version + 1 WHERE id = $1`,
        [row.id, reason, this.me, this.config.ephemeral.claimSeconds],
      );
      if (reason) {
        const details = { username: row.username, created: true, ...(reason === 'revoked' ? { because: 'vendor_disabled_or_not_vendor' } : {}) };
        await audit({ type: `ephemeral.${reason}`, actor: null, subjectType: 'ephemeral_account', subjectId: row.id, details });
        if (reason === 'reaped') this.logger.warn({ ephemeralId: row.id, username: row.username }, 'a one-time account creation was abandoned (its instance stopped): the reaper removes it');
      }
      return row.id;
    });
  }

  /** Removes an account this instance has claimed for removal; records the outcome. Never throws. */
  private async removeClaimed(id: string): Promise<void> {
    let errorCode: string | null = null;
    try {
      const row = await findByIdOrThrow(this.dataSource.manager, EphemeralAccountEntity, id, 'ephemeral account');
      const target = await findByIdOrThrow(this.dataSource.manager, TargetEntity, row.targetId, 'target');
      if (row.username) await this.connectors.get(target.type).revokeEphemeral(await this.targets.connectorTarget(target), row.username);
    } catch (e) {
      errorCode = e instanceof DomainException ? e.code : 'TARGET_ERROR';
    }
    await this.settleRemoval(id, errorCode).catch((err: unknown) => {
      this.logger.warn({ ephemeralId: id, err: { type: (err as Error)?.name } }, 'removal outcome could not be recorded; the reaper retries');
    });
  }

  private async settleRemoval(id: string, errorCode: string | null): Promise<void> {
    await this.audit.transaction(async (em, audit) => {
      const [row]: Array<{ attempts: number; end_reason: EphemeralEndReason | null; username: string | null }> = await em.query(
        "SELECT attempts, end_reason, username FROM ephemeral_accounts WHERE id = $1 AND status = 'revoking' AND claimed_by = $2 FOR UPDATE",
        [id, this.me],
      );
      if (!row) return; // another instance took over
      if (errorCode === null) {
        const final = row.end_reason === 'expired' ? 'expired' : 'revoked';
        await em.query('UPDATE ephemeral_accounts SET status = $2, ended_at = $3, claimed_by = NULL, claimed_until = NULL, last_error = NULL, version = version + 1 WHERE id = $1', [
          id,
          final,
          this.clock.now(),
        ]);
        await audit({ type: 'ephemeral.removed', actor: null, subjectType: 'ephemeral_account', subjectId: id, details: { username: row.username, reason: row.end_reason } });
        return;
      }
      const attempts = row.attempts + 1;
      const gaveUp = attempts >= this.config.ephemeral.maxAttempts;
      const backoffSeconds = gaveUp ? 3600 : Math.min(3600, 15 * 2 ** (attempts - 1)) * (0.5 + Math.random() / 2);
      await em.query(
        `UPDATE ephemeral_accounts SET status = $2, attempts = $3, last_error = $4, claimed_by = NULL,
                claimed_until = now() + make_interval(secs => $5), version = version + 1 WHERE id = $1`,
        [id, gaveUp ? 'needs_attention' : 'revoking', attempts, errorCode, backoffSeconds],
      );
      await audit({
        type: 'ephemeral.remove_failed',
        actor: null,
        subjectType: 'ephemeral_account',
        subjectId: id,
        outcome: 'failure',
        details: { username: row.username, errorCode, attempts, needsAttention: gaveUp },
      });
      const where = { ephemeralId: id, username: row.username, code: errorCode, attempts };
      if (gaveUp) this.logger.warn(where, `removing a one-time account failed ${attempts} times: it is needs_attention (retried hourly; an admin's revoke retries now)`);
      else this.logger.warn(where, 'removing a one-time account failed; the reaper retries after a backoff');
    });
  }

  /**
   * The creation failed or its outcome is unknown (a timeout: the target may still finish it). Nothing was handed
   * out, but something may exist or appear there: the row goes to the reaper (`revoking`), which removes the account
   * once this claim has lapsed — after any late creation — and the vendor asks for a new one.
   */
  private async afterFailedCreate(id: string, username: string, cause: unknown): Promise<void> {
    const errorCode = cause instanceof DomainException ? cause.code : 'TARGET_ERROR';
    await this.audit
      .transaction(async (em, audit) => {
        await em.query(
          `UPDATE ephemeral_accounts SET status = 'revoking', end_reason = 'create_failed', ended_by = 'system', last_error = $3,
                  claimed_by = NULL, claimed_until = GREATEST(claimed_until, now()), version = version + 1
            WHERE id = $1 AND status = 'creating' AND claimed_by = $2`,
          [id, this.me, errorCode],
        );
        await audit({ type: 'ephemeral.create_failed', actor: null, subjectType: 'ephemeral_account', subjectId: id, outcome: 'failure', details: { username, errorCode } });
        this.logger.warn({ ephemeralId: id, username, code: errorCode }, 'creating a one-time account failed; the reaper removes anything it left on the target');
      })
      .catch((err: unknown) => this.logger.warn({ ephemeralId: id, err: { type: (err as Error)?.name } }, 'failed creation not recorded; the reaper takes the intent over'));
  }

  /** A claimant that lost its row created the account anyway: whatever the row says now, the reaper removes it again. */
  private async reopenForRemoval(id: string, username: string): Promise<void> {
    await this.audit.transaction(async (em, audit) => {
      await em.query(
        `UPDATE ephemeral_accounts SET status = 'revoking', claimed_by = NULL, claimed_until = now(), version = version + 1
          WHERE id = $1 AND status IN ('revoked', 'expired', 'needs_attention')`,
        [id],
      );
      await audit({ type: 'ephemeral.reopened', actor: null, subjectType: 'ephemeral_account', subjectId: id, details: { username, because: 'created after its claim was lost' } });
    });
  }

  /** Extends this instance's claim on a row in `status`, only while it still holds it and it has not lapsed. */
  private async renewClaim(id: string, status: 'creating'): Promise<boolean> {
    const [, n]: [unknown, number] = await this.dataSource.query(
      `UPDATE ephemeral_accounts SET claimed_until = now() + make_interval(secs => $4)
        WHERE id = $1 AND status = $2 AND claimed_by = $3 AND claimed_until > now()`,
      [id, status, this.me, this.config.ephemeral.claimSeconds],
    );
    return n === 1;
  }

  private crash(point: EphemeralCrashPoint): void {
    if (this.config.crashPoint === point) process.kill(process.pid, 'SIGKILL');
  }
}

/**
 * `v<vendor's name, letters and digits, ≤ 8>_<10 hex>`: readable, random, within every target type's limits
 * (≤ 20 characters), and checked against the type's strict pattern before it goes anywhere.
 */
export function generateUsername(vendorName: string, type: TargetEntity['type']): string {
  const prefix = vendorName.toLowerCase().replace(/[^a-z0-9]/g, '').slice(0, 8) || 'vendor';
  const name = `v${prefix}_${randomBytes(5).toString('hex')}`;
  if (!isValidAccountName(type, name)) throw new Error('generated username failed its own pattern');
  return name;
}

import { randomBytes } from 'node:crypto';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { Actor } from '../common/actor';
import { Clock } from '../common/clock';
import { DomainException, Errors } from '../common/errors';
import { APP_CONFIG, AppConfig } from '../config/config';
import { PasswordGenerator } from '../crypto/password-generator';
import { SecretBoxService } from '../crypto/secret-box.service';
import { backoffSeconds, ClaimedWork, CrashPoint, errorType, INSTANCE_ID } from '../database/claimed-work';
import { UnitOfWork } from '../database/unit-of-work';
import { UsersService } from '../identity/users.service';
import { isValidAccountName } from '../connectors/names';
import { TargetEntity } from '../targets/target.entity';
import { TargetsService } from '../targets/targets.service';
import { EphemeralNotices } from './ephemeral-notices';
import { EphemeralStore } from './ephemeral-store';
import { FINAL, OPEN_REQUEST } from './ephemeral-states';
import { ClaimView, EphemeralView } from './ephemeral.dto';
import { EphemeralService } from './ephemeral.service';
import { ephemeralSecretRef } from './ephemeral.entity';

/** The crash points of a claim (ClaimedWork.crash; the crash-matrix test names them): after the intent, after the create, in the commit. */
export type EphemeralCrashPoint = Extract<CrashPoint, `ephemeral-${string}`>;

const SECOND = 1000;
/** Removal retries: 15 s doubling to an hour (jittered); needs_attention is retried hourly. */
const REMOVAL_BACKOFF = { baseSeconds: 15, capSeconds: 3600 } as const;
const NEEDS_ATTENTION_RETRY_SECONDS = 3600;

/**
 * The target side of one-time accounts (docs/invariants.md 11–13), as transitions of the life cycle in ephemeral-states.ts.
 * Claim: (1) the intent — status `creating`, the generated username and this instance's claim — is committed; (2) the
 * account is created on the target with a backstop expiry (where the target type has one); (3) it becomes `active`
 * only if this instance still holds the claim. Removal (revoke, expiry, or the reaper finding an intent that never
 * completed): the row goes `revoking` (claimed), the target ends the sessions and removes the account (idempotent),
 * then the row is final; failures back off and end in `needs_attention`. Every step is claimed in the database
 * (ClaimedWork), so several instances never work on the same account at once.
 */
@Injectable()
export class EphemeralProvisioner {
  private readonly logger = new Logger(EphemeralProvisioner.name);

  constructor(
    private readonly dataSource: DataSource,
    private readonly uow: UnitOfWork,
    private readonly store: EphemeralStore,
    private readonly ephemeral: EphemeralService,
    private readonly targets: TargetsService,
    private readonly users: UsersService,
    private readonly notices: EphemeralNotices,
    private readonly generator: PasswordGenerator,
    private readonly secrets: SecretBoxService,
    private readonly work: ClaimedWork,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** The vendor's one claim (MFA): creates the account just in time and answers its credential, once. */
  async claim(actor: Actor, id: string): Promise<ClaimView> {
    await this.checkTargetStillAllows(actor, id);
    const claimSeconds = this.config.ephemeral.claimSeconds;
    const intent = await this.uow.run(async (tx) => {
      const { em, audit } = tx;
      const row = await this.ephemeral.find(em, actor, id, true);
      if (row.vendorId !== actor.id) throw Errors.forbidden('only the vendor it is for may claim it');
      if (row.claimedAt) throw Errors.gone('ALREADY_CLAIMED', 'this one-time account was already claimed');
      if (row.status === 'expired' || (OPEN_REQUEST.includes(row.status) && row.requestDeadline <= this.clock.now())) throw Errors.gone('EXPIRED', 'the request has expired');
      if (row.status === 'pending_approval') throw Errors.conflict('NOT_APPROVED', 'the request is waiting for approval');
      if (row.status !== 'approved') throw Errors.conflict('REQUEST_ENDED', `the request is ${row.status}`);
      const vendor = await this.users.get(actor.id, em);
      const target = await this.targets.find(em, row.targetId);
      // the policy in force now decides, not the one the request was approved under
      const ttlSeconds = await this.ephemeral.checkAgainstPolicyInForce(tx, row, target);
      if (ttlSeconds === null) return null;
      // brokered only: the account is created, but its password stays in the vault (the SSH gateway logs in with it)
      const { brokeredOnly } = await this.ephemeral.policyOf(em, row.targetId);
      // everything that can fail without touching the target is done before the intent is committed
      const username = generateUsername(vendor.username, target.type);
      const password = this.generator.generate(target.type, { length: 24, classes: ['lower', 'upper', 'digit', 'symbol'] });
      const connection = await this.targets.connect(target);
      const now = this.clock.now();
      const expiresAt = new Date(now.getTime() + ttlSeconds * SECOND);
      // the row is locked and approved: the transition cannot be refused here
      if (!(await this.store.claim(em, id, { username, claimedAt: now, expiresAt, claimant: INSTANCE_ID, claimSeconds }))) throw new Error('claim refused on a locked approved row');
      await audit({ type: 'ephemeral.claimed', actor, subjectType: 'ephemeral_account', subjectId: id, details: { targetId: target.id, username, expiresAt: expiresAt.toISOString() } });
      return { row, target, username, password, connection, expiresAt, brokeredOnly };
    });
    if (!intent) throw Errors.conflict('NOT_APPROVED', "the target's policy now asks for more approvals than this request has; it is waiting for approval again");
    this.work.crash('ephemeral-after-intent');
    const { row, target, username, password, connection, expiresAt, brokeredOnly } = intent;
    let expiresOnTarget: Date | null;
    try {
      // a claim that lapsed meanwhile may be the reaper's now: never create what it may already have "removed"
      if (!(await this.store.renewCreating(this.work, this.dataSource, id, claimSeconds))) throw Errors.gone('REVOKED', 'the one-time account was revoked while it was being created');
      ({ expiresOnTarget } = await connection.newUser({ username, password, access: row.access, validUntil: expiresAt }));
    } catch (e) {
      await this.afterFailedCreate(id, username, e);
      throw e;
    }
    this.work.crash('ephemeral-after-create');
    const committed = await this.uow.run(async ({ em, audit }) => {
      if (!(await this.store.activate(em, id, INSTANCE_ID, this.secrets.encrypt(ephemeralSecretRef(id), password)))) return false;
      // null: the target type has no account expiry (MySQL), the reaper is the only remover
      const details = { targetId: target.id, username, expiresOnTarget: expiresOnTarget?.toISOString() ?? null };
      await audit({ type: 'ephemeral.created', actor, subjectType: 'ephemeral_account', subjectId: id, details });
      this.work.crash('ephemeral-before-commit');
      return true;
    });
    if (!committed) {
      // revoked or reaped while the target worked, perhaps "removed" before it existed: it goes back to the reaper
      await this.reopenForRemoval(id, username);
      throw Errors.gone('REVOKED', 'the one-time account was revoked while it was being created');
    }
    const answer = { id, username, host: target.host, port: target.port, expiresAt: expiresAt.toISOString(), brokeredOnly };
    return brokeredOnly ? answer : { ...answer, password };
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
    const target = await this.targets.find(em, row.targetId);
    const a = row.access;
    const refused = await this.ephemeral.refusedByTarget(target, { groups: a.groups, roles: a.grantRoles, databases: a.database ? [a.database] : [], grants: a.grants });
    if (refused.length) throw new DomainException('ACCESS_NOT_ALLOWED', `the target no longer allows what this request asks: ${refused.slice(0, 5).join('; ')}`);
  }

  /**
   * The vendor, the requester or an admin ends it: nothing to do on the target before the claim; a live account is
   * removed with its sessions. Revoking what has ended already answers it as it is.
   */
  async revoke(actor: Actor, id: string): Promise<EphemeralView> {
    const claimed = await this.uow.run(async (tx) => {
      const { em, audit } = tx;
      const row = await this.ephemeral.find(em, actor, id, true);
      const allowed = row.vendorId === actor.id || row.requesterId === actor.id || actor.roles.includes('admin');
      if (!allowed) throw Errors.forbidden('only the vendor, the requester or an admin may revoke it');
      if (FINAL.includes(row.status) || row.status === 'revoking') return false;
      if (OPEN_REQUEST.includes(row.status)) {
        await this.store.withdraw(em, id, actor.id, this.clock.now());
        await audit({ type: 'ephemeral.revoked', actor, subjectType: 'ephemeral_account', subjectId: id, details: { created: false } });
        await this.notices.revoked(tx, row, await this.notices.names(em, row), { by: actor.id });
        return false;
      }
      // creating: the claimant may still be creating it — the removal waits for its claim to lapse (the claimant's
      // own commit fails and removes it too); active / needs_attention: removed now by this instance
      const takeOver = row.status !== 'creating';
      await this.store.revoke(em, id, { by: actor.id, claimant: takeOver ? INSTANCE_ID : null, claimSeconds: this.config.ephemeral.claimSeconds });
      await audit({ type: 'ephemeral.revoked', actor, subjectType: 'ephemeral_account', subjectId: id, details: { created: true, username: row.username } });
      await this.notices.revoked(tx, row, await this.notices.names(em, row), { by: actor.id });
      return takeOver;
    });
    if (claimed) await this.work.track(this.removeClaimed(id));
    const em = this.dataSource.manager;
    return this.ephemeral.view(em, await this.ephemeral.find(em, actor, id));
  }

  /**
   * The reaper, on every instance: lapses unclaimed requests, then drains the removals — accounts whose time is up (or
   * whose vendor was disabled or is no vendor any more), intents whose claimant died (`creating` past its claim), and
   * removals whose retry is due — a batch at a time (ClaimedWork.drain: one that fails never stops the others). Each
   * step runs even when the one before failed.
   */
  async reap(limit = 50): Promise<{ lapsed: number; removed: number }> {
    let failure: unknown = null;
    const lapsed = await this.lapseRequests(limit).catch((e: unknown) => {
      failure = e;
      this.logger.warn({ work: 'ephemeral-lapse', err: errorType(e) }, 'lapsing one-time account requests failed; removals still run');
      return 0;
    });
    const removed = await this.work.drain<string>({
      name: 'ephemeral-reaper',
      take: (skip) => this.takeForRemoval(skip),
      key: (id) => id,
      run: (id) => this.removeClaimed(id),
      batchSize: this.config.rotation.concurrency,
      limit,
    });
    if (failure) throw failure;
    return { lapsed, removed };
  }

  /** Requests nobody claimed (or approved) in time: nothing exists on the target, they just end. */
  private async lapseRequests(limit: number): Promise<number> {
    return this.uow.run(async (tx) => {
      const lapsed = await this.store.lapseRequests(tx.em, this.clock.now(), limit);
      for (const r of lapsed) {
        await tx.audit({ type: 'ephemeral.expired', actor: null, subjectType: 'ephemeral_account', subjectId: r.id, details: { reason: 'request_timeout', created: false } });
        await this.notices.lapsed(tx, r, await this.notices.names(tx.em, r));
      }
      return lapsed.length;
    });
  }

  /** Claims one account to remove (not in `skip`): time up, an abandoned intent, or a removal to retry. */
  private async takeForRemoval(skip: readonly string[]): Promise<string | null> {
    return this.uow.run(async (tx) => {
      const { em, audit } = tx;
      const taken = await this.store.takeForRemoval(em, { now: this.clock.now(), claimant: INSTANCE_ID, claimSeconds: this.config.ephemeral.claimSeconds, skip });
      if (!taken) return null;
      // active: its time is up (expired), or its vendor was disabled or is no vendor any more (revoked); creating: an
      // intent whose claimant died (reaped); revoking: a removal to retry; needs_attention: the slow (hourly) retry
      const { id, username, reason } = taken;
      if (reason) {
        const details = { username, created: true, ...(reason === 'revoked' ? { because: 'vendor_disabled_or_not_vendor' } : {}) };
        await audit({ type: `ephemeral.${reason}`, actor: null, subjectType: 'ephemeral_account', subjectId: id, details });
        if (reason === 'revoked') await this.notices.revoked(tx, taken, await this.notices.names(em, taken), { by: null });
        if (reason === 'reaped') this.logger.warn({ ephemeralId: id, username }, 'a one-time account creation was abandoned (its instance stopped): the reaper removes it');
      }
      return id;
    });
  }

  /** Removes an account this instance has claimed for removal; records the outcome. Never throws. */
  private async removeClaimed(id: string): Promise<void> {
    let errorCode: string | null = null;
    try {
      const em = this.dataSource.manager;
      const row = await this.store.find(em, id);
      const target = await this.targets.find(em, row.targetId);
      if (row.username) await (await this.targets.connect(target)).deleteUser({ username: row.username });
    } catch (e) {
      errorCode = e instanceof DomainException ? e.code : 'TARGET_ERROR';
    }
    await this.settleRemoval(id, errorCode).catch((err: unknown) => {
      this.logger.warn({ ephemeralId: id, err: errorType(err) }, 'removal outcome could not be recorded; the reaper retries');
    });
  }

  private async settleRemoval(id: string, errorCode: string | null): Promise<void> {
    await this.uow.run(async (tx) => {
      const { em, audit } = tx;
      const held = await this.store.heldRemoval(em, id, INSTANCE_ID);
      if (!held) return; // another instance took over
      if (errorCode === null) {
        await this.store.finishRemoval(em, id, INSTANCE_ID, this.clock.now());
        await audit({ type: 'ephemeral.removed', actor: null, subjectType: 'ephemeral_account', subjectId: id, details: { username: held.username, reason: held.endReason } });
        return;
      }
      const attempts = held.attempts + 1;
      const gaveUp = attempts >= this.config.ephemeral.maxAttempts;
      const retrySeconds = gaveUp ? NEEDS_ATTENTION_RETRY_SECONDS : backoffSeconds(attempts, REMOVAL_BACKOFF);
      await this.store.failRemoval(em, id, INSTANCE_ID, { attempts, attention: gaveUp, errorCode, retrySeconds });
      await audit({
        type: 'ephemeral.remove_failed',
        actor: null,
        subjectType: 'ephemeral_account',
        subjectId: id,
        outcome: 'failure',
        details: { username: held.username, errorCode, attempts, needsAttention: gaveUp },
      });
      if (gaveUp) await this.notices.removeFailed(tx, { id, ...held }, await this.notices.names(em, { id, ...held }), { errorCode, attempts });
      const where = { ephemeralId: id, username: held.username, code: errorCode, attempts };
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
    await this.uow
      .run(async ({ em, audit }) => {
        await this.store.failCreate(em, id, INSTANCE_ID, errorCode);
        await audit({ type: 'ephemeral.create_failed', actor: null, subjectType: 'ephemeral_account', subjectId: id, outcome: 'failure', details: { username, errorCode } });
        this.logger.warn({ ephemeralId: id, username, code: errorCode }, 'creating a one-time account failed; the reaper removes anything it left on the target');
      })
      .catch((err: unknown) => this.logger.warn({ ephemeralId: id, err: errorType(err) }, 'failed creation not recorded; the reaper takes the intent over'));
  }

  /** A claimant that lost its row created the account anyway: whatever the row says now, the reaper removes it again. */
  private async reopenForRemoval(id: string, username: string): Promise<void> {
    await this.uow.run(async ({ em, audit }) => {
      await this.store.reopenForRemoval(em, id);
      await audit({ type: 'ephemeral.reopened', actor: null, subjectType: 'ephemeral_account', subjectId: id, details: { username, because: 'created after its claim was lost' } });
    });
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

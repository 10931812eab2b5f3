import { randomUUID } from 'node:crypto';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { Account, AccountStore } from '../accounts/account-store';
import { nextRotationAt } from '../accounts/policy';
import { Actor } from '../common/actor';
import { Clock } from '../common/clock';
import { DomainException, Errors } from '../common/errors';
import { APP_CONFIG, AppConfig } from '../config/config';
import { ConnectorError } from '../connectors/connector.errors';
import { PasswordGenerator } from '../crypto/password-generator';
import { backoffSeconds, ClaimedWork, errorType, SkipItem } from '../database/claimed-work';
import { Tx, UnitOfWork } from '../database/unit-of-work';
import { MetricsService } from '../metrics/metrics.service';
import { TargetConnection } from '../targets/target-connection';
import { TargetsService } from '../targets/targets.service';
import { PendingRotation, RotationReason, RotationStore, RotationView } from './rotation-store';

export type { RotationReason, RotationView } from './rotation-store';

/** Failed rotations are retried after a capped, jittered backoff: 30 s, 60 s, … up to an hour. */
export const ROTATION_BACKOFF = { baseSeconds: 30, capSeconds: 3600 };

/** What a rotation's target work needs, loaded after the write-ahead committed. */
interface RotationContext {
  rotation: PendingRotation;
  account: Account;
  conn: TargetConnection;
}

/**
 * Crash-safe rotation (docs/invariants.md 7–9, 16). Order: (1) the new password is committed encrypted as a pending
 * rotation, claimed by this instance; (2) it is set on the target through the admin credential; (3) the vault
 * logs in with it; (4) it is committed as current — only if this instance still holds the claim. Any failure,
 * and recovery of a claim left by a dead instance, is resolved by test logins: the pending password works →
 * it becomes current; the current one works → the pending one is discarded; neither → counted as a failure,
 * retried later with a fresh password (the admin credential can always set one), `needs_attention` at the limit.
 * The account's status changes are AccountStore transitions (beginRotation, finishRotation, failRotation).
 */
@Injectable()
export class RotationService {
  private readonly logger = new Logger(RotationService.name);

  constructor(
    private readonly dataSource: DataSource,
    private readonly uow: UnitOfWork,
    private readonly accounts: AccountStore,
    private readonly store: RotationStore,
    private readonly targets: TargetsService,
    private readonly generator: PasswordGenerator,
    private readonly work: ClaimedWork,
    private readonly clock: Clock,
    private readonly metrics: MetricsService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /**
   * `POST /v1/accounts/:id/rotate`: writes the pending rotation now and does the target work in the background (or,
   * with `wait`, before returning, for callers that want the outcome: bench/rotation).
   */
  async request(actor: Actor, accountId: string, opts: { wait?: boolean } = {}): Promise<{ rotationId: string }> {
    const { rotationId, fresh } = await this.uow.run(async (tx) => {
      const account = await this.accounts.find(tx.em, accountId, true);
      if (account.status === 'rotating') {
        const pending = await this.store.pendingOf(tx.em, accountId);
        // one rotation at a time: the caller gets the running one, which its claimant (or recovery) finishes
        if (pending) return { rotationId: pending, fresh: false };
      }
      if (account.status === 'checked_out') throw Errors.conflict('ACCOUNT_CHECKED_OUT', 'the account is checked out; it rotates at check-in');
      return { rotationId: await this.writeAhead(tx, account, 'manual', actor), fresh: true };
    });
    if (fresh) {
      const done = this.work.track(this.execute(rotationId));
      if (opts.wait) await done; // bench/rotation measures the whole rotation
    }
    return { rotationId };
  }

  /**
   * Step 1 inside the caller's unit of work (the account row locked by the caller): the account begins rotating,
   * and a fresh password, encrypted, is committed with the claim before anything touches the target.
   */
  async writeAhead(tx: Tx, account: Pick<Account, 'id' | 'targetId' | 'policy'>, reason: RotationReason, actor: Actor | null): Promise<string> {
    const target = await this.targets.find(tx.em, account.targetId);
    const password = this.generator.generate(target.type, { length: account.policy.passwordLength, classes: account.policy.passwordClasses });
    if (!(await this.accounts.beginRotation(tx.em, account.id))) {
      throw Errors.conflict('ACCOUNT_ROTATING', 'the account is being rotated (or cannot be now); try again in a moment');
    }
    const id = randomUUID();
    await this.store.insertPending(tx.em, { id, accountId: account.id, reason, password, requestedBy: actor?.id ?? 'system' });
    await tx.audit({ type: 'rotation.started', actor, subjectType: 'account', subjectId: account.id, details: { rotationId: id, reason } });
    return id;
  }

  /** Steps 2–4 for a rotation this instance has written and claimed. Never throws. */
  async execute(rotationId: string): Promise<'succeeded' | 'failed' | 'pending'> {
    this.work.crash('rotation-after-pending-write');
    let ctx: RotationContext;
    try {
      ctx = await this.load(rotationId);
    } catch (e) {
      this.logger.warn({ rotationId, err: errorType(e) }, 'rotation could not be loaded');
      return 'pending';
    }
    const who = { username: ctx.account.username, password: ctx.rotation.password };
    try {
      // a claim that lapsed while this rotation waited its turn may be someone else's now: never touch the target then
      if (!(await this.store.renew(rotationId))) return 'pending';
      await ctx.conn.updatePassword(who);
      this.work.crash('rotation-after-target-change');
      await ctx.conn.login(who);
      this.work.crash('rotation-after-login-check');
      this.work.crash('rotation-before-commit');
      return (await this.commit(ctx.rotation, 'verified')) ? 'succeeded' : 'pending';
    } catch (e) {
      return this.resolve(ctx, e instanceof DomainException ? e.code : 'TARGET_ERROR');
    }
  }

  /**
   * Recovery (start-up and periodic): takes over pending rotations whose claim has expired and settles them. One
   * that cannot be loaded (its target's credential no longer decrypts, say) never stops the others: it is logged and
   * keeps this instance's claim until the claim lapses, and the drain moves on.
   */
  recoverStale(limit = 50): Promise<number> {
    return this.work.drain<string>({
      name: 'rotation-recovery',
      take: (skip) => this.store.claimLapsed(skip),
      key: (id) => id,
      run: async (id) => {
        await this.resolve(await this.load(id), null);
      },
      batchSize: this.config.rotation.concurrency,
      limit,
    });
  }

  /**
   * The scheduler's sweep: claims due accounts one at a time with SKIP LOCKED (so each is rotated once across
   * instances), writing each one's pending rotation in the same transaction, and runs them a batch at a time.
   */
  rotateDue(limit = this.config.rotation.concurrency): Promise<number> {
    return this.work.drain<{ accountId: string; rotationId: string }>({
      name: 'rotation-due',
      take: (skip) => this.takeDue(skip),
      key: (due) => due.accountId, // skip is a list of account ids (takeDue passes over them)
      run: async (due) => void (await this.execute(due.rotationId)),
      batchSize: this.config.rotation.concurrency,
      limit,
    });
  }

  /** Waits for background rotations (tests). */
  settle(): Promise<void> {
    return this.work.settle();
  }

  async history(accountId: string): Promise<RotationView[]> {
    await this.accounts.find(this.dataSource.manager, accountId);
    return this.store.history(accountId);
  }

  /** One due account, its rotation written ahead; null when none is due. An account that cannot be is skipped. */
  private async takeDue(skip: readonly string[]): Promise<{ accountId: string; rotationId: string } | null> {
    let found: string | undefined;
    try {
      return await this.uow.run(async (tx) => {
        const [account] = await this.accounts.takeDueForRotation(tx.em, 1, this.clock.now(), skip);
        if (!account) return null;
        found = account.id;
        return { accountId: account.id, rotationId: await this.writeAhead(tx, account, account.rotationFailures > 0 ? 'retry' : 'scheduled', null) };
      });
    } catch (e) {
      if (found === undefined) throw e; // the database itself failed: the sweep stops and retries later
      throw new SkipItem(found, e);
    }
  }

  private async load(rotationId: string): Promise<RotationContext> {
    const rotation = await this.store.loadPending(rotationId);
    const account = await this.accounts.find(this.dataSource.manager, rotation.accountId);
    return { rotation, account, conn: await this.targets.connectById(this.dataSource.manager, account.targetId) };
  }

  /** Decides a rotation that failed or was abandoned, by logging in with each password the vault holds. */
  private async resolve(ctx: RotationContext, errorCode: string | null): Promise<'succeeded' | 'failed' | 'pending'> {
    const works = async (password: string | null) => {
      if (password === null) return false;
      try {
        await ctx.conn.login({ username: ctx.account.username, password });
        return true;
      } catch (e) {
        if (e instanceof ConnectorError && e.connectorCode === 'TARGET_AUTH_FAILED') return false;
        throw e; // cannot tell: keep the rotation pending for a later recovery
      }
    };
    try {
      if (await works(ctx.rotation.password)) return (await this.commit(ctx.rotation, 'recovered')) ? 'succeeded' : 'pending';
      const currentWorks = await works(this.accounts.password(ctx.account));
      await this.fail(ctx.rotation, errorCode ?? 'ABANDONED', currentWorks);
      return 'failed';
    } catch (e) {
      this.logger.warn(
        { accountId: ctx.account.id, targetId: ctx.account.targetId, rotationId: ctx.rotation.id, code: errorCode, loginCode: e instanceof DomainException ? e.code : 'ERROR' },
        'rotation failed and the target cannot tell which password works now: the rotation stays pending and recovery tries again',
      );
      return 'pending';
    }
  }

  /** Step 4: the pending password becomes current — only for the instance that still holds the claim. */
  private async commit(rotation: PendingRotation, how: 'verified' | 'recovered'): Promise<boolean> {
    return this.uow.run(async ({ em, audit }) => {
      if (!(await this.store.lockIfOurs(em, rotation.id))) return false; // a newer claimant owns it now
      const account = await this.accounts.find(em, rotation.accountId, true);
      const now = this.clock.now();
      if (!(await this.accounts.finishRotation(em, account.id, rotation.password, now, nextRotationAt(account.policy, now)))) {
        throw new Error(`account ${account.id} is ${account.status}, not rotating, under a pending rotation`);
      }
      await this.store.succeed(em, rotation.id);
      await audit({ type: 'rotation.succeeded', actor: null, subjectType: 'account', subjectId: account.id, details: { rotationId: rotation.id, how } });
      this.metrics.rotations.inc({ outcome: 'succeeded', reason: rotation.reason });
      return true;
    });
  }

  /** A failed attempt: the pending password is discarded; retry later with capped, jittered backoff. */
  private async fail(rotation: PendingRotation, errorCode: string, currentWorks: boolean): Promise<void> {
    await this.uow.run(async (tx) => {
      const { em, audit } = tx;
      if (!(await this.store.lockIfOurs(em, rotation.id))) return;
      const account = await this.accounts.find(em, rotation.accountId, true);
      const failures = account.rotationFailures + 1;
      const attention = failures >= this.config.rotation.maxFailures;
      const nextAt = attention ? null : new Date(this.clock.now().getTime() + backoffSeconds(failures, ROTATION_BACKOFF) * 1000);
      if (!(await this.accounts.failRotation(em, account.id, { attention, failures, nextAt }))) {
        throw new Error(`account ${account.id} is ${account.status}, not rotating, under a pending rotation`);
      }
      await this.store.fail(em, rotation.id, errorCode);
      await audit({
        type: 'rotation.failed',
        actor: null,
        subjectType: 'account',
        subjectId: account.id,
        outcome: 'failure',
        details: { rotationId: rotation.id, errorCode, failures, currentPasswordWorks: currentWorks, needsAttention: attention },
      });
      if (attention) {
        // administrators and auditors are told with the change (nothing rotates it again until one of them acts)
        const target = await this.targets.find(em, account.targetId);
        await tx.notify({
          type: 'alert.account_needs_attention',
          subjectType: 'account',
          subjectId: account.id,
          targetId: account.targetId,
          to: { roles: ['admin', 'auditor'] },
          facts: {
            summary: `Rotating ${account.username} on ${target.name} failed ${failures} times in a row: the account needs attention`,
            target: target.name,
            account: account.username,
            reason: currentWorks ? 'the current password still works' : 'neither the current nor the new password works',
            code: errorCode,
            count: failures,
          },
        });
      }
      this.metrics.rotations.inc({ outcome: 'failed', reason: rotation.reason });
      // operators tailing the logs see it too (what, which account and target, the code; never a secret)
      const where = { accountId: account.id, targetId: account.targetId, rotationId: rotation.id, reason: rotation.reason, code: errorCode, failures };
      if (attention) this.logger.warn(where, `rotation failed ${failures} times in a row: the account is needs_attention and is not rotated again until an admin acts`);
      else this.logger.warn({ ...where, currentPasswordWorks: currentWorks }, 'rotation failed; retried with a fresh password after a backoff');
    });
  }
}

import { AsyncLocalStorage } from 'node:async_hooks';
import { Inject, Injectable } from '@nestjs/common';
import { Tx, TxParticipant, UnitOfWork } from '../database/unit-of-work';
import { DataSource, EntityManager } from 'typeorm';
import { Clock } from '../common/clock';
import { DomainException, Errors } from '../common/errors';
import { SecretBoxService } from '../crypto/secret-box.service';
import { APP_CONFIG, AppConfig } from '../config/config';
import { findByIdOrThrow } from '../database/queries';
import { MetricsService } from '../metrics/metrics.service';
import { Actor } from '../common/actor';
import { insertSession } from './sessions';
import { Reservation, THROTTLE_RULES, ThrottleService } from './throttle.service';
import { TOTP_PERIOD_SECONDS, TotpService } from './totp.service';
import { UserEntity } from './user.entity';

/** The wrong MFA codes for one user within the throttle's user window that raise `alert.mfa_failures` (once per window). */
export const MFA_ALERT_AFTER = 5;

export const mfaSecretRef = (userId: string, column: 'mfa_secret' | 'mfa_pending_secret') => ({ table: 'users', rowId: userId, column });

/**
 * A step-up code verified for an action that burns it in its own transaction ({@link MfaService.stepUp}): `pending`
 * until a unit of work takes it, `taken` while that transaction runs, `burned` once it committed, `replayed` when the
 * burn found the step (or a newer one) already used.
 */
interface StepUp {
  actor: Actor;
  userId: string;
  /** The stored (encrypted) seed the code was checked against: a burn after an admin reset or re-enrollment finds none. */
  seed: Buffer;
  step: number;
  action: string;
  attempt: Reservation;
  state: 'pending' | 'taken' | 'burned' | 'replayed';
}

/** Thrown inside the action's transaction when its step-up code was already used: the transaction rolls back. */
class StepUpReplayed extends Error {}

/**
 * Thrown into a unit of work that opens while another one of the same step-up action is burning its code, or after
 * the code was found used: nothing may commit in a step-up action but with its own burn (fail closed).
 */
class StepUpUnsettled extends Error {}

/**
 * The one atomic decision: only a step newer than the last accepted one passes, and only while the seed the code was
 * checked against is still the user's (an admin reset or a restarted enrollment in between: nothing is burned).
 */
const burnSql = (seed: 'mfa_secret' | 'mfa_pending_secret') => `UPDATE users SET mfa_last_step = $2 WHERE id = $1 AND mfa_last_step < $2 AND ${seed} = $3`;

/**
 * TOTP enrollment and verification. A code is accepted once per user: the accepted time step is burned by
 * one conditional UPDATE (`mfa_last_step < step`), so the same or an older step never passes again, even
 * for two requests racing with one code. Failures count towards throttling and are audited.
 *
 * On the hot paths (`@RequiresMfa({ inTransaction: true })`) the burn, its `mfa.verified` event and the throttle's
 * release are the first statements of the action's own transaction ({@link stepUp}): one transaction per action.
 */
@Injectable()
export class MfaService implements TxParticipant {
  private readonly stepUps = new AsyncLocalStorage<StepUp>();

  constructor(
    private readonly dataSource: DataSource,
    private readonly uow: UnitOfWork,
    private readonly secrets: SecretBoxService,
    private readonly totp: TotpService,
    private readonly throttle: ThrottleService,
    private readonly metrics: MetricsService,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    uow.register(this);
  }

  join(): void {
    // nothing to add to the transaction: a step-up is burned in begin()
  }

  /**
   * The first unit of work inside {@link stepUp}'s action burns the code before the action's own statements: the
   * step, `mfa.verified` and the throttle's release commit or roll back with the action. A step already used rolls
   * the transaction back before the action touched anything.
   */
  async begin(tx: Tx): Promise<void> {
    const s = this.stepUps.getStore();
    if (!s || s.state === 'burned') return;
    // another transaction of this action holds the burn (a unit of work started alongside), or the code was used:
    // nothing commits in a step-up action but with its own burn
    if (s.state !== 'pending') throw new StepUpUnsettled(`step-up ${s.state}: no other transaction may commit in this action`);
    s.state = 'taken';
    // rolled back (the action was refused, or the handler goes on after a failed attempt): the next one burns it
    tx.afterRollback(() => {
      if (s.state === 'taken') s.state = 'pending';
    });
    if (!(await this.burn(tx, s))) {
      s.state = 'replayed';
      throw new StepUpReplayed('step-up code already used');
    }
  }

  /**
   * Step-up for an action that makes its change in a unit of work (the hot paths): the code is checked (throttled,
   * as {@link verify}) and `action` runs; the transaction it commits burns the code ({@link begin}: a transaction
   * that rolls back gives the burn back to the next). When the action is refused (it throws) the code is burned all
   * the same, in a transaction of its own — as when the step-up came first: a code is spent by the request it came
   * with, whatever the answer. An action that finished without a unit of work has its code burned after it (a replay
   * then is refused, though the action ran: only actions whose first effect is a unit of work may use this). The
   * throttle's reservation is given back whenever the attempt was not a wrong code, however the request ended.
   */
  async stepUp<T>(actor: Actor, code: string, address: string | undefined, action: string, then: () => Promise<T>): Promise<T> {
    const { user, secret } = await this.enrolled(actor);
    const { who, attempt, step } = await this.match(actor, user.id, secret, code, address, action);
    const s: StepUp = { actor, userId: user.id, seed: user.mfaSecret!, step, action, attempt, state: 'pending' };
    let result: T;
    try {
      result = await this.stepUps.run(s, then);
    } catch (e) {
      if (s.state === 'replayed') return this.replayed(actor, who, action, step, attempt);
      // refused: the code is spent all the same; lost to a concurrent use of it, or not burned at all (the database
      // failed), the attempt was no guess either: its reservation is given back
      if (s.state !== 'burned' && !(await this.burnAlone(s).catch(() => false))) await this.throttle.release(attempt).catch(() => undefined);
      throw e;
    }
    if (s.state === 'burned') return result;
    if (s.state !== 'replayed' && (await this.burnAlone(s).catch(async (e: unknown) => {
      await this.throttle.release(attempt).catch(() => undefined);
      throw e;
    }))) return result;
    return this.replayed(actor, who, action, step, attempt);
  }

  /** Burns the step in `tx` (one conditional UPDATE), with its event and the throttle's release; false when used already. */
  private async burn(tx: Tx, s: StepUp): Promise<boolean> {
    // (TypeORM answers a raw UPDATE with [rows, rowCount])
    const [, updated]: [unknown[], number] = await tx.em.query(burnSql('mfa_secret'), [s.userId, s.step, s.seed]);
    if (updated !== 1) return false;
    await tx.audit({ type: 'mfa.verified', actor: s.actor, subjectType: 'user', subjectId: s.userId, details: { action: s.action } });
    // a success is not a failure: it does not count towards the throttle
    await this.throttle.releaseOn(tx.em, s.attempt);
    tx.afterCommit(() => {
      s.state = 'burned';
      s.attempt.released = true;
    });
    return true;
  }

  private async burnAlone(s: StepUp): Promise<boolean> {
    s.state = 'taken';
    return this.uow.run((tx) => this.burn(tx, s));
  }

  /** Starts (or restarts) enrollment: a new seed, stored encrypted as pending until confirmed. */
  async startEnrollment(actor: Actor): Promise<{ secret: string; otpauthUri: string }> {
    this.assertUser(actor);
    const secret = this.totp.newSecret();
    await this.uow.run(async ({ em, audit }) => {
      const user = await lockUser(em, actor.id);
      if (user.mfaSecret) throw Errors.conflict('MFA_ALREADY_ENROLLED', 'MFA is already enrolled; an admin can reset it');
      await em.getRepository(UserEntity).update(
        { id: actor.id },
        { mfaPendingSecret: this.secrets.encrypt(mfaSecretRef(actor.id, 'mfa_pending_secret'), secret) },
      );
      await audit({ type: 'mfa.enrollment_started', actor, subjectType: 'user', subjectId: actor.id });
    });
    return { secret, otpauthUri: this.totp.uri(actor.name, secret) };
  }

  /**
   * Confirms enrollment with a first code. Every token the user had (this request's included) was issued on the
   * password alone, so all of them end here, in the same transaction, and the answer carries a fresh token: the
   * only session that continues is the one that has just proved the second factor. `issue` makes it: a bearer token
   * by default, a browser session when the request came with the portal's cookie.
   */
  async confirmEnrollment(actor: Actor, code: string, address?: string): Promise<EnrollmentConfirmed>;
  async confirmEnrollment<T extends object>(actor: Actor, code: string, address: string | undefined, issue: (em: EntityManager) => Promise<T>): Promise<{ mfaEnrolled: true } & T>;
  async confirmEnrollment(
    actor: Actor,
    code: string,
    address?: string,
    issue: (em: EntityManager) => Promise<object> = (em) => insertSession(em, actor.id, this.clock.now(), this.config.tokenTtlSeconds),
  ): Promise<{ mfaEnrolled: true }> {
    this.assertUser(actor);
    const user = await this.dataSource.getRepository(UserEntity).findOneByOrFail({ id: actor.id });
    if (user.mfaSecret) throw Errors.conflict('MFA_ALREADY_ENROLLED', 'MFA is already enrolled');
    if (!user.mfaPendingSecret) throw Errors.conflict('MFA_ENROLLMENT_NOT_STARTED', 'start with POST /v1/me/mfa/totp');
    const pending = this.secrets.decrypt(mfaSecretRef(actor.id, 'mfa_pending_secret'), user.mfaPendingSecret);
    let session: object | undefined;
    await this.checkCode(actor, user, pending, code, address, 'enroll', async (em) => {
      // the burn above locked the row: a concurrent confirmation (or reset) is decided here, once
      const [, updated]: [unknown[], number] = await em.query(
        'UPDATE users SET mfa_secret = $2, mfa_pending_secret = NULL, mfa_enrolled_at = now() WHERE id = $1 AND mfa_secret IS NULL AND mfa_pending_secret = $3',
        [actor.id, this.secrets.encrypt(mfaSecretRef(actor.id, 'mfa_secret'), pending), user.mfaPendingSecret],
      );
      if (updated !== 1) throw Errors.conflict('MFA_ALREADY_ENROLLED', 'MFA was enrolled or restarted meanwhile');
      await revokeSessions(em, actor.id);
      session = await issue(em);
    });
    return { mfaEnrolled: true, ...session! };
  }

  /** Step-up check for an action marked MFA, and the second factor at login. */
  async verify(actor: Actor, code: string, address: string | undefined, action: string): Promise<void> {
    const { user, secret } = await this.enrolled(actor);
    await this.checkCode(actor, user, secret, code, address, action);
  }

  /** The user behind `actor` and their TOTP seed; MFA_ENROLLMENT_REQUIRED without one. */
  private async enrolled(actor: Actor): Promise<{ user: UserEntity; secret: string }> {
    this.assertUser(actor);
    const user = await this.dataSource.getRepository(UserEntity).findOneByOrFail({ id: actor.id });
    if (!user.mfaSecret) throw new DomainException('MFA_ENROLLMENT_REQUIRED', 'enroll TOTP first: POST /v1/me/mfa/totp');
    return { user, secret: this.secrets.decrypt(mfaSecretRef(user.id, 'mfa_secret'), user.mfaSecret) };
  }

  /**
   * The attempt is reserved in the throttle, then the code matched to its time step; a wrong code is refused (and
   * keeps counting). The step is not burned here.
   */
  private async match(actor: Actor, userId: string, secret: string, code: string, address: string | undefined, action: string) {
    const who = { subject: userId, address };
    // counted before the code is looked at, so a burst cannot evaluate more codes than the limit
    const attempt = await this.throttle.reserve('mfa', who);
    const step = await this.totp.matchStep(secret, code);
    if (step === null) return this.fail(actor, who, action, 'MFA_INVALID', 'the code is not valid', undefined, attempt);
    return { who, attempt, step };
  }

  /** Admin reset: the user must enroll again; their open sessions end. */
  async reset(admin: Actor, userId: string): Promise<void> {
    await this.uow.run(async ({ em, audit }) => {
      await lockUser(em, userId);
      await em.getRepository(UserEntity).update({ id: userId }, { mfaSecret: null, mfaPendingSecret: null, mfaEnrolledAt: null });
      await revokeSessions(em, userId);
      await audit({ type: 'mfa.reset', actor: admin, subjectType: 'user', subjectId: userId });
    });
  }

  private async checkCode(
    actor: Actor,
    user: UserEntity,
    secret: string,
    code: string,
    address: string | undefined,
    action: string,
    onSuccess?: (em: EntityManager) => Promise<void>,
  ): Promise<void> {
    const { who, attempt, step } = await this.match(actor, user.id, secret, code, address, action);
    const seed = action === 'enroll' ? 'mfa_pending_secret' : 'mfa_secret';
    const burned = await this.uow
      .run(async ({ em, audit }) => {
        // (TypeORM answers a raw UPDATE with [rows, rowCount])
        const [, updated]: [unknown[], number] = await em.query(burnSql(seed), [user.id, step, seed === 'mfa_secret' ? user.mfaSecret : user.mfaPendingSecret]);
        if (updated !== 1) return false;
        await onSuccess?.(em);
        await audit({ type: action === 'enroll' ? 'mfa.enrolled' : 'mfa.verified', actor, subjectType: 'user', subjectId: user.id, details: { action } });
        return true;
      })
      .catch(async (e: unknown) => {
        // not burned for a reason that is no guess (the database failed, the enrollment changed): not counted
        await this.throttle.release(attempt).catch(() => undefined);
        throw e;
      });
    if (!burned) return this.replayed(actor, who, action, step, attempt);
    // a success is not a failure: it does not count
    await this.throttle.release(attempt);
  }

  /** A valid code whose step (or a newer one) was used already: not a guess (the attempt does not count), refused. */
  private async replayed(actor: Actor, who: { subject: string; address?: string }, action: string, step: number, attempt: Reservation): Promise<never> {
    await this.throttle.release(attempt);
    const [{ last }] = await this.dataSource.query('SELECT mfa_last_step::text AS last FROM users WHERE id = $1', [who.subject]);
    const next = (Math.max(Number(last), step) + 1) * TOTP_PERIOD_SECONDS * 1000;
    return this.fail(actor, who, action, 'MFA_REPLAYED', 'this code (or a newer one) was already used; wait for the next code', {
      nextCodeAt: new Date(next).toISOString(),
    });
  }

  private async fail(
    actor: Actor,
    who: { subject: string; address?: string },
    action: string,
    code: 'MFA_INVALID' | 'MFA_REPLAYED',
    message: string,
    extra?: Record<string, unknown>,
    attempt?: Reservation,
  ): Promise<never> {
    this.metrics.mfaFailures.inc({ reason: code });
    // a wrong code keeps its reservation: the user's count in the throttle window says how many there were
    const failures = attempt ? this.throttle.userCount(attempt, 'mfa', actor.id) : 0;
    await this.uow.run(async (tx) => {
      await tx.audit({ type: 'mfa.failed', actor, subjectType: 'user', subjectId: actor.id, outcome: 'failure', details: { action, reason: code, address: who.address ?? null } });
      // repeated failures for one user: administrators and auditors are told once per window, with the event
      if (failures >= MFA_ALERT_AFTER && (await this.throttle.firstAlertOfWindow(tx.em, 'mfa', actor.id))) {
        await tx.notify({
          type: 'alert.mfa_failures',
          subjectType: 'user',
          subjectId: actor.id,
          to: { roles: ['admin', 'auditor'] },
          facts: {
            summary: `${failures} wrong MFA codes for ${actor.name} within ${THROTTLE_RULES.user.windowSeconds / 60} minutes${who.address ? ` (the last from ${who.address})` : ''}`,
            reason: `wrong MFA codes (last during ${action})`,
            code,
            count: failures,
          },
        });
      }
    });
    throw new DomainException(code, message, extra);
  }

  private assertUser(actor: Actor): void {
    if (actor.kind !== 'user') throw Errors.forbidden('service tokens cannot use MFA');
  }
}

export interface EnrollmentConfirmed {
  mfaEnrolled: true;
  /** The new session: every earlier token of the user has ended. */
  accessToken: string;
  expiresAt: string;
}

/** Ends every live login token of the user (inside the caller's transaction). */
export const revokeSessions = (em: EntityManager, userId: string) =>
  em.query('UPDATE access_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL', [userId]);

const lockUser = (em: EntityManager, id: string) => findByIdOrThrow(em, UserEntity, id, 'user', true);

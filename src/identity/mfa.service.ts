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
import { WebAuthnStore } from './webauthn/webauthn-store';
import { WebAuthnService } from './webauthn/webauthn.service';
import { factorDetails, factorOf, FactorUsed, MfaMethod, Proven, REFUSALS, requireWebauthnStepUp, StepUp, StepUpProof, stepUps } from './step-up';

export type { FactorUsed, MfaMethod, StepUpProof } from './step-up';

/** The wrong MFA codes for one user within the throttle's user window that raise `alert.mfa_failures` (once per window). */
export const MFA_ALERT_AFTER = 5;

export const mfaSecretRef = (userId: string, column: 'mfa_secret' | 'mfa_pending_secret') => ({ table: 'users', rowId: userId, column });

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
  constructor(
    private readonly dataSource: DataSource,
    private readonly uow: UnitOfWork,
    private readonly secrets: SecretBoxService,
    private readonly totp: TotpService,
    private readonly webauthn: WebAuthnService,
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
    const s = stepUps.getStore();
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
  async stepUp<T>(actor: Actor, proof: StepUpProof | string, address: string | undefined, action: string, then: () => Promise<T>): Promise<T> {
    const { who, attempt, proven } = await this.prove(actor, proof, address, action);
    const s: StepUp = { actor, userId: actor.id, proven, action, attempt, state: 'pending' };
    let result: T;
    try {
      result = await stepUps.run(s, then);
    } catch (e) {
      if (s.state === 'replayed') return this.replayed(actor, who, action, proven, attempt, s.clone);
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
    return this.replayed(actor, who, action, proven, attempt, s.clone);
  }

  /**
   * Step-up for the other @RequiresMfa actions: the proof is verified and burned first ({@link verify}), then `then`
   * runs inside the step-up, so a policy can ask which method it was ({@link requireWebauthnStepUp}).
   */
  async verifyThen<T>(actor: Actor, proof: StepUpProof | string, address: string | undefined, action: string, then: () => Promise<T>): Promise<T> {
    const s = await this.verifyStepUp(actor, proof, address, action);
    return stepUps.run(s, then);
  }

  /**
   * Burns the proof in `tx` with its event and the throttle's release; false when used already. TOTP: the step, by one
   * conditional UPDATE of the user; a security key: its challenge, by one conditional UPDATE (the key's counter and
   * last use with it).
   */
  private async burn(tx: Tx, s: StepUp): Promise<boolean> {
    const p = s.proven;
    if (p.method === 'totp') {
      // (TypeORM answers a raw UPDATE with [rows, rowCount])
      const [, updated]: [unknown[], number] = await tx.em.query(burnSql('mfa_secret'), [s.userId, p.step, p.seed]);
      if (updated !== 1) return false;
    } else {
      const used = await this.webauthn.burn(tx, p.assertion);
      if (used.outcome !== 'burned') {
        s.clone = used.outcome === 'clone';
        return false;
      }
      // a key sign-in: the password attempt its first step kept was no guess either
      if (used.passwordAttempt) await this.throttle.releaseOn(tx.em, used.passwordAttempt);
    }
    await tx.audit({ type: 'mfa.verified', actor: s.actor, subjectType: 'user', subjectId: s.userId, details: { action: s.action, ...factorDetails(p) } });
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
    await this.checkEnrollmentCode(actor, user, pending, code, address, async (em) => {
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

  /** Step-up check for an action marked MFA, and the second factor at login: verified and burned at once. */
  async verify(actor: Actor, proof: StepUpProof | string, address: string | undefined, action: string): Promise<FactorUsed> {
    return factorOf((await this.verifyStepUp(actor, proof, address, action)).proven);
  }

  private async verifyStepUp(actor: Actor, proof: StepUpProof | string, address: string | undefined, action: string): Promise<StepUp> {
    const { who, attempt, proven } = await this.prove(actor, proof, address, action);
    const s: StepUp = { actor, userId: actor.id, proven, action, attempt, state: 'pending' };
    const burned = await this.burnAlone(s).catch(async (e: unknown) => {
      // not burned for a reason that is no guess (the database failed): not counted
      await this.throttle.release(attempt).catch(() => undefined);
      throw e;
    });
    if (!burned) return this.replayed(actor, who, action, proven, attempt, s.clone);
    s.state = 'burned';
    return s;
  }

  /**
   * The second factor of a password sign-in for a user who has one: `code` (TOTP) or `assertion` (a security key's
   * answer to the login challenge). Neither: 401 MFA_REQUIRED with `methods` (what the user has) and, for a user with
   * a usable key, `webauthn: {challengeId, options}` — a challenge made only now, after the password was right.
   * Answers null for a user without a second factor (they may only enrol).
   */
  async signInFactor(actor: Actor, input: { code?: string; assertion?: unknown }, address: string | undefined, passwordAttempt?: Reservation): Promise<FactorUsed | null> {
    const methods = await this.methodsOf(actor.id);
    if (methods.length === 0) return null;
    if (input.code !== undefined && input.assertion !== undefined) throw new DomainException('MFA_INVALID', 'send either `code` or `assertion`, not both');
    if (input.code !== undefined) return this.verify(actor, { method: 'totp', code: input.code }, address, 'login');
    if (input.assertion !== undefined) return this.verify(actor, { method: 'webauthn', assertion: input.assertion, purpose: 'login', binding: 'login' }, address, 'login');
    const webauthn = methods.includes('webauthn') ? await this.webauthn.loginChallenge(actor.id, passwordAttempt) : undefined;
    const how = methods.map((m) => (m === 'totp' ? 'the current TOTP code as `code`' : "your security key's answer to `webauthn.options` as `assertion`")).join(', or ');
    throw new DomainException('MFA_REQUIRED', `this user has MFA: send ${how}`, { methods, ...(webauthn ? { webauthn } : {}) });
  }

  /** The second factors the user has: `totp` (confirmed) and `webauthn` (a registered key, flagged ones included). */
  async methodsOf(userId: string): Promise<MfaMethod[]> {
    const [row]: Array<{ totp: boolean; webauthn: boolean }> = await this.dataSource.query(
      'SELECT mfa_secret IS NOT NULL AS totp, EXISTS (SELECT 1 FROM webauthn_credentials w WHERE w.user_id = u.id) AS webauthn FROM users u WHERE id = $1',
      [userId],
    );
    return row ? (['totp', 'webauthn'] as const).filter((m) => row[m]) : [];
  }

  /**
   * The attempt is reserved in the throttle (counted before anything is evaluated), then the proof checked: the TOTP
   * code matched to its time step, or the assertion verified against its challenge. A wrong one is refused (and keeps
   * counting); nothing is burned here.
   */
  private async prove(actor: Actor, given: StepUpProof | string, address: string | undefined, action: string) {
    this.assertUser(actor);
    // a bare string is a TOTP code
    const proof: StepUpProof = typeof given === 'string' ? { method: 'totp', code: given } : given;
    const who = { subject: actor.id, address };
    if (proof.method === 'totp') {
      const user = await this.dataSource.getRepository(UserEntity).findOneByOrFail({ id: actor.id });
      if (!user.mfaSecret) {
        if (await this.webauthn.hasAny(user.id)) throw new DomainException('MFA_INVALID', 'you have no authenticator app enrolled: use your security key (X-MFA-Assertion)');
        throw new DomainException('MFA_ENROLLMENT_REQUIRED', 'enroll TOTP or a security key first: POST /v1/me/mfa/totp or /v1/me/webauthn/registrations');
      }
      const secret = this.secrets.decrypt(mfaSecretRef(user.id, 'mfa_secret'), user.mfaSecret);
      const attempt = await this.throttle.reserve('mfa', who);
      const step = await this.totp.matchStep(secret, proof.code);
      if (step === null) return this.fail({ actor, who, action, method: 'totp', code: 'MFA_INVALID', message: 'the code is not valid', attempt });
      return { who, attempt, proven: { method: 'totp' as const, seed: user.mfaSecret, step } };
    }
    const attempt = await this.throttle.reserve('mfa', who);
    const checked = await this.webauthn.check(actor, proof.assertion, proof.purpose, proof.binding);
    if ('challengeId' in checked) return { who, attempt, proven: { method: 'webauthn' as const, assertion: checked } };
    const failure = { actor, who, action, method: 'webauthn' as const, credentialId: checked.credentialId, reason: checked.reason };
    if (checked.code === 'MFA_REPLAYED') {
      // a replay is no guess: not counted
      await this.throttle.release(attempt);
      return this.fail({ ...failure, code: 'MFA_REPLAYED', message: "this assertion's challenge was already used: ask for a new one" });
    }
    return this.fail({ ...failure, code: 'MFA_INVALID', message: `the security key assertion is not valid (${REFUSALS[checked.reason] ?? 'refused'})`, attempt });
  }

  /** Admin reset: TOTP and every security key go, the user must enroll again; their open sessions end. */
  async reset(admin: Actor, userId: string): Promise<void> {
    await this.uow.run(async ({ em, audit }) => {
      await lockUser(em, userId);
      // only a key weakens a key: a user's usable keys go only with the admin's own key step-up
      if ((await WebAuthnStore.credentialsOf(em, userId)).some((k) => !k.flaggedAt)) requireWebauthnStepUp("resetting the MFA of a user who has a security key needs the admin's security key");
      await em.getRepository(UserEntity).update({ id: userId }, { mfaSecret: null, mfaPendingSecret: null, mfaEnrolledAt: null });
      // recovery from a lost security key too: every key goes, the user enrols again
      const webauthnRemoved = await WebAuthnStore.deleteAllOf(em, userId);
      await revokeSessions(em, userId);
      await audit({ type: 'mfa.reset', actor: admin, subjectType: 'user', subjectId: userId, details: { webauthnRemoved } });
    });
  }

  /** Enrollment's first code, checked against the pending seed and burned with `onSuccess` (the seed becomes the user's). */
  private async checkEnrollmentCode(actor: Actor, user: UserEntity, secret: string, code: string, address: string | undefined, onSuccess: (em: EntityManager) => Promise<void>): Promise<void> {
    const who = { subject: user.id, address };
    // counted before the code is looked at, so a burst cannot evaluate more codes than the limit
    const attempt = await this.throttle.reserve('mfa', who);
    const step = await this.totp.matchStep(secret, code);
    if (step === null) return this.fail({ actor, who, action: 'enroll', method: 'totp', code: 'MFA_INVALID', message: 'the code is not valid', attempt });
    const burned = await this.uow
      .run(async ({ em, audit }) => {
        // (TypeORM answers a raw UPDATE with [rows, rowCount])
        const [, updated]: [unknown[], number] = await em.query(burnSql('mfa_pending_secret'), [user.id, step, user.mfaPendingSecret]);
        if (updated !== 1) return false;
        await onSuccess(em);
        await audit({ type: 'mfa.enrolled', actor, subjectType: 'user', subjectId: user.id, details: { action: 'enroll' } });
        return true;
      })
      .catch(async (e: unknown) => {
        // not burned for a reason that is no guess (the database failed, the enrollment changed): not counted
        await this.throttle.release(attempt).catch(() => undefined);
        throw e;
      });
    if (!burned) return this.replayed(actor, who, 'enroll', { method: 'totp', seed: user.mfaPendingSecret!, step }, attempt);
    // a success is not a failure: it does not count
    await this.throttle.release(attempt);
  }

  /** A valid proof already used (the step or a newer one, or the challenge): not a guess (the attempt does not count), refused. */
  private async replayed(actor: Actor, who: { subject: string; address?: string }, action: string, proven: Proven, attempt: Reservation, clone = false): Promise<never> {
    await this.throttle.release(attempt);
    if (proven.method === 'webauthn' && clone) {
      // its challenge was fresh, but another assertion of the key with this counter (or a later one) came first
      await this.webauthn.flagCloneRace(actor, proven.assertion);
      const failure = { actor, who, action, ...factorDetails(proven), reason: 'clone_suspected' };
      return this.fail({ ...failure, code: 'MFA_INVALID', message: `the security key assertion is not valid (${REFUSALS.clone_suspected})` });
    }
    if (proven.method === 'webauthn') {
      return this.fail({ actor, who, action, ...factorDetails(proven), code: 'MFA_REPLAYED', message: "this assertion's challenge was already used: ask for a new one" });
    }
    const [{ last }] = await this.dataSource.query('SELECT mfa_last_step::text AS last FROM users WHERE id = $1', [who.subject]);
    const next = (Math.max(Number(last), proven.step) + 1) * TOTP_PERIOD_SECONDS * 1000;
    return this.fail({
      actor,
      who,
      action,
      method: 'totp',
      code: 'MFA_REPLAYED',
      message: 'this code (or a newer one) was already used; wait for the next code',
      extra: { nextCodeAt: new Date(next).toISOString() },
    });
  }

  private async fail(f: Failure): Promise<never> {
    const { actor, who, action, code, attempt } = f;
    this.metrics.mfaFailures.inc({ reason: code });
    // a wrong code keeps its reservation: the user's count in the throttle window says how many there were
    const failures = attempt ? this.throttle.userCount(attempt, 'mfa', actor.id) : 0;
    await this.uow.run(async (tx) => {
      const details = { action, reason: code, method: f.method, ...(f.credentialId ? { credentialId: f.credentialId } : {}), ...(f.reason ? { refusal: f.reason } : {}), address: who.address ?? null };
      await tx.audit({ type: 'mfa.failed', actor, subjectType: 'user', subjectId: actor.id, outcome: 'failure', details });
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
    throw new DomainException(code, f.message, f.extra);
  }

  private assertUser(actor: Actor): void {
    if (actor.kind !== 'user') throw Errors.forbidden('service tokens cannot use MFA');
  }
}

/** A refused second factor, as audited (`mfa.failed`) and answered. */
interface Failure {
  actor: Actor;
  who: { subject: string; address?: string };
  action: string;
  method: MfaMethod;
  code: 'MFA_INVALID' | 'MFA_REPLAYED';
  message: string;
  credentialId?: string;
  /** Why an assertion was refused (`other_action`, `expired`, `clone_suspected` …). */
  reason?: string;
  extra?: Record<string, unknown>;
  attempt?: Reservation;
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

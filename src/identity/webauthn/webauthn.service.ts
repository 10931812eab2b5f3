import { createHmac } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import {
  AuthenticationResponseJSON,
  generateAuthenticationOptions,
  generateRegistrationOptions,
  RegistrationResponseJSON,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
} from '@simplewebauthn/server';
import { DataSource, EntityManager } from 'typeorm';
import { Actor } from '../../common/actor';
import { Clock } from '../../common/clock';
import { DomainException, Errors } from '../../common/errors';
import { APP_CONFIG, AppConfig } from '../../config/config';
import { KeyringService } from '../../crypto/keyring.service';
import { Tx, UnitOfWork } from '../../database/unit-of-work';
import { insertBrowserSession, insertSession, IssuedBrowserSession } from '../sessions';
import { requireWebauthnStepUp } from '../step-up';
import type { Reservation } from '../throttle.service';
import { actionDigest, StepUpAction } from './action-digest';
import { ChallengePurpose, CredentialRow, WebAuthnStore } from './webauthn-store';
import { ConfirmRegistrationDto, LoginChallenge, RegistrationStartView, StepUpChallengeView, WebAuthnCredentialView } from './webauthn.dto';

/** How long a challenge may be answered. */
export const CHALLENGE_SECONDS = 120;
/** COSE algorithms accepted: ES256, EdDSA, RS256. */
const ALGORITHMS = [-7, -8, -257];
/** The most keys one user may have (each one is in every challenge's allowCredentials). */
export const MAX_KEYS_PER_USER = 20;
/** The largest assertion the vault reads (base64url JSON in a header, or in the login body). */
export const MAX_ASSERTION_CHARS = 16_384;

/** A verified assertion, not yet used: the MFA service burns its challenge in the action's transaction. */
export interface VerifiedAssertion {
  challengeId: string;
  /** The vault's id of the key (never the raw credential id). */
  credentialId: string;
  newCounter: number;
}

/** Why an assertion was refused; `clone`: the key's counter went back (it is flagged now). */
export interface RefusedAssertion {
  code: 'MFA_INVALID' | 'MFA_REPLAYED';
  reason: string;
  credentialId?: string;
}

/**
 * Security keys and passkeys (WebAuthn) as a second factor: registration, the challenges for sign-in and step-up,
 * and the check of an assertion against a challenge of the user bound to what it is used for. Uses of a verified
 * assertion (the challenge's one-time burn and the key's counter) happen in the MFA service's transaction
 * ({@link burn}); a counter that goes back flags the key and alerts administrators and auditors.
 */
@Injectable()
export class WebAuthnService {
  constructor(
    private readonly dataSource: DataSource,
    private readonly uow: UnitOfWork,
    private readonly clock: Clock,
    private readonly keyring: KeyringService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** POST /v1/me/webauthn/registrations: options for navigator.credentials.create (the user's keys excluded). */
  async startRegistration(actor: Actor): Promise<RegistrationStartView> {
    assertPerson(actor);
    const existing = await WebAuthnStore.credentialsOf(this.dataSource.manager, actor.id);
    // a key is only added by a key: else one phished code would mint the attacker a key that passes every check a
    // policy reserves for keys (requireWebauthn, the approvers' switch); a user with TOTP only adds the first with it
    if (existing.some((c) => !c.flaggedAt)) requireWebauthnStepUp('you have a security key: adding another needs it');
    const options = await generateRegistrationOptions({
      rpName: this.config.webauthn.rpName,
      rpID: this.config.webauthn.rpId,
      userName: actor.name,
      userID: Uint8Array.from(Buffer.from(userHandleOf(actor.id), 'base64url')),
      attestationType: 'none',
      excludeCredentials: existing.map((c) => ({ id: c.credentialId, transports: c.transports })),
      authenticatorSelection: { residentKey: 'preferred', userVerification: 'required' },
      supportedAlgorithmIDs: ALGORITHMS,
      timeout: CHALLENGE_SECONDS * 1000,
    });
    // a challenge issued without a step-up (the user had no factor) is good for a first factor only
    const binding = actor.mfaEnrolled ? REGISTER_WITH_STEP_UP : REGISTER_FIRST;
    const challenge = await this.newChallenge(this.dataSource.manager, actor.id, options.challenge, 'register', binding);
    return { challengeId: challenge.id, options: options as unknown as RegistrationStartView['options'] };
  }

  /**
   * Verifies the authenticator's answer to the registration challenge and stores the key. When it is the user's first
   * second factor, every earlier token and session ends in the same transaction and `via` says what replaces them
   * (a bearer token, or a browser session): as at TOTP enrollment, only the session that proved the factor goes on.
   */
  async confirmRegistration(
    actor: Actor,
    dto: ConfirmRegistrationDto,
    via: 'bearer' | 'browser',
  ): Promise<{ credential: WebAuthnCredentialView; bearer?: { accessToken: string; expiresAt: string }; browser?: IssuedBrowserSession }> {
    assertPerson(actor);
    const now = this.clock.now();
    const challenge = await WebAuthnStore.challengeById(this.dataSource.manager, actor.id, dto.challengeId);
    if (!challenge || challenge.purpose !== 'register' || challenge.usedAt || challenge.expiresAt <= now) {
      throw registrationFailed('no such registration challenge of yours, or it was used or has expired: start again');
    }
    const verified = await verifyRegistrationResponse({
      response: dto.response as unknown as RegistrationResponseJSON,
      expectedChallenge: challenge.challenge,
      expectedOrigin: this.config.webauthn.origin,
      expectedRPID: this.config.webauthn.rpId,
      requireUserVerification: true,
      supportedAlgorithmIDs: ALGORITHMS,
    }).catch(() => ({ verified: false as const, registrationInfo: undefined }));
    if (!verified.verified) throw registrationFailed('the authenticator answer does not verify for this challenge, origin and relying party');
    const info = verified.registrationInfo;
    if (!B64URL.test(info.credential.id) || info.credential.id.length < 16 || info.credential.id.length > 1400) throw registrationFailed('the credential id is not 12 to 1050 bytes');
    const sent: unknown = info.credential.transports ?? [];
    if (!Array.isArray(sent)) throw registrationFailed('response.transports must be a list');
    // only hints for the browser later: the known values are kept, anything else is dropped
    const transports = [...new Set(sent.filter((t): t is string => typeof t === 'string' && TRANSPORTS.has(t)))];
    return this.uow.run(async ({ em, audit }) => {
      // the user row decides "first factor" once, against a concurrent enrollment, registration or reset
      const [user]: Array<{ totp: boolean }> = await em.query('SELECT mfa_secret IS NOT NULL AS totp FROM users WHERE id = $1 FOR UPDATE', [actor.id]);
      if (!user) throw Errors.unauthenticated();
      if (!(await WebAuthnStore.useChallenge(em, challenge.id, now))) throw registrationFailed('this registration challenge was used already');
      const keys = (await WebAuthnStore.credentialsOf(em, actor.id)).length;
      if (keys >= MAX_KEYS_PER_USER) throw Errors.conflict('WEBAUTHN_TOO_MANY_KEYS', `you have ${keys} security keys, the most a user may have: remove one first`);
      const first = !user.totp && keys === 0;
      // issued while the user had no factor: since then they enrolled one, and adding another needs a step-up
      if (!first && challenge.binding !== REGISTER_WITH_STEP_UP) throw registrationFailed('you enrolled a second factor since this registration started: start again (with a step-up)');
      // a TOTP enrollment started before this key (without a step-up) must not be confirmed after it without one
      await em.query('UPDATE users SET mfa_pending_secret = NULL WHERE id = $1 AND mfa_pending_secret IS NOT NULL', [actor.id]);
      const row = await WebAuthnStore.insertCredential(
        em,
        {
          userId: actor.id,
          credentialId: info.credential.id,
          publicKey: Buffer.from(info.credential.publicKey),
          signCount: info.credential.counter,
          transports,
          name: dto.name,
          aaguid: info.aaguid,
          backedUp: info.credentialBackedUp,
        },
        now,
      );
      await audit({
        type: 'webauthn.registered',
        actor,
        subjectType: 'user',
        subjectId: actor.id,
        details: { credentialId: row.id, name: row.name, aaguid: row.aaguid, backedUp: row.backedUp, firstFactor: first },
      });
      if (!first) return { credential: viewOf(row) };
      await em.query('UPDATE access_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL', [actor.id]);
      return via === 'browser'
        ? { credential: viewOf(row), browser: await insertBrowserSession(em, actor.id, now, this.config.portal.sessionSeconds) }
        : { credential: viewOf(row), bearer: await insertSession(em, actor.id, now, this.config.tokenTtlSeconds) };
    });
  }

  /** The caller's own keys. */
  async list(actor: Actor): Promise<WebAuthnCredentialView[]> {
    assertPerson(actor);
    return this.listOf(actor.id);
  }

  /** A user's keys (the admin's view for recovery; 404 for no such user). */
  async listOf(userId: string): Promise<WebAuthnCredentialView[]> {
    const [user]: unknown[] = await this.dataSource.query('SELECT 1 FROM users WHERE id = $1', [userId]);
    if (!user) throw Errors.notFound('user');
    return (await WebAuthnStore.credentialsOf(this.dataSource.manager, userId)).map(viewOf);
  }

  /**
   * Removes a key. Its owner may not remove their only usable second factor (409 LAST_FACTOR: flagged keys do not count); an
   * admin may (recovery: a lost key), and then the user's tokens and sessions end: they were opened with a factor the user no
   * longer has.
   */
  async remove(actor: Actor, userId: string, id: string, by: 'self' | 'admin'): Promise<void> {
    if (by === 'admin' && userId === actor.id) throw Errors.forbidden('remove your own keys at /v1/me/webauthn/credentials');
    await this.uow.run(async ({ em, audit }) => {
      const [user]: Array<{ totp: boolean }> = await em.query('SELECT mfa_secret IS NOT NULL AS totp FROM users WHERE id = $1 FOR UPDATE', [userId]);
      if (!user) throw Errors.notFound('user');
      const keys = await WebAuthnStore.credentialsOf(em, userId);
      const target = keys.find((k) => k.id === id);
      if (!target) throw Errors.notFound('security key');
      // only a key weakens a key: with the usable key gone, a code would add the next one (a flagged key is no factor)
      if (!target.flaggedAt) requireWebauthnStepUp('removing a usable security key needs a security key step-up');
      // a flagged key is no factor: its owner may not be left with flagged keys only (an admin may: recovery)
      const last = !user.totp && !keys.some((k) => k.id !== id && !k.flaggedAt);
      if (last && by === 'self') throw Errors.conflict('LAST_FACTOR', 'this is your only usable second factor: register another key or enrol TOTP first');
      const removed = (await WebAuthnStore.deleteCredential(em, userId, id))!;
      if (last) await em.query('UPDATE access_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL', [userId]);
      await audit({
        type: 'webauthn.removed',
        actor,
        subjectType: 'user',
        subjectId: userId,
        details: { credentialId: removed.id, name: removed.name, by, flagged: removed.flaggedAt !== null, lastFactor: last },
      });
    });
  }

  /** POST /v1/me/webauthn/step-up: a challenge bound to the action the client is about to send. */
  async stepUpChallenge(actor: Actor, action: StepUpAction): Promise<StepUpChallengeView> {
    assertPerson(actor);
    const { challenge, options } = await this.authenticationChallenge(actor.id, 'step_up', this.keyed(actionDigest(action)));
    return { challengeId: challenge.id, options, expiresAt: challenge.expiresAt.toISOString() };
  }

  /**
   * The challenge a password sign-in offers a user with a key (issued only once the password was right). It keeps the
   * sign-in's password attempt, given back when the key answers: a right password is no guess (burn).
   */
  async loginChallenge(userId: string, passwordAttempt?: Reservation): Promise<LoginChallenge | undefined> {
    const usable = (await WebAuthnStore.credentialsOf(this.dataSource.manager, userId)).some((c) => !c.flaggedAt);
    if (!usable) return undefined;
    const { challenge, options } = await this.authenticationChallenge(userId, 'login', 'login', passwordAttempt);
    return { challengeId: challenge.id, options };
  }

  private async authenticationChallenge(userId: string, purpose: ChallengePurpose, binding: string, attempt?: Reservation) {
    const usable = (await WebAuthnStore.credentialsOf(this.dataSource.manager, userId)).filter((c) => !c.flaggedAt);
    if (usable.length === 0) throw Errors.conflict('WEBAUTHN_NOT_ENROLLED', 'you have no usable security key: use your TOTP code, or register a key');
    const options = await generateAuthenticationOptions({
      rpID: this.config.webauthn.rpId,
      allowCredentials: usable.map((c) => ({ id: c.credentialId, transports: c.transports })),
      userVerification: 'required',
      timeout: CHALLENGE_SECONDS * 1000,
    });
    const challenge = await this.newChallenge(this.dataSource.manager, userId, options.challenge, purpose, binding, attempt);
    return { challenge, options: options as unknown as LoginChallenge['options'] };
  }

  private newChallenge(em: EntityManager, userId: string, challenge: string, purpose: ChallengePurpose, binding: string, attempt?: Reservation) {
    const now = this.clock.now();
    return WebAuthnStore.insertChallenge(em, { userId, challenge, purpose, binding, expiresAt: new Date(now.getTime() + CHALLENGE_SECONDS * 1000) }, now, attempt);
  }

  /**
   * What a step-up challenge stores of its action: a keyed HMAC of the action digest, never the bare SHA-256 — a body
   * may hold a password (a new user's, an account's), which a plain hash in the table would let anyone who reads the
   * database check offline.
   */
  private keyed(digest: string): string {
    return createHmac('sha256', this.keyring.auditKey()).update(`pam-vault:webauthn:binding:${digest}`).digest('hex');
  }

  /** Whether the user has a security key (flagged ones included: they still count as enrolled). */
  hasAny(userId: string): Promise<boolean> {
    return WebAuthnStore.hasAny(this.dataSource.manager, userId);
  }

  /**
   * Checks an assertion of the user against one of their challenges of `purpose` bound to `binding`: the challenge
   * must be unexpired and unused, the key theirs and not flagged, the signature, origin, relying party and user
   * verification right, and the counter must move forward. Nothing is written, except when the counter went back:
   * the key is then flagged (clone suspected), audited and administrators and auditors are alerted.
   */
  async check(actor: Actor, assertion: unknown, purpose: ChallengePurpose, binding: string): Promise<VerifiedAssertion | RefusedAssertion> {
    const response = assertionShape(assertion);
    if (!response) return { code: 'MFA_INVALID', reason: 'malformed' };
    const challengeValue = clientChallenge(response.response.clientDataJSON);
    if (!challengeValue) return { code: 'MFA_INVALID', reason: 'malformed' };
    const em = this.dataSource.manager;
    const challenge = await WebAuthnStore.challengeByValue(em, actor.id, challengeValue);
    if (!challenge || challenge.purpose !== purpose) return { code: 'MFA_INVALID', reason: 'unknown_challenge' };
    if (challenge.binding !== (purpose === 'step_up' ? this.keyed(binding) : binding)) return { code: 'MFA_INVALID', reason: 'other_action' };
    if (challenge.usedAt) return { code: 'MFA_REPLAYED', reason: 'challenge_used' };
    if (challenge.expiresAt <= this.clock.now()) return { code: 'MFA_INVALID', reason: 'expired' };
    const key = await WebAuthnStore.credentialByCredentialId(em, actor.id, response.id);
    if (!key) return { code: 'MFA_INVALID', reason: 'unknown_credential' };
    // a discoverable credential names its user (WebAuthn §7.2 step 6): it must be this one
    const handle = response.response.userHandle;
    if (handle && handle !== userHandleOf(actor.id)) return { code: 'MFA_INVALID', reason: 'unknown_credential', credentialId: key.id };
    if (key.flaggedAt) return { code: 'MFA_INVALID', reason: 'credential_flagged', credentialId: key.id };
    const verified = await verifyAuthenticationResponse({
      response,
      expectedChallenge: challenge.challenge,
      expectedOrigin: this.config.webauthn.origin,
      expectedRPID: this.config.webauthn.rpId,
      // the counter is compared below, where a step back flags the key (the library would only refuse it)
      credential: { id: key.credentialId, publicKey: Uint8Array.from(key.publicKey), counter: 0, transports: key.transports },
      requireUserVerification: true,
    }).catch(() => undefined);
    if (!verified?.verified) return { code: 'MFA_INVALID', reason: 'bad_signature', credentialId: key.id };
    const counter = verified.authenticationInfo.newCounter;
    if ((counter > 0 || key.signCount > 0) && counter <= key.signCount) {
      // a request racing with its own assertion sees the counter the winner stored: that is a replay, not a clone
      if (!(await this.flagClone(actor, key, counter, challenge.id))) return { code: 'MFA_REPLAYED', reason: 'challenge_used', credentialId: key.id };
      return { code: 'MFA_INVALID', reason: 'clone_suspected', credentialId: key.id };
    }
    return { challengeId: challenge.id, credentialId: key.id, newCounter: counter };
  }

  /**
   * Uses a verified assertion in `tx` (the action's transaction, or the sign-in's): its challenge is marked used by one
   * conditional UPDATE and the key's counter and last use are stored. False when the challenge was used meanwhile (a
   * concurrent request with the same assertion won) or the key was removed or flagged meanwhile; else the password
   * attempt a login challenge kept, for the caller to give back in `tx`.
   */
  async burn(tx: Tx, v: VerifiedAssertion): Promise<{ outcome: 'used' } | { outcome: 'clone' } | { outcome: 'burned'; passwordAttempt: Reservation | null }> {
    const now = this.clock.now();
    const used = await WebAuthnStore.useChallenge(tx.em, v.challengeId, now);
    if (!used) return { outcome: 'used' };
    // the challenge was fresh: a counter that another assertion of the key reached first is a copy's (flagCloneRace)
    const recorded = await WebAuthnStore.recordUse(tx.em, v.credentialId, v.newCounter, now);
    if (recorded === 'back') return { outcome: 'clone' };
    return recorded === 'gone' ? { outcome: 'used' } : { outcome: 'burned', passwordAttempt: used.attempt };
  }

  /**
   * After {@link burn} found the key's counter already at or past this assertion's (two assertions with one counter
   * raced: a key and its copy): the key is flagged as {@link check} would have, once the action's transaction is gone.
   */
  async flagCloneRace(actor: Actor, v: VerifiedAssertion): Promise<void> {
    const [key] = (await WebAuthnStore.credentialsOf(this.dataSource.manager, actor.id)).filter((c) => c.id === v.credentialId);
    if (key) await this.flagClone(actor, key, v.newCounter);
  }

  /**
   * A valid signature whose counter did not move forward, over a challenge nobody used: the key has a copy. Decided
   * with the challenge's burn in one transaction (false: the challenge was used meanwhile — a replay, nothing flagged).
   */
  private async flagClone(actor: Actor, key: CredentialRow, counter: number, challengeId?: string): Promise<boolean> {
    return this.uow.run(async (tx) => {
      if (challengeId && !(await WebAuthnStore.useChallenge(tx.em, challengeId, this.clock.now()))) return false;
      if (!(await WebAuthnStore.flag(tx.em, key.id, this.clock.now()))) return true;
      // either side may be the copy (the one that moved the counter first signed in with it): every session ends
      const [, sessionsEnded]: [unknown[], number] = await tx.em.query('UPDATE access_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL', [key.userId]);
      const details = { credentialId: key.id, name: key.name, storedCounter: key.signCount, presentedCounter: counter, sessionsEnded };
      await tx.audit({ type: 'webauthn.clone_suspected', actor, subjectType: 'user', subjectId: key.userId, outcome: 'failure', details });
      await tx.notify({
        type: 'alert.webauthn_clone_suspected',
        subjectType: 'user',
        subjectId: key.userId,
        to: { roles: ['admin', 'auditor'] },
        facts: {
          summary: `security key "${key.name}" of ${actor.name} presented signature counter ${counter} after ${key.signCount}: a copy of it may exist; it is refused until removed`,
          reason: 'signature counter went back (cloned authenticator suspected)',
          count: counter,
        },
      });
      return true;
    });
  }
}

/** The user handle the vault registers keys with: the user's uuid as 16 bytes (base64url). */
const userHandleOf = (userId: string) => Buffer.from(userId.replace(/-/g, ''), 'hex').toString('base64url');

function viewOf(row: CredentialRow): WebAuthnCredentialView {
  return {
    id: row.id,
    name: row.name,
    createdAt: row.createdAt.toISOString(),
    lastUsedAt: row.lastUsedAt?.toISOString() ?? null,
    flagged: row.flaggedAt !== null,
    backedUp: row.backedUp,
  };
}

/** A registration challenge's binding: issued without a step-up (good for a first factor only), or with one. */
const REGISTER_FIRST = 'register:first';
const REGISTER_WITH_STEP_UP = 'register:step_up';
/** AuthenticatorTransport values (WebAuthn L3). */
const TRANSPORTS = new Set(['ble', 'cable', 'hybrid', 'internal', 'nfc', 'smart-card', 'usb']);

const registrationFailed = (message: string) => new DomainException('WEBAUTHN_REGISTRATION_FAILED', message);

function assertPerson(actor: Actor): void {
  if (actor.kind !== 'user') throw Errors.forbidden('service tokens have no security keys');
}

const B64URL = /^[A-Za-z0-9_-]+$/;
const isB64 = (v: unknown, max: number): v is string => typeof v === 'string' && v.length > 0 && v.length <= max && B64URL.test(v);

/** The fields the verification reads, with their types and sizes: anything else is malformed (never a 500). */
function assertionShape(v: unknown): AuthenticationResponseJSON | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const a = v as Record<string, unknown>;
  const r = a.response as Record<string, unknown> | undefined;
  if (!isB64(a.id, 1400) || !isB64(a.rawId, 1400) || a.type !== 'public-key' || typeof r !== 'object' || r === null) return undefined;
  if (!isB64(r.clientDataJSON, 4096) || !isB64(r.authenticatorData, 4096) || !isB64(r.signature, 2048)) return undefined;
  if (r.userHandle !== undefined && r.userHandle !== null && !isB64(r.userHandle, 256)) return undefined;
  return v as AuthenticationResponseJSON;
}

/** The challenge the client data names (base64url), or undefined. */
function clientChallenge(clientDataJSON: string): string | undefined {
  try {
    const data = JSON.parse(Buffer.from(clientDataJSON, 'base64url').toString('utf8')) as { challenge?: unknown };
    return isB64(data.challenge, 256) ? data.challenge : undefined;
  } catch {
    return undefined;
  }
}

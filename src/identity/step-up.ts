import { AsyncLocalStorage } from 'node:async_hooks';
import { Actor } from '../common/actor';
import { DomainException } from '../common/errors';
import type { AppConfig } from '../config/config';
import type { Reservation } from './throttle.service';
import type { VerifiedAssertion } from './webauthn/webauthn.service';

/*
 * The step-up of the request being handled, as the MFA service and the guard share it: what proves it (a TOTP code or
 * a security key's assertion), its state while the action runs, and the checks a policy makes on its method.
 */

/** A second factor as a request presents it: a TOTP code, or a security key's assertion (WebAuthn). */
export type StepUpProof =
  | { method: 'totp'; code: string }
  /** `binding`: the action digest (step_up, src/identity/webauthn/action-digest.ts) or `login`. */
  | { method: 'webauthn'; assertion: unknown; purpose: 'step_up' | 'login'; binding: string };

export type MfaMethod = StepUpProof['method'];

/** A checked proof, to be burned: the TOTP step (and the seed it was checked against), or the verified assertion. */
export type Proven = { method: 'totp'; seed: Buffer; step: number } | { method: 'webauthn'; assertion: VerifiedAssertion };

/** What a verified second factor was: for audit details (`credentialId` is the vault's id of the key). */
export interface FactorUsed {
  method: MfaMethod;
  credentialId?: string;
}

/**
 * A step-up verified for an action that burns it in its own transaction ({@link MfaService.stepUp}): `pending`
 * until a unit of work takes it, `taken` while that transaction runs, `burned` once it committed, `replayed` when the
 * burn found the step (or a newer one, or the assertion's challenge) already used.
 */
export interface StepUp {
  actor: Actor;
  userId: string;
  proven: Proven;
  action: string;
  attempt: Reservation;
  state: 'pending' | 'taken' | 'burned' | 'replayed';
  /** The burn found the key's counter already at or past this assertion's: a copy of the key (flagged after). */
  clone?: boolean;
}

/**
 * The step-up of the request being handled (both kinds of @RequiresMfa routes run their handler inside it): what a
 * service asks when its policy wants a security key ({@link requireWebauthnStepUp}).
 */
export const stepUps = new AsyncLocalStorage<StepUp>();

/** The method of the step-up this request came with (undefined outside a step-up action). */
export const stepUpMethod = (): MfaMethod | undefined => stepUps.getStore()?.proven.method;

/**
 * Refuses (403 WEBAUTHN_REQUIRED) an action whose step-up was not a security key: the account's policy or the
 * approvers' configuration asks for one. Fails closed outside a step-up. The TOTP code was burned all the same.
 */
export function requireWebauthnStepUp(why: string): void {
  if (stepUpMethod() !== 'webauthn') {
    throw new DomainException('WEBAUTHN_REQUIRED', `${why}: step up with your security key (X-MFA-Assertion), not a TOTP code`);
  }
}


/** VAULT_APPROVERS_REQUIRE_WEBAUTHN: approving or denying (checkouts, one-time accounts) refuses a TOTP step-up. */
export function requireApproverStepUp(config: Pick<AppConfig, 'webauthn'>): void {
  if (config.webauthn.approversRequireWebauthn) requireWebauthnStepUp('approvers must use a security key here (VAULT_APPROVERS_REQUIRE_WEBAUTHN)');
}


/** What the messages say about a refused assertion (the audit keeps the reason itself). */
export const REFUSALS: Record<string, string> = {
  malformed: 'malformed',
  unknown_challenge: 'not an answer to a challenge of yours for this',
  other_action: 'its challenge was made for another action (method, path or body)',
  expired: 'its challenge has expired',
  unknown_credential: 'not one of your security keys',
  credential_flagged: 'this key is flagged as cloned and refused until removed',
  bad_signature: 'the signature, origin, relying party or user verification is wrong',
  clone_suspected: "the key's signature counter went back: it is flagged as cloned",
};

export const factorOf = (p: Proven): FactorUsed => (p.method === 'totp' ? { method: 'totp' } : { method: 'webauthn', credentialId: p.assertion.credentialId });
export const factorDetails = (p: Proven) => factorOf(p);

import {
  browserSupportsWebAuthn,
  startAuthentication,
  startRegistration,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
} from '@simplewebauthn/browser';
import { ApiError } from './errors';

/**
 * The browser's side of a WebAuthn ceremony (security keys and passkeys): the vault sends the options (its challenge,
 * RP id, the user's credentials), the browser asks the authenticator, and the answer goes back to the vault, which
 * verifies it. Nothing here is kept: the challenge is the vault's and is used once.
 */

/**
 * An authenticator's answer (AuthenticationResponseJSON / RegistrationResponseJSON) as the plain JSON object the vault
 * takes (its document types `assertion` and `response` as free objects).
 */
export type CeremonyAnswer = Record<string, unknown>;

/** Whether this browser can use a security key or passkey at all (a secure context with the WebAuthn API). */
export const canUseSecurityKeys = (): boolean => browserSupportsWebAuthn();

/** Signs the vault's challenge with one of the user's authenticators. */
export async function signChallenge(options: unknown): Promise<CeremonyAnswer> {
  try {
    return { ...(await startAuthentication({ optionsJSON: options as PublicKeyCredentialRequestOptionsJSON })) };
  } catch (e) {
    throw ceremonyError(e);
  }
}

/** Makes a new credential on an authenticator for the vault's registration options. */
export async function createCredential(options: unknown): Promise<CeremonyAnswer> {
  try {
    return { ...(await startRegistration({ optionsJSON: options as PublicKeyCredentialCreationOptionsJSON })) };
  } catch (e) {
    throw ceremonyError(e);
  }
}

/** The `X-MFA-Assertion` header value: the assertion's JSON, base64url (API: the header carries no raw JSON). */
export function assertionHeader(assertion: CeremonyAnswer): string {
  const bytes = new TextEncoder().encode(JSON.stringify(assertion));
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/**
 * What went wrong in the browser, as an ApiError with a portal-side code (status 0: the vault was not asked): the
 * person cancelled or let the prompt time out, the key is already registered, or the browser refused.
 */
function ceremonyError(e: unknown): ApiError {
  const name = e instanceof Error ? e.name : '';
  const code = (e as { code?: string } | null)?.code ?? '';
  if (code === 'ERROR_AUTHENTICATOR_PREVIOUSLY_REGISTERED') return new ApiError(0, 'SECURITY_KEY_ALREADY_ADDED', 'this security key is already registered for you');
  if (name === 'NotAllowedError' || name === 'AbortError') return new ApiError(0, 'SECURITY_KEY_CANCELLED', 'the security key prompt was cancelled or timed out');
  return new ApiError(0, 'SECURITY_KEY_FAILED', `the browser could not use a security key (${name || 'unknown error'})`);
}

import type { CDPSession, Page } from 'playwright-core';

/**
 * Chromium's own WebAuthn virtual authenticator, driven over the DevTools protocol (the `WebAuthn` domain): the page's
 * `navigator.credentials.create/get` reach it exactly as they would reach a security key or a platform passkey, so the
 * portal's ceremony, the browser's checks (origin, RP id, user verification) and the vault's verification all run for
 * real. Only the user's touch is simulated (`automaticPresenceSimulation`).
 */

/** A credential as the authenticator holds it (CDP `WebAuthn.Credential`); privateKey is PKCS#8, base64. */
export interface VirtualCredential {
  credentialId: string;
  isResidentCredential: boolean;
  rpId?: string;
  privateKey: string;
  userHandle?: string;
  signCount: number;
  largeBlob?: string;
  backupEligibility?: boolean;
  backupState?: boolean;
  userName?: string;
  userDisplayName?: string;
}

export interface VirtualAuthenticator {
  id: string;
  cdp: CDPSession;
  /** What the authenticator holds now (signCount counts every assertion it made). */
  credentials(): Promise<VirtualCredential[]>;
  /** Puts a credential into the authenticator (e.g. a copy of another's: a cloned key). */
  addCredential(credential: VirtualCredential): Promise<void>;
  /** Whether the next ceremonies report the user verified (PIN or biometric passed). */
  setUserVerified(verified: boolean): Promise<void>;
  /** Unplugs it: the page sees no authenticator any more (until another is added). */
  remove(): Promise<void>;
}

/** The options of a passkey-capable security key with a PIN (CTAP2, user verification, resident keys). */
export const SECURITY_KEY = {
  protocol: 'ctap2',
  transport: 'usb',
  hasResidentKey: true,
  hasUserVerification: true,
  isUserVerified: true,
  automaticPresenceSimulation: true,
} as const;

/** The brief's platform authenticator (a built-in passkey: Touch ID, Windows Hello). */
export const PLATFORM_PASSKEY = { ...SECURITY_KEY, transport: 'internal' } as const;

/** The page's CDP session with the WebAuthn domain enabled (once per page; the UI the browser would show is off). */
const sessions = new WeakMap<Page, Promise<CDPSession>>();
function webauthnSession(page: Page): Promise<CDPSession> {
  let session = sessions.get(page);
  if (!session) {
    session = (async () => {
      const cdp = await page.context().newCDPSession(page);
      await cdp.send('WebAuthn.enable', { enableUI: false });
      return cdp;
    })();
    sessions.set(page, session);
  }
  return session;
}

/** Plugs a virtual authenticator into `page` (its tab only: another page of the same person has none). */
export async function addVirtualAuthenticator(page: Page, options: Record<string, unknown> = SECURITY_KEY): Promise<VirtualAuthenticator> {
  const cdp = await webauthnSession(page);
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', { options: options as never });
  return {
    id: authenticatorId,
    cdp,
    credentials: async () => (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials as VirtualCredential[],
    addCredential: async (credential) => void (await cdp.send('WebAuthn.addCredential', { authenticatorId, credential })),
    setUserVerified: async (isUserVerified) => void (await cdp.send('WebAuthn.setUserVerified', { authenticatorId, isUserVerified })),
    remove: async () => void (await cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId })),
  };
}

/**
 * A clone of `source`'s only credential in a fresh authenticator whose counter is `signCount` (lower than the
 * original's, as a key copied before its later uses would be); `source` is unplugged first so that only the clone
 * can answer.
 */
export async function cloneInto(page: Page, source: VirtualAuthenticator, signCount: number): Promise<VirtualAuthenticator> {
  const [credential, ...more] = await source.credentials();
  if (!credential || more.length) throw new Error(`the source authenticator holds ${more.length + (credential ? 1 : 0)} credentials; a clone needs exactly one`);
  if (signCount >= credential.signCount) throw new Error(`a clone's counter must be below the original's (${credential.signCount})`);
  await source.remove();
  const clone = await addVirtualAuthenticator(page);
  await clone.addCredential({ ...credential, signCount });
  return clone;
}

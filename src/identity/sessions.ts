import { createHash, createHmac, randomBytes, randomUUID } from 'node:crypto';
import { EntityManager } from 'typeorm';
import { AccessTokenEntity } from './access-token.entity';

export const USER_TOKEN_PREFIX = 'pvt_';
export const SERVICE_TOKEN_PREFIX = 'pvs_';
/** Browser sessions: only ever in the HttpOnly cookie, never accepted as a bearer token (and a bearer token never as a cookie). */
export const BROWSER_SESSION_PREFIX = 'pvb_';
export const hashToken = (token: string) => createHash('sha256').update(token, 'utf8').digest();
export const newToken = (prefix: string) => prefix + randomBytes(32).toString('base64url');

/** A new login token for the user (only its hash is stored), inside the caller's transaction. */
export async function insertSession(em: EntityManager, userId: string, now: Date, ttlSeconds: number): Promise<{ accessToken: string; expiresAt: string }> {
  const accessToken = newToken(USER_TOKEN_PREFIX);
  const expiresAt = new Date(now.getTime() + ttlSeconds * 1000);
  await em.getRepository(AccessTokenEntity).insert({ id: randomUUID(), userId, tokenHash: hashToken(accessToken), expiresAt, revokedAt: null });
  return { accessToken, expiresAt: expiresAt.toISOString() };
}

/**
 * The CSRF token of a browser session: an HMAC keyed by the session token, so GET /v1/auth/session can answer it again
 * to a reloaded page (which holds the cookie but lost its memory) while the table keeps only its SHA-256. Knowing it
 * tells nothing about the session token.
 */
export const csrfTokenOf = (sessionToken: string) => createHmac('sha256', sessionToken).update('pam-vault csrf v1').digest('base64url');

export interface IssuedBrowserSession {
  /** The cookie's value: never in a response body. */
  token: string;
  csrfToken: string;
  expiresAt: string;
}

/** A new browser session for the user (hashes of the session and CSRF tokens stored), inside the caller's transaction. */
export async function insertBrowserSession(em: EntityManager, userId: string, now: Date, sessionSeconds: number): Promise<IssuedBrowserSession> {
  const token = newToken(BROWSER_SESSION_PREFIX);
  const csrfToken = csrfTokenOf(token);
  const expiresAt = new Date(now.getTime() + sessionSeconds * 1000);
  await em.getRepository(AccessTokenEntity).insert({
    id: randomUUID(),
    userId,
    kind: 'browser',
    tokenHash: hashToken(token),
    csrfHash: hashToken(csrfToken),
    lastSeenAt: now,
    expiresAt,
    revokedAt: null,
  });
  return { token, csrfToken, expiresAt: expiresAt.toISOString() };
}

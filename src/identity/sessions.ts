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

/** How long an ended login token or browser session is kept before it is deleted (a day: recent 401s stay explainable). */
export const ENDED_TOKEN_GRACE_MS = 24 * 3600 * 1000;

/**
 * Deletes login tokens and browser sessions that ended more than a day before `now`: revoked, past their absolute end,
 * or (sessions) idle past `idleSeconds`. Nothing else ever deletes them, and each sign-in adds a row. Each column is
 * compared with the clock that wrote it: `revoked_at` with the database's (revocations write now()), the others with
 * the vault's.
 */
export async function purgeEndedTokens(em: EntityManager, now: Date, idleSeconds: number): Promise<number> {
  const before = new Date(now.getTime() - ENDED_TOKEN_GRACE_MS);
  const idleBefore = new Date(before.getTime() - idleSeconds * 1000);
  const [, deleted]: [unknown[], number] = await em.query(
    `DELETE FROM access_tokens
      WHERE revoked_at < now() - make_interval(secs => $3) OR expires_at < $1 OR (kind = 'browser' AND last_seen_at < $2)`,
    [before, idleBefore, ENDED_TOKEN_GRACE_MS / 1000],
  );
  return deleted;
}

import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { EntityManager } from 'typeorm';
import { AccessTokenEntity } from './access-token.entity';

export const USER_TOKEN_PREFIX = 'pvt_';
export const SERVICE_TOKEN_PREFIX = 'pvs_';
export const hashToken = (token: string) => createHash('sha256').update(token, 'utf8').digest();
export const newToken = (prefix: string) => prefix + randomBytes(32).toString('base64url');

/** A new login token for the user (only its hash is stored), inside the caller's transaction. */
export async function insertSession(em: EntityManager, userId: string, now: Date, ttlSeconds: number): Promise<{ accessToken: string; expiresAt: string }> {
  const accessToken = newToken(USER_TOKEN_PREFIX);
  const expiresAt = new Date(now.getTime() + ttlSeconds * 1000);
  await em.getRepository(AccessTokenEntity).insert({ id: randomUUID(), userId, tokenHash: hashToken(accessToken), expiresAt, revokedAt: null });
  return { accessToken, expiresAt: expiresAt.toISOString() };
}

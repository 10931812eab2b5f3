import { randomUUID } from 'node:crypto';
import { EntityManager } from 'typeorm';
import { Errors } from '../../common/errors';
import type { Reservation } from '../throttle.service';

/** A stored security key, as the service reads it. */
export interface CredentialRow {
  id: string;
  userId: string;
  credentialId: string;
  publicKey: Buffer;
  signCount: number;
  transports: string[];
  name: string;
  aaguid: string;
  backedUp: boolean;
  createdAt: Date;
  lastUsedAt: Date | null;
  flaggedAt: Date | null;
}

export interface ChallengeRow {
  id: string;
  userId: string;
  challenge: string;
  purpose: ChallengePurpose;
  binding: string;
  expiresAt: Date;
  usedAt: Date | null;
}

export type ChallengePurpose = 'register' | 'login' | 'step_up';

const CREDENTIAL_COLUMNS = `id, user_id AS "userId", credential_id AS "credentialId", public_key AS "publicKey", sign_count::float8 AS "signCount",
  transports, name, aaguid, backed_up AS "backedUp", created_at AS "createdAt", last_used_at AS "lastUsedAt", flagged_at AS "flaggedAt"`;
const CHALLENGE_COLUMNS = `id, user_id AS "userId", challenge, purpose, binding, expires_at AS "expiresAt", used_at AS "usedAt"`;

/** `users` row alias → SQL that is true when the user has a second factor (TOTP, or a security key, flagged ones too). */
export const mfaEnrolledSql = (u: string) => `(${u}.mfa_secret IS NOT NULL OR EXISTS (SELECT 1 FROM webauthn_credentials w WHERE w.user_id = ${u}.id))`;

/** How long an expired challenge is kept (a late answer is then refused as expired rather than unknown). */
const EXPIRED_KEPT_MS = 3600 * 1000;
/** The most challenges one user has at a time (the oldest go first). */
export const CHALLENGES_KEPT = 50;

/**
 * All SQL on `webauthn_credentials` and `webauthn_challenges` (STYLE 12: one owner per table). State transitions are
 * decided in the statement: a challenge is used once (`used_at IS NULL`), a flagged key never moves its counter.
 */
export const WebAuthnStore = {
  async credentialsOf(em: EntityManager, userId: string): Promise<CredentialRow[]> {
    return em.query(`SELECT ${CREDENTIAL_COLUMNS} FROM webauthn_credentials WHERE user_id = $1 ORDER BY created_at, id`, [userId]);
  },

  async credentialByCredentialId(em: EntityManager, userId: string, credentialId: string): Promise<CredentialRow | undefined> {
    const rows: CredentialRow[] = await em.query(`SELECT ${CREDENTIAL_COLUMNS} FROM webauthn_credentials WHERE user_id = $1 AND credential_id = $2`, [userId, credentialId]);
    return rows[0];
  },

  async hasAny(em: EntityManager, userId: string): Promise<boolean> {
    const [row]: Array<{ any: boolean }> = await em.query('SELECT EXISTS (SELECT 1 FROM webauthn_credentials WHERE user_id = $1) AS any', [userId]);
    return row.any;
  },

  /** Inserts a key; a credential id registered already (by anyone) or a name the user already uses is a 409. */
  async insertCredential(em: EntityManager, row: Omit<CredentialRow, 'id' | 'createdAt' | 'lastUsedAt' | 'flaggedAt'>, now: Date): Promise<CredentialRow> {
    const id = randomUUID();
    try {
      await em.query('SAVEPOINT webauthn_insert');
      await em.query(
        `INSERT INTO webauthn_credentials (id, user_id, credential_id, public_key, sign_count, transports, name, aaguid, backed_up, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
        [id, row.userId, row.credentialId, row.publicKey, row.signCount, row.transports, row.name, row.aaguid, row.backedUp, now],
      );
      await em.query('RELEASE SAVEPOINT webauthn_insert');
    } catch (e) {
      const constraint = (e as { constraint?: string }).constraint;
      if (constraint === 'webauthn_credentials_name_per_user') throw Errors.conflict('WEBAUTHN_NAME_TAKEN', 'you already have a security key with this name');
      if (constraint === 'webauthn_credentials_credential_id_key') throw Errors.conflict('WEBAUTHN_CREDENTIAL_EXISTS', 'this authenticator is already registered');
      throw e;
    }
    return { ...row, id, createdAt: now, lastUsedAt: null, flaggedAt: null };
  },

  /**
   * Inside a sign-in's token transaction: the key it was made with is still there and not flagged. FOR SHARE conflicts
   * with the flag's UPDATE: either the token commits first (and the flag's revocation, after its UPDATE, ends it) or
   * this sees the flag.
   */
  async stillUsable(em: EntityManager, id: string): Promise<boolean> {
    const rows: unknown[] = await em.query('SELECT 1 FROM webauthn_credentials WHERE id = $1 AND flagged_at IS NULL FOR SHARE', [id]);
    return rows.length === 1;
  },

  /** Removes one key of the user; false when there is none with that id. */
  async deleteCredential(em: EntityManager, userId: string, id: string): Promise<CredentialRow | undefined> {
    const [rows]: [CredentialRow[], number] = await em.query(`DELETE FROM webauthn_credentials WHERE id = $1 AND user_id = $2 RETURNING ${CREDENTIAL_COLUMNS}`, [id, userId]);
    return rows[0];
  },

  /** Admin MFA reset: every key and challenge of the user goes; answers how many keys. */
  async deleteAllOf(em: EntityManager, userId: string): Promise<number> {
    await em.query('DELETE FROM webauthn_challenges WHERE user_id = $1', [userId]);
    const [, deleted]: [unknown[], number] = await em.query('DELETE FROM webauthn_credentials WHERE user_id = $1', [userId]);
    return deleted;
  },

  /** Marks a key as cloned (once): true when this call flagged it. */
  async flag(em: EntityManager, id: string, now: Date): Promise<boolean> {
    const [, updated]: [unknown[], number] = await em.query('UPDATE webauthn_credentials SET flagged_at = $2 WHERE id = $1 AND flagged_at IS NULL', [id, now]);
    return updated === 1;
  },

  /**
   * A new challenge. In the same trip the user's challenges expired over an hour ago go, and all but their newest
   * {@link CHALLENGES_KEPT}: however fast one session asks, the table holds a bounded number per user.
   */
  async insertChallenge(em: EntityManager, c: Omit<ChallengeRow, 'id' | 'usedAt'>, now: Date, attempt?: Reservation): Promise<ChallengeRow> {
    const id = randomUUID();
    await em.query(
      `WITH gone AS (
         DELETE FROM webauthn_challenges WHERE user_id = $2 AND (expires_at < $7 OR id NOT IN (
           SELECT id FROM webauthn_challenges WHERE user_id = $2 ORDER BY created_at DESC, id LIMIT ${CHALLENGES_KEPT - 1})))
       INSERT INTO webauthn_challenges (id, user_id, challenge, purpose, binding, expires_at, attempt) VALUES ($1, $2, $3, $4, $5, $6, $8)`,
      [id, c.userId, c.challenge, c.purpose, c.binding, c.expiresAt, new Date(now.getTime() - EXPIRED_KEPT_MS), attempt ? JSON.stringify({ ...attempt, released: false }) : null],
    );
    return { ...c, id, usedAt: null };
  },

  /** The housekeeping sweep: challenges expired over an hour ago (of users who never asked again). */
  async purgeExpired(em: EntityManager, now: Date): Promise<number> {
    const [, deleted]: [unknown[], number] = await em.query('DELETE FROM webauthn_challenges WHERE expires_at < $1', [new Date(now.getTime() - EXPIRED_KEPT_MS)]);
    return deleted;
  },

  async challengeById(em: EntityManager, userId: string, id: string): Promise<ChallengeRow | undefined> {
    const rows: ChallengeRow[] = await em.query(`SELECT ${CHALLENGE_COLUMNS} FROM webauthn_challenges WHERE id = $1 AND user_id = $2`, [id, userId]);
    return rows[0];
  },

  async challengeByValue(em: EntityManager, userId: string, challenge: string): Promise<ChallengeRow | undefined> {
    const rows: ChallengeRow[] = await em.query(`SELECT ${CHALLENGE_COLUMNS} FROM webauthn_challenges WHERE challenge = $1 AND user_id = $2`, [challenge, userId]);
    return rows[0];
  },

  /**
   * The one atomic decision on a challenge: used now, unless it was used already (false). Answers the password attempt
   * a login challenge kept (else null).
   */
  async useChallenge(em: EntityManager, id: string, now: Date): Promise<false | { attempt: Reservation | null }> {
    const [rows]: [Array<{ attempt: Reservation | null }>, number] = await em.query(
      'UPDATE webauthn_challenges SET used_at = $2 WHERE id = $1 AND used_at IS NULL RETURNING attempt',
      [id, now],
    );
    return rows.length === 1 ? { attempt: rows[0].attempt } : false;
  },

  /**
   * After a verified assertion: the new counter and the time of use, only if the counter moves forward (or the key
   * keeps none: 0 and 0). Decided in the statement, so of two assertions with one counter racing (a key and its copy)
   * one passes. `gone`: the key was removed or flagged meanwhile; `back`: the counter did not move forward.
   */
  async recordUse(em: EntityManager, id: string, signCount: number, now: Date): Promise<'recorded' | 'gone' | 'back'> {
    const [, updated]: [unknown[], number] = await em.query(
      `UPDATE webauthn_credentials SET sign_count = $2, last_used_at = $3
        WHERE id = $1 AND flagged_at IS NULL AND (sign_count < $2 OR (sign_count = 0 AND $2 = 0))`,
      [id, signCount, now],
    );
    if (updated === 1) return 'recorded';
    const [row]: Array<{ flagged: boolean }> = await em.query('SELECT flagged_at IS NOT NULL AS flagged FROM webauthn_credentials WHERE id = $1', [id]);
    return !row || row.flagged ? 'gone' : 'back';
  },
};

import { EntityManager } from 'typeorm';
import type { Role } from '../../common/actor';
import { OidcProviderEntity } from './oidc-provider.entity';

/**
 * Every statement on `oidc_providers` and `oidc_logins`, and the ones on `users` that only single sign-on makes (a
 * user found by their provider subject, created from a provider account, their roles synchronised).
 */

export interface OidcLoginRow {
  id: string;
  provider: string;
  kind: 'browser' | 'device';
  browserBindingHash: Buffer | null;
  nonce: string | null;
  codeVerifier: Buffer | null;
  returnTo: string | null;
  deviceCode: Buffer | null;
  intervalSeconds: number | null;
  expiresAt: Date;
  usedAt: Date | null;
}

const loginColumns = (t: string) =>
  `${t}.id, ${t}.provider, ${t}.kind, ${t}.browser_binding_hash AS "browserBindingHash", ${t}.nonce, ${t}.code_verifier AS "codeVerifier", ${t}.return_to AS "returnTo",
   ${t}.device_code AS "deviceCode", ${t}.interval_seconds AS "intervalSeconds", ${t}.expires_at AS "expiresAt", ${t}.used_at AS "usedAt"`;

export const providers = {
  list: (em: EntityManager) => em.getRepository(OidcProviderEntity).find({ order: { name: 'ASC' } }),
  get: (em: EntityManager, name: string, lock = false) =>
    em.getRepository(OidcProviderEntity).findOne({ where: { name }, ...(lock ? { lock: { mode: 'pessimistic_write' as const } } : {}) }),
  /** Inserts or replaces; `clientSecret` undefined keeps the stored one. */
  async save(em: EntityManager, p: Omit<OidcProviderEntity, 'createdAt' | 'updatedAt' | 'clientSecret'> & { clientSecret: Buffer | undefined }): Promise<void> {
    await em.query(
      `INSERT INTO oidc_providers (name, display_name, issuer, client_id, client_secret, scopes, groups_claim, group_roles, enabled)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       ON CONFLICT (name) DO UPDATE SET display_name = $2, issuer = $3, client_id = $4, client_secret = COALESCE($5, oidc_providers.client_secret),
         scopes = $6, groups_claim = $7, group_roles = $8, enabled = $9, updated_at = now()`,
      [p.name, p.displayName, p.issuer, p.clientId, p.clientSecret ?? null, p.scopes, p.groupsClaim, JSON.stringify(p.groupRoles), p.enabled],
    );
  },
  remove: async (em: EntityManager, name: string) => {
    await em.query('DELETE FROM oidc_providers WHERE name = $1', [name]);
  },
  /** The provider is still enabled, its row share-locked until the caller's transaction ends (a disable waits, or wins first). */
  stillEnabled: async (em: EntityManager, name: string): Promise<boolean> => {
    const rows: Array<{ enabled: boolean }> = await em.query('SELECT enabled FROM oidc_providers WHERE name = $1 FOR SHARE', [name]);
    return rows[0]?.enabled === true;
  },
  /** Every bearer token and browser session of the provider's users ends (the provider was disabled); how many. */
  endSessionsOfUsers: async (em: EntityManager, name: string): Promise<number> => {
    const [, ended]: [unknown[], number] = await em.query(
      'UPDATE access_tokens t SET revoked_at = now(), oidc_refresh = NULL FROM users u WHERE u.id = t.user_id AND u.oidc_provider = $1 AND t.revoked_at IS NULL',
      [name],
    );
    return ended;
  },
  /** How many users are bound to the provider (their subjects belong to its issuer). */
  boundUsers: async (em: EntityManager, name: string): Promise<number> =>
    Number((await em.query('SELECT count(*)::int AS n FROM users WHERE oidc_provider = $1', [name]))[0].n),
};

export const logins = {
  async insertBrowser(
    em: EntityManager,
    r: { id: string; provider: string; stateHash: Buffer; bindingHash: Buffer; nonce: string; codeVerifier: Buffer; returnTo: string; expiresAt: Date },
  ): Promise<void> {
    await em.query(
      `INSERT INTO oidc_logins (id, provider, kind, state_hash, browser_binding_hash, nonce, code_verifier, return_to, expires_at)
       VALUES ($1, $2, 'browser', $3, $4, $5, $6, $7, $8)`,
      [r.id, r.provider, r.stateHash, r.bindingHash, r.nonce, r.codeVerifier, r.returnTo, r.expiresAt],
    );
  },
  /** The browser sign-in this state belongs to, used up by this call (one statement: a second callback finds nothing). */
  async takeBrowser(em: EntityManager, stateHash: Buffer, now: Date): Promise<OidcLoginRow | undefined> {
    const [rows]: [OidcLoginRow[], number] = await em.query(
      `UPDATE oidc_logins l SET used_at = now() WHERE state_hash = $1 AND kind = 'browser' AND used_at IS NULL AND expires_at > $2 RETURNING ${loginColumns('l')}`,
      [stateHash, now],
    );
    return rows[0];
  },
  async insertDevice(em: EntityManager, r: { id: string; provider: string; handleHash: Buffer; deviceCode: Buffer; intervalSeconds: number; expiresAt: Date; now: Date }): Promise<void> {
    await em.query(
      `INSERT INTO oidc_logins (id, provider, kind, vault_handle_hash, device_code, interval_seconds, next_poll_at, expires_at)
       VALUES ($1, $2, 'device', $3, $4, $5, $6, $7)`,
      [r.id, r.provider, r.handleHash, r.deviceCode, r.intervalSeconds, r.now, r.expiresAt],
    );
  },
  /**
   * A poll of a device sign-in: the row, and whether this poll came before the interval since the last one was over
   * (`early`). Each poll moves the next allowed one on by the interval, in one statement (concurrent polls: one is on time).
   */
  async poll(em: EntityManager, handleHash: Buffer, now: Date): Promise<(OidcLoginRow & { early: boolean }) | undefined> {
    const [rows]: [Array<OidcLoginRow & { early: boolean }>, number] = await em.query(
      `WITH cur AS (SELECT id, next_poll_at FROM oidc_logins WHERE vault_handle_hash = $1 AND kind = 'device' FOR UPDATE)
       UPDATE oidc_logins l SET next_poll_at = $2::timestamptz + make_interval(secs => l.interval_seconds)
         FROM cur WHERE l.id = cur.id
       RETURNING ${loginColumns('l')}, cur.next_poll_at > $2::timestamptz AS early`,
      [handleHash, now],
    );
    return rows[0];
  },
  /** The IdP asked the vault to slow down: 5 seconds more between polls (RFC 8628 §3.5). */
  slowDown: async (em: EntityManager, id: string) => {
    await em.query('UPDATE oidc_logins SET interval_seconds = interval_seconds + 5 WHERE id = $1', [id]);
  },
  /** Used up: only the first of concurrent successful polls gets true. */
  async finish(em: EntityManager, id: string): Promise<boolean> {
    const [rows]: [unknown[], number] = await em.query('UPDATE oidc_logins SET used_at = now() WHERE id = $1 AND used_at IS NULL RETURNING id', [id]);
    return rows.length === 1;
  },
  /** Sign-ins that lapsed or were used more than an hour ago. */
  purge: async (em: EntityManager, now: Date) => {
    await em.query("DELETE FROM oidc_logins WHERE expires_at < $1::timestamptz - interval '1 hour'", [now]);
  },
};

export interface OidcUserRow {
  id: string;
  username: string;
  roles: Role[];
  disabled: boolean;
  mfaEnrolled: boolean;
}

const USER_COLUMNS = `u.id, u.username, u.roles, u.disabled,
  (u.mfa_secret IS NOT NULL OR EXISTS (SELECT 1 FROM webauthn_credentials w WHERE w.user_id = u.id)) AS "mfaEnrolled"`;

export const oidcUsers = {
  async bySubject(em: EntityManager, provider: string, subject: string): Promise<OidcUserRow | undefined> {
    const rows: OidcUserRow[] = await em.query(`SELECT ${USER_COLUMNS} FROM users u WHERE u.oidc_provider = $1 AND u.oidc_subject = $2`, [provider, subject]);
    return rows[0];
  },
  /** The user's roles and standing, the row locked (after the user-roles lock). */
  async lockStanding(em: EntityManager, id: string): Promise<{ roles: Role[]; disabled: boolean }> {
    const [row]: Array<{ roles: Role[]; disabled: boolean }> = await em.query('SELECT roles, disabled FROM users WHERE id = $1 FOR UPDATE', [id]);
    return row;
  },
  /** Whether the user is disabled now, the row share-locked until the caller's transaction ends (a disable waits for it). */
  async disabledNow(em: EntityManager, id: string): Promise<boolean> {
    const rows: Array<{ disabled: boolean }> = await em.query('SELECT disabled FROM users WHERE id = $1 FOR SHARE', [id]);
    return rows[0]?.disabled !== false;
  },
  /** Another enabled admin exists (checked under the user-roles lock). */
  async anotherAdmin(em: EntityManager, id: string): Promise<boolean> {
    const rows: unknown[] = await em.query("SELECT 1 FROM users WHERE id <> $1 AND NOT disabled AND 'admin' = ANY (roles) LIMIT 1", [id]);
    return rows.length === 1;
  },
  /** A new user bound to the provider subject; undefined when the username (or the subject, concurrently) is taken. */
  async create(em: EntityManager, u: { id: string; username: string; passwordHash: string; roles: Role[]; email: string | null; provider: string; subject: string }): Promise<boolean> {
    const rows: unknown[] = await em.query(
      `INSERT INTO users (id, username, password_hash, roles, email, oidc_provider, oidc_subject, password_login)
       VALUES ($1, $2, $3, $4, $5, $6, $7, false) ON CONFLICT DO NOTHING RETURNING id`,
      [u.id, u.username, u.passwordHash, u.roles, u.email, u.provider, u.subject],
    );
    return rows.length === 1;
  },
  setRoles: async (em: EntityManager, id: string, roles: Role[]) => {
    await em.query('UPDATE users SET roles = $2, updated_at = now() WHERE id = $1', [id, roles]);
  },
  /** Every token and browser session of the user ends (their access was removed at the identity provider), refresh tokens with them. */
  endSessions: async (em: EntityManager, id: string) => {
    await em.query('UPDATE access_tokens SET revoked_at = coalesce(revoked_at, now()), oidc_refresh = NULL WHERE user_id = $1 AND (revoked_at IS NULL OR oidc_refresh IS NOT NULL)', [id]);
  },
};

/** A session or token single sign-on made, due for a re-check of the person's groups at the provider. */
export interface RecheckRow {
  id: string;
  userId: string;
  provider: string;
  refresh: Buffer;
  subject: string | null;
  createdAt: Date;
}

/** The provider refresh tokens kept with sessions and tokens (`access_tokens.oidc_*`), and the re-check sweep's claims. */
export const refreshTokens = {
  /** Keeps the refresh token with the session or token just issued (found by its hash); `seal` encrypts it bound to the row. */
  async attach(em: EntityManager, tokenHash: Buffer, provider: string, now: Date, seal: (rowId: string) => Buffer): Promise<void> {
    const [row]: Array<{ id: string }> = await em.query('SELECT id FROM access_tokens WHERE token_hash = $1', [tokenHash]);
    if (!row) return;
    await em.query('UPDATE access_tokens SET oidc_provider = $2, oidc_refresh = $3, oidc_checked_at = $4 WHERE id = $1', [row.id, provider, seal(row.id), now]);
  },
  /**
   * Every due session and token (live, last checked `everySeconds` ago or more) of up to `limit` users, those waiting
   * longest first, claimed for this pass (checked_at moved to now in the same statement; SKIP LOCKED: instances take
   * different rows). One user's many sessions are one item: the provider is asked once per user.
   */
  async claimDueUsers(em: EntityManager, now: Date, everySeconds: number, limit: number): Promise<RecheckRow[]> {
    const due = `oidc_refresh IS NOT NULL AND revoked_at IS NULL AND expires_at > $1 AND oidc_checked_at <= $1::timestamptz - make_interval(secs => $2)`;
    const [rows]: [RecheckRow[], number] = await em.query(
      `UPDATE access_tokens t SET oidc_checked_at = $1
         FROM users u
        WHERE u.id = t.user_id AND t.id IN (
          SELECT id FROM access_tokens
           WHERE ${due} AND user_id IN (SELECT user_id FROM access_tokens WHERE ${due} GROUP BY user_id ORDER BY min(oidc_checked_at) LIMIT $3)
           FOR UPDATE SKIP LOCKED)
       RETURNING t.id, t.user_id AS "userId", t.oidc_provider AS provider, t.oidc_refresh AS refresh, u.oidc_subject AS subject, t.created_at AS "createdAt"`,
      [now, everySeconds, limit],
    );
    return rows;
  },
  /** The provider rotated the refresh token: the new one replaces it. */
  replace: async (em: EntityManager, id: string, sealed: Buffer) => {
    await em.query('UPDATE access_tokens SET oidc_refresh = $2 WHERE id = $1 AND revoked_at IS NULL', [id, sealed]);
  },
  /** This one session or token ends (the provider no longer honours its refresh token); its refresh token goes. */
  end: async (em: EntityManager, id: string) => {
    await em.query('UPDATE access_tokens SET revoked_at = now(), oidc_refresh = NULL WHERE id = $1', [id]);
  },
  /**
   * Refresh tokens of sessions that ended (revoked, past their end, or browser sessions idle past `idleSeconds`) are
   * dropped: nothing asks the provider for a session nobody can use, and no ended session keeps a provider credential.
   */
  async dropEnded(em: EntityManager, now: Date, idleSeconds: number): Promise<void> {
    await em.query(
      `UPDATE access_tokens SET oidc_refresh = NULL
        WHERE oidc_refresh IS NOT NULL AND (revoked_at IS NOT NULL OR expires_at <= $1 OR (kind = 'browser' AND last_seen_at <= $1::timestamptz - make_interval(secs => $2)))`,
      [now, idleSeconds],
    );
  },
};

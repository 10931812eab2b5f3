import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Browser sessions of the web portal (issue 15), kept in `access_tokens` beside the bearer login tokens: a session is a
 * login token of another kind, so everything that ends a user's tokens (disabling the user, an MFA reset, a TOTP
 * enrollment) ends their browser sessions in the same statement. A browser session also stores the SHA-256 of its
 * CSRF token and when it was last used (the idle timeout); `expires_at` is its absolute end.
 */
export class BrowserSessions1765000000000 implements MigrationInterface {
  name = 'BrowserSessions1765000000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE access_tokens
        ADD COLUMN kind text NOT NULL DEFAULT 'bearer' CHECK (kind IN ('bearer', 'browser')),
        ADD COLUMN csrf_hash bytea,
        ADD COLUMN last_seen_at timestamptz,
        ADD CONSTRAINT access_tokens_browser_fields CHECK (kind = 'bearer' OR (csrf_hash IS NOT NULL AND last_seen_at IS NOT NULL))`);
  }

  async down(q: QueryRunner): Promise<void> {
    // a browser session is meaningless without its columns: it ends rather than turning into a bearer token
    await q.query(`DELETE FROM access_tokens WHERE kind = 'browser'`);
    await q.query(`
      ALTER TABLE access_tokens
        DROP CONSTRAINT access_tokens_browser_fields,
        DROP COLUMN last_seen_at,
        DROP COLUMN csrf_hash,
        DROP COLUMN kind`);
  }
}

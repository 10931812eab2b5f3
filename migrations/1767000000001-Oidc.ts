import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Single sign-on with OpenID Connect (issue 18): the identity providers an admin configures (`oidc_providers`; the
 * client secret encrypted with the keyring, bound to the provider's row), the sign-ins under way (`oidc_logins`: a
 * browser's authorization request, or a CLI's device authorization; only hashes of the state, the browser binding and
 * the vault's device handle are kept, the PKCE verifier and the IdP's device code are encrypted), and on `users` the
 * provider account a user is bound to (issuer subject, never a name or an e-mail address), whether they may sign in
 * with a password, and the break-glass flag of the bootstrap admin (who always may); on `access_tokens` the provider's
 * refresh token of a session single sign-on made (encrypted), for the sweep that re-checks the person's groups.
 */
export class Oidc1767000000001 implements MigrationInterface {
  name = 'Oidc1767000000001';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE oidc_providers (
        name text PRIMARY KEY CHECK (name ~ '^[a-z0-9-]{1,40}$'),
        display_name text NOT NULL,
        issuer text NOT NULL,
        client_id text NOT NULL,
        client_secret bytea,
        scopes text[] NOT NULL DEFAULT '{openid,profile,email,groups}',
        groups_claim text NOT NULL DEFAULT 'groups',
        group_roles jsonb NOT NULL DEFAULT '{}',
        enabled boolean NOT NULL DEFAULT true,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`
      CREATE TABLE oidc_logins (
        id uuid PRIMARY KEY,
        provider text NOT NULL REFERENCES oidc_providers (name) ON DELETE CASCADE,
        kind text NOT NULL CHECK (kind IN ('browser', 'device')),
        state_hash bytea UNIQUE,
        browser_binding_hash bytea,
        nonce text,
        code_verifier bytea,
        return_to text,
        device_code bytea,
        vault_handle_hash bytea UNIQUE,
        interval_seconds integer,
        next_poll_at timestamptz,
        expires_at timestamptz NOT NULL,
        used_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT oidc_logins_browser CHECK (kind <> 'browser' OR (state_hash IS NOT NULL AND browser_binding_hash IS NOT NULL AND nonce IS NOT NULL AND code_verifier IS NOT NULL)),
        CONSTRAINT oidc_logins_device CHECK (kind <> 'device' OR (device_code IS NOT NULL AND vault_handle_hash IS NOT NULL AND interval_seconds IS NOT NULL))
      )`);
    await q.query('CREATE INDEX oidc_logins_expires_idx ON oidc_logins (expires_at)');
    await q.query(`
      ALTER TABLE users
        ADD COLUMN oidc_provider text,
        ADD COLUMN oidc_subject text,
        ADD COLUMN password_login boolean NOT NULL DEFAULT true,
        ADD COLUMN break_glass boolean NOT NULL DEFAULT false,
        ADD CONSTRAINT users_oidc_pair CHECK ((oidc_provider IS NULL) = (oidc_subject IS NULL)),
        ADD CONSTRAINT users_oidc_subject_key UNIQUE (oidc_provider, oidc_subject)`);
    // a session or token made by single sign-on keeps the provider's refresh token (encrypted, bound to its row): the
    // re-check sweep uses it to see the person's groups between sign-ins
    await q.query(`
      ALTER TABLE access_tokens
        ADD COLUMN oidc_provider text,
        ADD COLUMN oidc_refresh bytea,
        ADD COLUMN oidc_checked_at timestamptz,
        ADD CONSTRAINT access_tokens_oidc_refresh CHECK (oidc_refresh IS NULL OR (oidc_provider IS NOT NULL AND oidc_checked_at IS NOT NULL))`);
    await q.query('CREATE INDEX access_tokens_oidc_recheck_idx ON access_tokens (oidc_checked_at) WHERE oidc_refresh IS NOT NULL AND revoked_at IS NULL');
    // the bootstrap admin (created with this name at first start) is the break-glass account — if it still is an enabled
    // admin: one an admin demoted or disabled before this version stays as it is (no break-glass user then)
    await q.query("UPDATE users SET break_glass = true WHERE username = 'admin' AND 'admin' = ANY (roles) AND NOT disabled");
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP INDEX access_tokens_oidc_recheck_idx');
    await q.query('ALTER TABLE access_tokens DROP CONSTRAINT access_tokens_oidc_refresh, DROP COLUMN oidc_checked_at, DROP COLUMN oidc_refresh, DROP COLUMN oidc_provider');
    await q.query('ALTER TABLE users DROP CONSTRAINT users_oidc_subject_key, DROP CONSTRAINT users_oidc_pair, DROP COLUMN break_glass, DROP COLUMN password_login, DROP COLUMN oidc_subject, DROP COLUMN oidc_provider');
    await q.query('DROP TABLE oidc_logins');
    await q.query('DROP TABLE oidc_providers');
  }
}

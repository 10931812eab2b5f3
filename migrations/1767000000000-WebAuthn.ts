import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * WebAuthn second factor (issue 18): a user's security keys and passkeys (`webauthn_credentials`: the public key,
 * the signature counter the clone check compares, `flagged_at` once a clone was suspected), and the challenges the
 * vault hands out (`webauthn_challenges`): each for one purpose, bound to what it may be used for (`binding`: a
 * keyed HMAC of the action's SHA-256 for a step-up, `login`, `register:first` / `register:step_up`), short-lived, and used once (`used_at`, set by one
 * conditional UPDATE in the transaction of the action it proves). A login challenge keeps the password attempt of the
 * sign-in that asked for it (`attempt`: its throttle keys and windows), given back when the key answers it.
 */
export class WebAuthn1767000000000 implements MigrationInterface {
  name = 'WebAuthn1767000000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE webauthn_credentials (
        id uuid PRIMARY KEY,
        user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        credential_id text NOT NULL UNIQUE CHECK (length(credential_id) BETWEEN 16 AND 1400 AND credential_id ~ '^[A-Za-z0-9_-]+$'),
        public_key bytea NOT NULL,
        sign_count bigint NOT NULL DEFAULT 0 CHECK (sign_count >= 0),
        transports text[] NOT NULL DEFAULT '{}',
        name text NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
        aaguid text NOT NULL,
        backed_up boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now(),
        last_used_at timestamptz,
        flagged_at timestamptz,
        CONSTRAINT webauthn_credentials_name_per_user UNIQUE (user_id, name)
      )`);
    await q.query(`
      CREATE TABLE webauthn_challenges (
        id uuid PRIMARY KEY,
        user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        challenge text NOT NULL UNIQUE,
        purpose text NOT NULL CHECK (purpose IN ('register', 'login', 'step_up')),
        binding text NOT NULL,
        expires_at timestamptz NOT NULL,
        used_at timestamptz,
        attempt jsonb,
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query('CREATE INDEX webauthn_challenges_expires ON webauthn_challenges (expires_at)');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE webauthn_challenges');
    await q.query('DROP TABLE webauthn_credentials');
  }
}

import type { TargetType } from '../crypto/password-generator';
import type { TargetOptions } from '../targets/target.entity';

/**
 * The connector contract, modelled on HashiCorp Vault's database plugin (NewUser / UpdateUser / DeleteUser):
 * stateless calls that each open their own connection to the target, honour a timeout and an abort signal,
 * and throw only ConnectorError (the registry wraps every connector so no secret survives in an error).
 */

/** Everything a connector needs to reach a target as its administrator. Built per call; never cached. */
export interface ConnectorTarget {
  type: TargetType;
  host: string;
  port: number;
  /** The target's admin login. */
  adminUsername: string;
  /** Admin password (all types) and/or, for SSH, a private key with optional passphrase. */
  adminPassword?: string;
  adminPrivateKey?: string;
  adminPassphrase?: string;
  /** `hostKeySha256` (SSH pin, base64 without padding), `sudo` (SSH), `database` (PostgreSQL/MySQL). */
  options: TargetOptions;
}

/** Per-call limits. The registry fills in a default timeout. */
export interface CallOptions {
  /** Abort the call (closing its connection) when this signal fires. */
  signal?: AbortSignal;
  /** Milliseconds before the call is abandoned with TARGET_TIMEOUT. */
  timeoutMs?: number;
}

export interface VerifyResult {
  ok: true;
  /** What the server says it is (`SHOW server_version`, `SELECT VERSION()`, the SSH banner). */
  serverVersion?: string;
  /** SSH: the SHA-256 of the host key that was presented (base64, no padding): recorded at first verify. */
  hostKeySha256?: string;
}

/** An account's login on the target. `username` has passed the type's strict name pattern. */
export interface AccountCredential {
  username: string;
  password: string;
}

/** What a one-time (ephemeral) account may do, per target type (API.md `access`). */
export interface EphemeralAccess {
  /** SSH: supplementary groups. */
  groups?: string[];
  /** PostgreSQL: database to grant CONNECT on, and roles to grant. */
  database?: string;
  grantRoles?: string[];
  /** MySQL: GRANT statements as {privileges, on}. */
  grants?: Array<{ privileges: string[]; on: string }>;
  /**
   * The account stops working on the target by itself at this time, as a backstop if the vault is down at
   * expiry (the vault's reaper still revokes it on time when it is up).
   * - SSH has day granularity: the account expires at the start of the UTC day after `validUntil`
   *   (`useradd -e`, shadow field 8), so it stays valid until at least `validUntil` and at most a day longer.
   * - PostgreSQL: `VALID UNTIL`, exact (checked by password authentication; open sessions are not ended).
   * - MySQL/MariaDB: no native account expiry — ignored, the vault's reaper is the only remover.
   * Must be a valid Date between 1970 and 9999 (else TARGET_INVALID_NAME before anything runs).
   */
  validUntil?: Date;
}

export interface Connector {
  readonly type: TargetType;

  /** Logs in with the admin credential and reports the server version (and the SSH host key). */
  verify(target: ConnectorTarget, opts?: CallOptions): Promise<VerifyResult>;

  /** Sets an existing account's password through the admin credential (Vault's UpdateUser). */
  rotate(target: ConnectorTarget, account: AccountCredential, opts?: CallOptions): Promise<void>;

  /** Logs in as the account itself: resolves when the password works, throws TARGET_AUTH_FAILED when not. */
  login(target: ConnectorTarget, account: AccountCredential, opts?: CallOptions): Promise<void>;

  /** Creates a one-time account with this password and access (Vault's NewUser). Fails if it exists. */
  createEphemeral(target: ConnectorTarget, account: AccountCredential, access: EphemeralAccess, opts?: CallOptions): Promise<void>;

  /** Ends the account's sessions and removes it (Vault's DeleteUser). Succeeds when it is already gone. */
  revokeEphemeral(target: ConnectorTarget, username: string, opts?: CallOptions): Promise<void>;

  /** Ends every live session of the account (PostgreSQL pg_terminate_backend, MySQL KILL, SSH pkill -KILL -u). */
  terminateSessions(target: ConnectorTarget, username: string, opts?: CallOptions): Promise<void>;
}

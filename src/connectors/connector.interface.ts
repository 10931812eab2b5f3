import type { TargetType } from '../crypto/password-generator';

/**
 * The connector contract, modelled on HashiCorp Vault's database plugin (NewUser / UpdateUser / DeleteUser):
 * stateless calls (the PostgreSQL and MySQL connectors run admin work on pooled connections, src/connectors/admin-pool.ts,
 * reused only while the target's address, admin credential and TLS settings are unchanged; account logins and SSH open
 * their own) that honour a timeout and an abort signal, and throw only ConnectorError (the registry wraps every
 * connector so no secret survives in an error).
 */

/**
 * How to reach a target and prove it is the one: kept on the target's row (`targets.options`), handed to its connector.
 */
export interface TargetOptions {
  /** SSH: the pinned host key (SHA-256, base64 without padding); nothing is sent to a host without it. */
  hostKeySha256?: string;
  /** SSH: accepted and ignored (a non-root admin always runs privileged commands through sudo). */
  sudo?: boolean;
  /** PostgreSQL/MySQL: the database the admin connects to. */
  database?: string;
  /** MySQL: the host part of the account names the vault manages (default '%'). */
  accountHost?: string;
  /**
   * PostgreSQL: require TLS with a verified server certificate (MySQL/MariaDB: always required). Verified against
   * `tlsCa` (PEM) when given, else the system's CAs; the certificate must name the target's host.
   */
  tls?: boolean;
  /** PEM CA bundle the server certificate must chain to. */
  tlsCa?: string;
  /** Pin: SHA-256 of the server certificate (DER), as upper-case hex pairs joined by ':' (Node's fingerprint256). */
  tlsCertSha256?: string;
}

/** Everything a connector needs to reach a target as its administrator. Built per call (a pool keys its connections by a hash of it). */
export interface ConnectorTarget {
  /** The target's row id, when the vault's own: pools are kept per target (admin-pool.ts). Never sent anywhere. */
  id?: string;
  type: TargetType;
  host: string;
  port: number;
  /** The target's admin login. */
  adminUsername: string;
  /** Admin password (all types) and/or, for SSH, a private key with optional passphrase. */
  adminPassword?: string;
  adminPrivateKey?: string;
  adminPassphrase?: string;
  options: TargetOptions;
}

/** Per-call limits. The registry fills in a default timeout. */
export interface CallOptions {
  /** Abort the call (closing its connection) when this signal fires. */
  signal?: AbortSignal;
  /** Milliseconds before the call is abandoned with TARGET_TIMEOUT. */
  timeoutMs?: number;
}

/**
 * One thing the vault needs the target's administrator to be able to do, probed by verify without changing anything.
 * Codes are stable (README "Least-privilege administrators" lists them with the grant that satisfies each).
 */
export interface Capability {
  /** e.g. `SSH_PRIVILEGE`, `SSH_USER_MANAGEMENT`, `PG_CREATEROLE`, `PG_SIGNAL_BACKEND`, `MYSQL_CREATE_USER`, `MYSQL_CONNECTION_ADMIN`. */
  code: string;
  ok: boolean;
  /** What was found and, when missing, what to grant. Never a secret. */
  message: string;
}

export interface VerifyResult {
  ok: true;
  /** What the server says it is (`SHOW server_version`, `SELECT VERSION()`, `uname -sr`). */
  serverVersion?: string;
  /** SSH: the SHA-256 of the host key that was presented (base64, no padding); always equal to the pin. */
  hostKeySha256?: string;
  /** SSH: how privileged commands run — as root, through sudo without a password, or sudo with the admin's password. */
  privilege?: 'root' | 'sudo-nopasswd' | 'sudo-password';
  /** Every capability the vault relies on for this target type, present or not (verify reports all, never stops at the first). */
  capabilities: Capability[];
}

/**
 * What an ephemeral policy (all it allows) or a request (what it asks) would hand a one-time account, checked against the
 * target's own catalog by {@link Connector.inspectAccess}.
 */
export interface AccessInspection {
  /** SSH supplementary groups. */
  groups?: string[];
  /** PostgreSQL databases CONNECT would be granted on. */
  databases?: string[];
  /** PostgreSQL roles that would be granted. */
  roles?: string[];
  /** MySQL grants. */
  grants?: Array<{ privileges: string[]; on: string }>;
}

/** What a one-time (ephemeral) account may do, per target type (the API's `access` field). */
export interface EphemeralAccess {
  /** SSH: supplementary groups. */
  groups?: string[];
  /** PostgreSQL: database to grant CONNECT on, and roles to grant. */
  database?: string;
  grantRoles?: string[];
  /** MySQL: GRANT statements as {privileges, on}. */
  grants?: Array<{ privileges: string[]; on: string }>;
}

/**
 * What a target type can do beyond the operations every connector has. The vault asks a connector for nothing it does
 * not support, and a request that asks for it anyway is refused with TARGET_UNSUPPORTED, never silently ignored.
 */
export interface ConnectorSupport {
  /**
   * Whether a new user stops working on the target by itself at `validUntil` (a backstop should the vault be down at
   * expiry): `exact` (PostgreSQL `VALID UNTIL`), `day` (SSH: shadow expiry, from the start of the UTC day after
   * `validUntil`), `none` (MySQL/MariaDB: the vault's reaper is the only remover).
   */
  accountExpiry: 'exact' | 'day' | 'none';
  /** Whether the target presents a host key to pin before any credential is sent (SSH). */
  hostKey: boolean;
}

/** Sets an existing account's password through the admin credential (Vault's UpdateUserRequest). Names have passed the type's strict pattern. */
export interface UpdatePasswordRequest {
  username: string;
  password: string;
}

/** Logs in as the account itself. */
export interface LoginRequest {
  username: string;
  password: string;
}

/** Creates a one-time account (Vault's NewUserRequest). */
export interface NewUserRequest {
  username: string;
  password: string;
  access: EphemeralAccess;
  /**
   * The account stops working on the target by itself at this time, a backstop should the vault be down at expiry (the
   * reaper still removes it on time when it is up). How exactly depends on {@link ConnectorSupport.accountExpiry}
   * (SSH: it stays valid until at least `validUntil` and at most a day longer); a connector without account expiry
   * refuses it (TARGET_UNSUPPORTED). A valid Date between 1970 and 9999 (else TARGET_INVALID_NAME before anything runs).
   */
  validUntil?: Date;
}

export interface NewUserResponse {
  /** When the target itself stops the account (SSH: the start of the UTC day after validUntil); null when it never does. */
  expiresOnTarget: Date | null;
}

/** Ends the account's sessions and removes it (Vault's DeleteUserRequest). */
export interface DeleteUserRequest {
  username: string;
}

/** Ends the account's login sessions (never the admin's). */
export interface TerminateSessionsRequest {
  username: string;
}

/**
 * One live session of an account on a target, as {@link Connector.listSessions} answers it. Never a secret: no query text
 * (PostgreSQL, MySQL), process titles bounded.
 */
export interface TargetSession {
  /**
   * Opaque, stable while the session lives, never reused for another session: SSH `ssh-<pid>-<start digest>` (the
   * session process, see ssh-processes.ts), PostgreSQL `pg-<pid>-<backend_start, epoch µs>`, MySQL `my-<connection id>`.
   */
  id: string;
  username: string;
  kind: 'ssh' | 'postgres' | 'mysql';
  /** `address:port` of the client, when the target tells (SSH: only to a root admin; PostgreSQL: null over a unix socket). */
  clientAddress: string | null;
  /** When the session started (ISO), when the target tells (MySQL/MariaDB do not). */
  since: string | null;
  /** SSH `active` or `authenticating`; PostgreSQL `state` (active, idle, idle in transaction, …); MySQL `COMMAND` (Sleep, Query, …). */
  state: string | null;
  /** PostgreSQL, MySQL: the database the session uses. */
  database?: string | null;
  /** SSH: the session's terminal (`pts/3`), null without one. */
  tty?: string | null;
  /** SSH: the title of the session's first process of the user (≤ 200 characters). */
  command?: string | null;
  /** SSH: the processes ending the session ends (INVARIANT 18's rule), at most 50. */
  processes?: Array<{ pid: number; command: string }>;
}

/** The live sessions of one account. */
export interface ListSessionsRequest {
  username: string;
}

/** Ends one session of an account: only while it still matches the id AND the account. */
export interface EndSessionRequest {
  username: string;
  sessionId: string;
}

/** The session id patterns, per type (checked before anything reaches a target). */
export const SESSION_ID_PATTERNS = {
  ssh: /^ssh-([1-9][0-9]{0,6})-([0-9a-f]{16})$/,
  postgres: /^pg-([1-9][0-9]{0,6})-([0-9]{1,19})$/,
  mysql: /^my-([1-9][0-9]{0,15})$/,
} as const satisfies Record<TargetType, RegExp>;

export interface Connector {
  readonly type: TargetType;
  readonly supports: ConnectorSupport;

  /**
   * Only where `supports.hostKey` (SSH): connects, reads the host key the server presents and disconnects before
   * authenticating (nothing is sent). What an admin confirms out of band before the key is pinned.
   */
  hostKey?(target: ConnectorTarget, opts?: CallOptions): Promise<string>;

  /**
   * Checks what a policy or request would hand a one-time account against the target's own catalog (allow-list,
   * INVARIANT 20): resolves to the refusals, one readable line each (empty: all allowed). Throws only when the target
   * cannot be asked.
   */
  inspectAccess(target: ConnectorTarget, access: AccessInspection, opts?: CallOptions): Promise<string[]>;

  /** Whether `username` is the target's administrator itself: the same name, or (SSH) the same uid. */
  isAdmin(target: ConnectorTarget, username: string, opts?: CallOptions): Promise<boolean>;

  /**
   * Logs in with the admin credential and reports the server version, (SSH) the host key and privilege mode, and every
   * capability the vault needs. Throws only when the admin cannot log in or the target's identity is not established.
   */
  verify(target: ConnectorTarget, opts?: CallOptions): Promise<VerifyResult>;

  /** Sets an existing account's password through the admin credential (Vault's UpdateUser). */
  updatePassword(target: ConnectorTarget, req: UpdatePasswordRequest, opts?: CallOptions): Promise<void>;

  /** Logs in as the account itself: resolves when the password works, throws TARGET_AUTH_FAILED when not. */
  login(target: ConnectorTarget, req: LoginRequest, opts?: CallOptions): Promise<void>;

  /** Creates a one-time account with this password and access (Vault's NewUser). Fails if it exists. */
  newUser(target: ConnectorTarget, req: NewUserRequest, opts?: CallOptions): Promise<NewUserResponse>;

  /** Ends the account's sessions and removes it (Vault's DeleteUser). Succeeds when it is already gone. */
  deleteUser(target: ConnectorTarget, req: DeleteUserRequest, opts?: CallOptions): Promise<void>;

  /**
   * Ends the account's login sessions and what runs under them — never every process of a system account (INVARIANT 18):
   * SSH: the sshd sessions opened as the account (and their audit sessions); PostgreSQL: its client backends; MySQL: its
   * client connections. Refused for the admin itself.
   */
  terminateSessions(target: ConnectorTarget, req: TerminateSessionsRequest, opts?: CallOptions): Promise<void>;

  /**
   * The account's live sessions on the target now (SSH: login sessions by INVARIANT 18's rule; PostgreSQL: its client
   * backends; MySQL: its client connections) — never the admin's own, never the target's own processes or threads.
   */
  listSessions(target: ConnectorTarget, req: ListSessionsRequest, opts?: CallOptions): Promise<TargetSession[]>;

  /**
   * Ends one session, read again first: only when a session of `username` with this id still runs (false otherwise,
   * and nothing is ended). Never the admin's own session, never the listener or pid 1.
   */
  endSession(target: ConnectorTarget, req: EndSessionRequest, opts?: CallOptions): Promise<boolean>;
}

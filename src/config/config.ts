import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { basename, join, resolve } from 'node:path';
import { z } from 'zod';

/**
 * Typed configuration, read once from the environment at boot.
 * Values marked sensitive are never printed, not even in validation errors.
 */
const intIn = (min: number, max: number) =>
  z.coerce
    .number({ message: `must be an integer between ${min} and ${max}` })
    .int(`must be an integer between ${min} and ${max}`)
    .min(min, `must be an integer between ${min} and ${max}`)
    .max(max, `must be an integer between ${min} and ${max}`);

/**
 * Crash points (tests only): the vault SIGKILLs itself when it reaches the one VAULT_CRASH_POINT names
 * (ClaimedWork.crash in src/database/claimed-work.ts). Named for the work and the step they interrupt.
 */
export const CRASH_POINTS = [
  'rotation-after-pending-write',
  'rotation-after-target-change',
  'rotation-after-login-check',
  'rotation-before-commit',
  'ephemeral-after-intent',
  'ephemeral-after-create',
  'ephemeral-before-commit',
  'notify-before-send',
  'notify-after-send',
] as const;
export type CrashPointName = (typeof CRASH_POINTS)[number];

/** The names crash points had before they said which work they interrupt: still accepted, read as the new name. */
export const CRASH_POINT_ALIASES: ReadonlyMap<string, CrashPointName> = new Map([
  ['after-pending-write', 'rotation-after-pending-write'],
  ['after-target-change', 'rotation-after-target-change'],
  ['after-login-check', 'rotation-after-login-check'],
  ['before-commit', 'rotation-before-commit'],
]);

const crashPoint = z
  .string()
  .refine((v) => (CRASH_POINTS as readonly string[]).includes(v) || CRASH_POINT_ALIASES.has(v), `must be one of ${CRASH_POINTS.join(', ')}`)
  .transform((v): CrashPointName => CRASH_POINT_ALIASES.get(v) ?? (v as CrashPointName));

const schema = z
  .object({
    DATABASE_URL: z
      .string()
      .regex(/^postgres(ql)?:\/\/\S+$/, 'must be a postgres:// or postgresql:// URL')
      .optional(),
    VAULT_DATA_DIR: z.string().min(1).default('./data'),
    VAULT_MASTER_KEY: z.string().min(1).optional(),
    VAULT_MASTER_KEY_FILE: z.string().min(1).optional(),
    PORT: intIn(1, 65535).default(8080),
    VAULT_HOST: z.string().min(1).default('127.0.0.1'),
    VAULT_BOOTSTRAP_ADMIN_PASSWORD: z
      .string()
      .min(12, 'must be at least 12 characters')
      .max(1024, 'must be at most 1024 characters')
      .optional(),
    VAULT_TOKEN_TTL_SECONDS: intIn(60, 86400).default(3600),
    VAULT_TRUST_PROXY: z.string().regex(/^[A-Za-z0-9.:/, ]{1,200}$/, 'must be a number of hops or a list of trusted proxy addresses/subnets').optional(),
    VAULT_EMBEDDED_PG_PORT: intIn(1024, 65535).default(54329),
    VAULT_MAX_BODY_BYTES: intIn(1024, 10 * 1024 * 1024).default(65536),
    VAULT_ARGON2_MEMORY_KIB: intIn(8192, 4 * 1024 * 1024).default(19456),
    VAULT_ARGON2_TIME_COST: intIn(1, 20).default(2),
    VAULT_ARGON2_PARALLELISM: intIn(1, 16).default(1),
    VAULT_AUDIT_SEAL_INTERVAL_MS: intIn(50, 60000).default(1000),
    VAULT_AUDIT_VERIFY_LOCK_WAIT_MS: intIn(100, 600000).default(10000),
    VAULT_ROTATION_CLAIM_SECONDS: intIn(1, 3600).default(120),
    VAULT_ROTATION_MAX_FAILURES: intIn(1, 100).default(5),
    VAULT_ROTATION_SWEEP_MS: intIn(100, 3600000).default(10000),
    VAULT_ROTATION_CONCURRENCY: intIn(1, 256).default(4),
    VAULT_TARGET_POOL_SIZE: intIn(1, 64).default(4),
    VAULT_TARGET_POOL_IDLE_MS: intIn(100, 3600000).default(30000),
    VAULT_HEARTBEAT_SECONDS: intIn(60, 30 * 24 * 3600).default(3600),
    VAULT_CHECKOUT_APPROVAL_TIMEOUT_SECONDS: intIn(60, 7 * 24 * 3600).default(3600),
    VAULT_CHECKOUT_SWEEP_MS: intIn(100, 3600000).default(5000),
    VAULT_CHECKOUT_CLEANUP_MAX_ATTEMPTS: intIn(1, 100).default(10),
    VAULT_EPHEMERAL_REQUEST_TIMEOUT_SECONDS: intIn(60, 30 * 24 * 3600).default(86400),
    VAULT_EPHEMERAL_CLAIM_SECONDS: intIn(1, 3600).default(120),
    VAULT_EPHEMERAL_MAX_ATTEMPTS: intIn(1, 100).default(8),
    VAULT_EPHEMERAL_SWEEP_MS: intIn(100, 3600000).default(5000),
    VAULT_PUBLIC_URL: z
      .string()
      .regex(/^https?:\/\/[^\s/?#]+(\/[^\s?#]*)?$/, 'must be an http(s) URL without query or fragment')
      .refine(publicUrlIsSafe, 'must be an https URL (http only for a loopback host): the links in messages are followed by approvers')
      .optional(),
    VAULT_SMTP_HOST: z.string().regex(/^[A-Za-z0-9.:_-]{1,253}$/, 'must be a host name or address').optional(),
    VAULT_SMTP_PORT: intIn(1, 65535).default(587),
    VAULT_SMTP_TLS: z.enum(['starttls', 'tls', 'none']).default('starttls'),
    VAULT_SMTP_USERNAME: z.string().min(1).max(256).optional(),
    VAULT_SMTP_PASSWORD: z.string().min(1).max(1024).optional(),
    VAULT_SMTP_FROM: z.string().regex(/^[^\s@<>]+@[^\s@<>]+$/, 'must be an e-mail address').optional(),
    VAULT_SMTP_CA_FILE: z.string().min(1).optional(),
    VAULT_NOTIFY_SWEEP_MS: intIn(100, 3600000).default(2000),
    VAULT_NOTIFY_MAX_ATTEMPTS: intIn(1, 100).default(8),
    VAULT_NOTIFY_TIMEOUT_MS: intIn(100, 120000).default(10000),
    VAULT_NOTIFY_EXPIRY_LEAD_SECONDS: intIn(60, 7 * 24 * 3600).default(900),
    VAULT_NOTIFY_ALLOWED_HOSTS: z
      .string()
      .max(4096)
      .refine((v) => parseAllowedHosts(v) !== null, 'must be comma-separated host names, IP addresses or CIDRs (10.0.0.0/8)')
      .optional(),
    VAULT_NOTIFY_EMAIL_DOMAINS: z
      .string()
      .max(4096)
      .refine((v) => parseEmailDomains(v) !== null, 'must be comma-separated e-mail domains (example.com)')
      .optional(),
    VAULT_PORTAL_IDLE_SECONDS: intIn(60, 24 * 3600).default(900),
    VAULT_PORTAL_SESSION_SECONDS: intIn(300, 7 * 24 * 3600).default(28800),
    VAULT_PORTAL_DIR: z.string().min(1).optional(),
    VAULT_SSH_GATEWAY_PORT: intIn(0, 65535).optional(),
    VAULT_SSH_GATEWAY_BIND: z.string().refine((v) => isIP(v) !== 0, 'must be an IPv4 or IPv6 address').default('0.0.0.0'),
    VAULT_SSH_GATEWAY_HOST: z.string().regex(/^[A-Za-z0-9.:_-]{1,253}$/, 'must be a host name or address').optional(),
    VAULT_SSH_GATEWAY_PREAUTH_PER_ADDRESS: intIn(1, 200).default(10),
    VAULT_PASSWORD_LOGIN: z.enum(['enabled', 'disabled']).default('enabled'),
    VAULT_OIDC_LOGIN_SECONDS: intIn(60, 3600).default(600),
    VAULT_OIDC_RECHECK_SECONDS: intIn(0, 86400).default(300),
    VAULT_OIDC_STARTS_PER_MINUTE: intIn(1, 100000).default(20),
    VAULT_WEBAUTHN_RP_ID: z.string().regex(/^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?)*$/, 'must be a domain name (the portal\'s host or a parent of it)').optional(),
    VAULT_WEBAUTHN_ORIGIN: z.string().regex(/^https?:\/\/[^\s/?#]+$/, 'must be an origin: http(s)://host[:port], no path').refine(publicUrlIsSafe, 'must be https (http only for a loopback host)').optional(),
    VAULT_WEBAUTHN_RP_NAME: z.string().min(1).max(64).default('PAM vault'),
    VAULT_APPROVERS_REQUIRE_WEBAUTHN: z.enum(['true', 'false']).default('false'),
    VAULT_CRASH_POINT: crashPoint.optional(),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .refine((c) => !(c.VAULT_MASTER_KEY && c.VAULT_MASTER_KEY_FILE), {
    message: 'set only one of VAULT_MASTER_KEY and VAULT_MASTER_KEY_FILE',
    path: ['VAULT_MASTER_KEY'],
  })
  .refine((c) => c.VAULT_PORTAL_IDLE_SECONDS <= c.VAULT_PORTAL_SESSION_SECONDS, {
    message: 'must not be longer than VAULT_PORTAL_SESSION_SECONDS',
    path: ['VAULT_PORTAL_IDLE_SECONDS'],
  })
  .refine((c) => c.VAULT_SSH_GATEWAY_PORT !== 0 || /^(127\.\d+\.\d+\.\d+|::1)$/.test(c.VAULT_SSH_GATEWAY_BIND), {
    message: '0 (a free port, for tests) is allowed only with a loopback VAULT_SSH_GATEWAY_BIND: clients must be told a port they can rely on',
    path: ['VAULT_SSH_GATEWAY_PORT'],
  })
  .refine((c) => c.VAULT_SMTP_HOST === undefined || c.VAULT_SMTP_FROM !== undefined, { message: 'is required with VAULT_SMTP_HOST', path: ['VAULT_SMTP_FROM'] })
  .refine((c) => c.VAULT_SMTP_TLS !== 'none' || c.VAULT_SMTP_HOST === undefined || /^(127\.\d+\.\d+\.\d+|localhost|::1)$/.test(c.VAULT_SMTP_HOST), {
    message: "'none' is allowed only for a loopback SMTP server (passwords and messages would cross the network in clear)",
    path: ['VAULT_SMTP_TLS'],
  });

export type RawConfig = z.infer<typeof schema>;

const HOST_NAME = /^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,62}[a-z0-9_])?)*$/;

/** `VAULT_NOTIFY_ALLOWED_HOSTS`: host names, addresses and CIDRs (comma-separated), parsed; null: one entry is none. */
export function parseAllowedHosts(value: string | undefined): { hosts: string[]; nets: string[] } | null {
  const hosts: string[] = [];
  const nets: string[] = [];
  for (const raw of (value ?? '').split(',')) {
    const entry = raw.trim().toLowerCase().replace(/^\[|\]$/g, '').replace(/\.$/, '');
    if (!entry) continue;
    const [addr, prefix, ...rest] = entry.split('/');
    if (isIP(addr)) {
      const max = isIP(addr) === 4 ? 32 : 128;
      if (rest.length || (prefix !== undefined && !(/^\d{1,3}$/.test(prefix) && Number(prefix) <= max))) return null;
      nets.push(prefix === undefined ? addr : `${addr}/${prefix}`);
    } else if (prefix === undefined && HOST_NAME.test(entry) && !/^[\d.]+$/.test(entry)) {
      hosts.push(entry);
    } else {
      return null;
    }
  }
  return { hosts, nets };
}

/** VAULT_PUBLIC_URL: https, or http to the vault's own machine (127.0.0.0/8, ::1, localhost). */
function publicUrlIsSafe(v: string): boolean {
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    return false;
  }
  if (url.protocol === 'https:') return true;
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return url.protocol === 'http:' && (host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host));
}

const EMAIL_DOMAIN = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?)+$/;

/** VAULT_NOTIFY_EMAIL_DOMAINS: lowercase domains; null when one entry is not a domain. */
export function parseEmailDomains(v: string): string[] | null {
  const domains = v
    .split(',')
    .map((d) => d.trim().toLowerCase().replace(/^@/, ''))
    .filter(Boolean);
  return domains.length > 0 && domains.every((d) => EMAIL_DOMAIN.test(d)) ? domains : null;
}

export interface AppConfig {
  databaseUrl?: string;
  dataDir: string;
  masterKey?: string;
  masterKeyFile?: string;
  port: number;
  host: string;
  bootstrapAdminPassword?: string;
  tokenTtlSeconds: number;
  /** Express `trust proxy`: which X-Forwarded-For hops to believe for the client address. */
  trustProxy?: string | number;
  embeddedPgPort: number;
  maxBodyBytes: number;
  argon2: { memoryCost: number; timeCost: number; parallelism: number };
  auditSealIntervalMs: number;
  auditVerifyLockWaitMs: number;
  rotation: { claimSeconds: number; maxFailures: number; sweepMs: number; concurrency: number; heartbeatSeconds: number };
  /** Pooled admin connections per PostgreSQL/MySQL target (src/connectors/admin-pool.ts): connections per target, idle time before one is closed. */
  targetPool: { size: number; idleMs: number };
  /** Pending requests lapse after approvalTimeoutSeconds; the sweep ends expired leases and retries cleanup. */
  checkout: { approvalTimeoutSeconds: number; sweepMs: number; cleanupMaxAttempts: number };
  /** One-time accounts: unclaimed requests lapse; claims on target work; removal attempts before needs_attention; reaper interval. */
  ephemeral: { requestTimeoutSeconds: number; claimSeconds: number; maxAttempts: number; sweepMs: number };
  /** Notifications: the web portal's address for links, delivery sweep, attempts before `failed`, send deadline, expiry warning lead. */
  notify: {
    publicUrl?: string;
    sweepMs: number;
    maxAttempts: number;
    timeoutMs: number;
    expiryLeadSeconds: number;
    /** VAULT_NOTIFY_ALLOWED_HOSTS: internal hosts, addresses and networks webhooks may still go to (else public addresses only). */
    allowedHosts: { hosts: string[]; nets: string[] };
    /** VAULT_NOTIFY_EMAIL_DOMAINS: the only domains e-mail addresses may be in (undefined: any). */
    emailDomains?: string[];
  };
  /** The SMTP server people's e-mail goes through; undefined: no e-mail is sent (deliveries are recorded `no_address`). */
  smtp?: { host: string; port: number; tls: 'starttls' | 'tls' | 'none'; username?: string; password?: string; from: string; caFile?: string };
  /**
   * The web portal: browser sessions end after idleSeconds without a request, and sessionSeconds after sign-in whatever
   * happens; the built single-page app is served from dir (VAULT_PORTAL_DIR, default dist/portal next to the server).
   */
  portal: { idleSeconds: number; sessionSeconds: number; dir: string };
  /**
   * The SSH gateway (VAULT_SSH_GATEWAY_PORT; undefined: none, connect answers 409 GATEWAY_DISABLED): it listens on
   * bind:port (port 0: a free port, for tests) and tells clients to reach it at host; at most preauthPerAddress
   * connections from one client address may be unauthenticated at once (raise it behind a load balancer or NAT that
   * shows every client as one address).
   */
  sshGateway?: { port: number; bind: string; host: string; preauthPerAddress: number };
  /**
   * Sign-in: `passwordLogin` false (VAULT_PASSWORD_LOGIN=disabled) refuses every password sign-in but the break-glass
   * admin's (audited `auth.break_glass` and alerted); `oidcLoginSeconds`: how long a single sign-on (browser or device)
   * may take from its start; `oidcRecheckSeconds`: how often the groups of a person signed in by single sign-on are
   * checked again at the provider (with the session's refresh token; 0: only at sign-in); `oidcStartsPerMinute`: the
   * single sign-on starts (browser and device) one client address may make in a minute.
   */
  signIn: { passwordLogin: boolean; oidcLoginSeconds: number; oidcRecheckSeconds: number; oidcStartsPerMinute: number };
  /**
   * WebAuthn (security keys, passkeys): the relying party id (a domain: the portal's host or a parent of it) and the
   * origin the browser reports (VAULT_WEBAUTHN_RP_ID / _ORIGIN; default: VAULT_PUBLIC_URL's host and origin, else
   * localhost and http://localhost:<PORT>); approversRequireWebauthn: approve and deny refuse a TOTP step-up.
   */
  webauthn: { rpId: string; origin: string; rpName: string; approversRequireWebauthn: boolean };
  /** Tests only: the vault kills itself (SIGKILL) when its work reaches this point (an old name is read as its new one). */
  crashPoint?: CrashPointName;
  logLevel: RawConfig['LOG_LEVEL'];
}

/** Secrets that may be given as `<NAME>_FILE` (a path) instead of in the environment (the master key has its own). */
export const FILE_SECRETS = ['DATABASE_URL', 'VAULT_BOOTSTRAP_ADMIN_PASSWORD', 'VAULT_SMTP_PASSWORD'] as const;

/** Names of variables whose values must never be echoed back. */
const SENSITIVE = new Set(['VAULT_MASTER_KEY', 'VAULT_BOOTSTRAP_ADMIN_PASSWORD', 'DATABASE_URL', 'VAULT_SMTP_PASSWORD']);

export class ConfigError extends Error {}

/** Parses the environment; throws ConfigError with one line naming the variable (never its value). */
export function loadConfig(env: NodeJS.ProcessEnv): AppConfig {
  const input: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(env)) {
    if (v !== undefined && v !== '') input[k] = v;
  }
  // secrets may come from files (Docker/Kubernetes secrets): a process's initial environment stays readable in
  // /proc/<pid>/environ for its whole life, whatever the process removes from it later
  for (const name of FILE_SECRETS) {
    const file = input[`${name}_FILE`];
    if (file === undefined) continue;
    if (input[name] !== undefined) throw new ConfigError(`invalid configuration: set only one of ${name} and ${name}_FILE`);
    try {
      input[name] = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch {
      throw new ConfigError(`invalid configuration: ${name}_FILE: cannot read ${file}`);
    }
    delete input[`${name}_FILE`];
  }
  const parsed = schema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const name = String(issue.path[0] ?? 'config');
    const hint = SENSITIVE.has(name) ? ' (value not shown)' : '';
    throw new ConfigError(`invalid configuration: ${name}: ${issue.message}${hint}`);
  }
  const c = parsed.data;
  return {
    databaseUrl: c.DATABASE_URL,
    dataDir: resolve(c.VAULT_DATA_DIR),
    masterKey: c.VAULT_MASTER_KEY,
    masterKeyFile: c.VAULT_MASTER_KEY_FILE,
    port: c.PORT,
    host: c.VAULT_HOST,
    bootstrapAdminPassword: c.VAULT_BOOTSTRAP_ADMIN_PASSWORD,
    tokenTtlSeconds: c.VAULT_TOKEN_TTL_SECONDS,
    trustProxy: c.VAULT_TRUST_PROXY === undefined ? undefined : /^\d+$/.test(c.VAULT_TRUST_PROXY) ? Number(c.VAULT_TRUST_PROXY) : c.VAULT_TRUST_PROXY,
    embeddedPgPort: c.VAULT_EMBEDDED_PG_PORT,
    maxBodyBytes: c.VAULT_MAX_BODY_BYTES,
    argon2: {
      memoryCost: c.VAULT_ARGON2_MEMORY_KIB,
      timeCost: c.VAULT_ARGON2_TIME_COST,
      parallelism: c.VAULT_ARGON2_PARALLELISM,
    },
    auditSealIntervalMs: c.VAULT_AUDIT_SEAL_INTERVAL_MS,
    auditVerifyLockWaitMs: c.VAULT_AUDIT_VERIFY_LOCK_WAIT_MS,
    targetPool: { size: c.VAULT_TARGET_POOL_SIZE, idleMs: c.VAULT_TARGET_POOL_IDLE_MS },
    rotation: {
      claimSeconds: c.VAULT_ROTATION_CLAIM_SECONDS,
      maxFailures: c.VAULT_ROTATION_MAX_FAILURES,
      sweepMs: c.VAULT_ROTATION_SWEEP_MS,
      concurrency: c.VAULT_ROTATION_CONCURRENCY,
      heartbeatSeconds: c.VAULT_HEARTBEAT_SECONDS,
    },
    checkout: {
      approvalTimeoutSeconds: c.VAULT_CHECKOUT_APPROVAL_TIMEOUT_SECONDS,
      sweepMs: c.VAULT_CHECKOUT_SWEEP_MS,
      cleanupMaxAttempts: c.VAULT_CHECKOUT_CLEANUP_MAX_ATTEMPTS,
    },
    ephemeral: {
      requestTimeoutSeconds: c.VAULT_EPHEMERAL_REQUEST_TIMEOUT_SECONDS,
      claimSeconds: c.VAULT_EPHEMERAL_CLAIM_SECONDS,
      maxAttempts: c.VAULT_EPHEMERAL_MAX_ATTEMPTS,
      sweepMs: c.VAULT_EPHEMERAL_SWEEP_MS,
    },
    notify: {
      publicUrl: c.VAULT_PUBLIC_URL,
      sweepMs: c.VAULT_NOTIFY_SWEEP_MS,
      maxAttempts: c.VAULT_NOTIFY_MAX_ATTEMPTS,
      timeoutMs: c.VAULT_NOTIFY_TIMEOUT_MS,
      expiryLeadSeconds: c.VAULT_NOTIFY_EXPIRY_LEAD_SECONDS,
      allowedHosts: parseAllowedHosts(c.VAULT_NOTIFY_ALLOWED_HOSTS) ?? { hosts: [], nets: [] },
      emailDomains: c.VAULT_NOTIFY_EMAIL_DOMAINS === undefined ? undefined : (parseEmailDomains(c.VAULT_NOTIFY_EMAIL_DOMAINS) ?? undefined),
    },
    smtp:
      c.VAULT_SMTP_HOST === undefined
        ? undefined
        : {
            host: c.VAULT_SMTP_HOST,
            port: c.VAULT_SMTP_PORT,
            tls: c.VAULT_SMTP_TLS,
            username: c.VAULT_SMTP_USERNAME,
            password: c.VAULT_SMTP_PASSWORD,
            from: c.VAULT_SMTP_FROM as string,
            caFile: c.VAULT_SMTP_CA_FILE,
          },
    portal: {
      idleSeconds: c.VAULT_PORTAL_IDLE_SECONDS,
      sessionSeconds: c.VAULT_PORTAL_SESSION_SECONDS,
      dir: resolve(c.VAULT_PORTAL_DIR ?? defaultPortalDir()),
    },
    sshGateway: c.VAULT_SSH_GATEWAY_PORT === undefined ? undefined : sshGatewayOf(c.VAULT_SSH_GATEWAY_PORT, c.VAULT_SSH_GATEWAY_BIND, c.VAULT_SSH_GATEWAY_HOST, c.VAULT_SSH_GATEWAY_PREAUTH_PER_ADDRESS),
    signIn: { passwordLogin: c.VAULT_PASSWORD_LOGIN === 'enabled', oidcLoginSeconds: c.VAULT_OIDC_LOGIN_SECONDS, oidcRecheckSeconds: c.VAULT_OIDC_RECHECK_SECONDS, oidcStartsPerMinute: c.VAULT_OIDC_STARTS_PER_MINUTE },
    webauthn: webauthnOf(c),
    crashPoint: c.VAULT_CRASH_POINT,
    logLevel: c.LOG_LEVEL,
  };
}

/** The SSH gateway's listener: the host clients are told defaults to the bind address (loopback for a wildcard bind). */
function sshGatewayOf(port: number, bind: string, host: string | undefined, preauthPerAddress: number): NonNullable<AppConfig['sshGateway']> {
  return { port, bind, host: host ?? (bind === '0.0.0.0' || bind === '::' ? '127.0.0.1' : bind), preauthPerAddress };
}

/** The WebAuthn relying party: as configured, else the public URL's host and origin, else localhost on the listen port. */
function webauthnOf(c: RawConfig): AppConfig['webauthn'] {
  const url = c.VAULT_WEBAUTHN_ORIGIN ?? c.VAULT_PUBLIC_URL;
  const parsed = url === undefined ? undefined : new URL(url);
  return {
    rpId: c.VAULT_WEBAUTHN_RP_ID ?? parsed?.hostname ?? 'localhost',
    origin: parsed?.origin ?? `http://localhost:${c.PORT}`,
    rpName: c.VAULT_WEBAUTHN_RP_NAME,
    approversRequireWebauthn: c.VAULT_APPROVERS_REQUIRE_WEBAUTHN === 'true',
  };
}

/** dist/portal (Vite's output) whether this runs compiled (dist/src/config → dist/portal) or from the sources (src/config). */
function defaultPortalDir(): string {
  const root = resolve(__dirname, '..', '..');
  return basename(root) === 'dist' ? join(root, 'portal') : join(root, 'dist', 'portal');
}

/** Injection token for the validated configuration. */
export const APP_CONFIG = Symbol('APP_CONFIG');

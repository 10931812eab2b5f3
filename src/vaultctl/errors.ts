/**
 * Exit codes and the one table that turns the vault's error codes into a human message and an exit code.
 * Scripts rely on the exit codes; the messages always name the vault's code and never contain a secret.
 */
export const EXIT = {
  OK: 0,
  UNEXPECTED: 1,
  USAGE: 2,
  UNAUTHENTICATED: 3,
  MFA: 4,
  FORBIDDEN: 5,
  NOT_FOUND: 6,
  CONFLICT: 7,
  GONE: 8,
  THROTTLED: 9,
  TARGET: 10,
  UNAVAILABLE: 11,
  ROTATION_FAILED: 12,
  AUDIT_INVALID: 13,
  PENDING_APPROVAL: 14,
  NOTIFICATION_FAILED: 15,
  COMMAND_NOT_FOUND: 127,
} as const;

/** For `vaultctl --help` and the README. */
export const EXIT_CODE_HELP = `Exit codes:
  0   ok
  1   unexpected error (vault INTERNAL, unreadable answer, bug)
  2   usage or bad input (VALIDATION_FAILED, TTL_EXCEEDS_POLICY, bad option)
  3   not authenticated: no token, token expired or revoked, unsafe token file (UNAUTHENTICATED)
  4   MFA problem (MFA_REQUIRED, MFA_INVALID, MFA_REPLAYED, MFA_ENROLLMENT_REQUIRED)
  5   forbidden (FORBIDDEN, SELF_APPROVAL, BREAK_GLASS_NOT_ALLOWED, ACCESS_NOT_ALLOWED, CSRF_FAILED)
  6   not found (NOT_FOUND)
  7   conflict (409: ACCOUNT_CHECKED_OUT, ACCOUNT_ROTATING, CHECKOUT_ENDED, ALREADY_DECIDED, ...)
  8   gone (410: ALREADY_CLAIMED, EXPIRED, REVOKED)
  9   throttled (THROTTLED; the message says when to retry)
  10  target error (502: TARGET_UNREACHABLE, TARGET_AUTH_FAILED, TARGET_TIMEOUT, TARGET_HOST_KEY_MISMATCH, TARGET_ERROR)
  11  vault unavailable (503 UNAVAILABLE) or unreachable (connection refused, DNS, timeout)
  12  rotate: at least one rotation failed
  13  audit verify: the audit chain is NOT intact; sessions verify: the recording does not match the audit chain
  14  checkout/reveal --exec: the checkout is pending approval, nothing was run
  15  notifications channels test --wait: the test message was not delivered (failed, or still pending)
  127 --exec: the command was not found (126: not executable)
  255 ssh: the connection through the gateway failed (ssh's own code)
  130 interrupted (Ctrl-C) at a prompt
With --exec, once the command has started vaultctl exits with the command's own exit status
(128+signal when it was killed), unless --checkin-after fails (then the check-in's code); \`vaultctl ssh\` with ssh's.`;

interface CodeInfo {
  exit: number;
  hint?: string;
}

const conflict = (hint?: string): CodeInfo => ({ exit: EXIT.CONFLICT, hint });
const gone = (hint?: string): CodeInfo => ({ exit: EXIT.GONE, hint });
const target = (hint: string): CodeInfo => ({ exit: EXIT.TARGET, hint });

/** Every code the vault answers with (see src/**: DomainException, Errors.*, ConnectorError, the exception filter). */
export const API_ERRORS: Record<string, CodeInfo> = {
  // 400
  VALIDATION_FAILED: { exit: EXIT.USAGE, hint: 'the vault refused the input; check the arguments (`vaultctl <command> --help`)' },
  SESSION_ID_INVALID: { exit: EXIT.USAGE, hint: 'a session id looks like ssh-<pid>-<16 hex>, pg-<pid>-<µs> or my-<id>: copy it from the listing' },
  TTL_EXCEEDS_POLICY: { exit: EXIT.USAGE, hint: "ask for a shorter --ttl; the account's or target's policy sets the maximum" },
  TARGET_INVALID_NAME: { exit: EXIT.USAGE, hint: 'a name or value is not allowed on this kind of target' },
  TARGET_UNSUPPORTED: { exit: EXIT.USAGE, hint: 'this kind of target does not support what was asked (for example an account expiry on MySQL/MariaDB)' },
  POLICY_NOT_ALLOWED: { exit: EXIT.USAGE, hint: 'the policy allows what no one-time account may have on this target; see the refused list' },
  ADMIN_CREDENTIAL_REQUIRED: { exit: EXIT.USAGE, hint: "moving a target (or changing how its identity is checked) needs its admin credential again: send `admin` with the change" },
  PAYLOAD_TOO_LARGE: { exit: EXIT.USAGE, hint: 'the request is too large' },
  UNSUPPORTED_MEDIA_TYPE: { exit: EXIT.USAGE },
  METHOD_NOT_ALLOWED: { exit: EXIT.USAGE, hint: 'this vault does not support the call; is vaultctl newer than the vault?' },
  CHANNEL_CONFIG_INVALID: { exit: EXIT.USAGE, hint: "e-mail channels take --to addresses; webhooks --url and a signing secret; slack and teams their incoming-webhook URL as the secret" },
  EMAIL_DOMAIN_NOT_ALLOWED: { exit: EXIT.USAGE, hint: "use an address in one of the organisation's domains (VAULT_NOTIFY_EMAIL_DOMAINS)" },
  NOTIFICATION_REQUIRED: { exit: EXIT.USAGE, hint: 'only optional kinds can be muted (`vaultctl me show` lists yours); approval requests, one-time accounts ready to claim and alerts cannot' },
  // 401 / 403 identity
  UNAUTHENTICATED: { exit: EXIT.UNAUTHENTICATED, hint: 'log in again with `vaultctl login` (or set VAULT_TOKEN to a valid service token)' },
  MFA_REQUIRED: { exit: EXIT.MFA, hint: 'pass the current 6-digit code from your authenticator with --code (or VAULT_MFA_CODE), or run on a terminal to be asked' },
  MFA_INVALID: { exit: EXIT.MFA, hint: "check the code and your authenticator's clock; repeated failures are throttled" },
  MFA_REPLAYED: { exit: EXIT.MFA, hint: 'each code is accepted once: wait for the next code' },
  MFA_ENROLLMENT_REQUIRED: { exit: EXIT.MFA, hint: 'enroll an authenticator first: `vaultctl mfa enroll`' },
  MFA_ALREADY_ENROLLED: conflict('MFA is already enrolled; an admin can reset it (`vaultctl users reset-mfa`)'),
  MFA_ENROLLMENT_NOT_STARTED: conflict('start with `vaultctl mfa enroll`'),
  WEBAUTHN_REQUIRED: { exit: EXIT.FORBIDDEN, hint: 'this action needs a security key step-up (the account policy or the approvers configuration refuses TOTP): use the web portal' },
  WEBAUTHN_NOT_ENROLLED: conflict('you have no usable security key: use your TOTP code, or register a key in the web portal'),
  WEBAUTHN_REGISTRATION_FAILED: { exit: EXIT.USAGE, hint: 'the security key answer did not verify; start the registration again in the web portal' },
  WEBAUTHN_NAME_TAKEN: conflict('pick another name for the key'),
  WEBAUTHN_CREDENTIAL_EXISTS: conflict('this security key is already registered'),
  WEBAUTHN_TOO_MANY_KEYS: conflict('remove a security key you no longer use first'),
  LAST_FACTOR: conflict('register another key or enrol TOTP before removing your only second factor; an admin can reset MFA'),
  FORBIDDEN: { exit: EXIT.FORBIDDEN, hint: '`vaultctl whoami` shows the roles of your token' },
  SELF_APPROVAL: { exit: EXIT.FORBIDDEN, hint: 'another approver must decide' },
  BREAK_GLASS_NOT_ALLOWED: { exit: EXIT.FORBIDDEN, hint: "the account's policy does not allow break-glass; ask for an approval instead" },
  ACCESS_NOT_ALLOWED: { exit: EXIT.FORBIDDEN, hint: "ask only for what the target's ephemeral policy allows (`vaultctl policy get <targetId>`)" },
  CSRF_FAILED: { exit: EXIT.FORBIDDEN, hint: 'a browser-session request without its X-CSRF-Token; vaultctl sends a bearer token and never meets this' },
  // single sign-on (vaultctl login --oidc)
  OIDC_TOKEN_INVALID: { exit: EXIT.UNAUTHENTICATED, hint: "the identity provider's answer did not verify; try again, and tell an admin if it persists" },
  OIDC_NO_ROLES: { exit: EXIT.FORBIDDEN, hint: 'none of your groups at the identity provider gives access to the vault: ask for one that does' },
  OIDC_USERNAME_INVALID: { exit: EXIT.FORBIDDEN, hint: 'the identity provider sent no usable username (preferred_username): ask an admin' },
  OIDC_ACCOUNT_DISABLED: { exit: EXIT.FORBIDDEN, hint: 'your vault user is disabled' },
  OIDC_STATE_INVALID: { exit: EXIT.USAGE, hint: 'start the sign-in again from the same browser' },
  AUTHORIZATION_PENDING: { exit: EXIT.USAGE, hint: 'finish the sign-in at the identity provider' },
  SLOW_DOWN: { exit: EXIT.USAGE, hint: 'poll less often' },
  EXPIRED_TOKEN: { exit: EXIT.USAGE, hint: 'the sign-in lapsed or was used: run `vaultctl login --oidc` again' },
  ACCESS_DENIED: { exit: EXIT.USAGE, hint: 'the sign-in was refused at the identity provider' },
  OIDC_USERNAME_TAKEN: conflict("the identity provider's username belongs to another vault user: ask an admin"),
  OIDC_PROVIDER_IN_USE: conflict('users are bound to this provider: disable it (enabled: false) instead'),
  OIDC_PROVIDER_UNAVAILABLE: target('the identity provider is unknown, disabled or not answering; check the name (the portal sign-in page lists them) or ask an admin'),
  // 404
  NOT_FOUND: { exit: EXIT.NOT_FOUND, hint: 'check the id (list commands show them)' },
  SESSION_NOT_FOUND: { exit: EXIT.NOT_FOUND, hint: 'no live session with that id belongs to an account the vault manages there; list them again (it may have ended)' },
  // 409
  ACCOUNT_CHECKED_OUT: conflict('someone holds it (or waits for approval); try again after their check-in (`vaultctl checkouts --status active`)'),
  ACCOUNT_ROTATING: conflict('the password is being changed; try again in a moment'),
  ACCOUNT_NEEDS_ATTENTION: conflict('rotation kept failing; an admin must fix the target and rotate it (`vaultctl rotate <accountId> --wait`)'),
  ACCOUNT_NO_PASSWORD: conflict('the vault holds no password for it yet; an admin can rotate it to set one'),
  ACCOUNT_ROTATION_PENDING: conflict('it must be rotated after its last checkout first; try again shortly'),
  ACCOUNT_CLEANUP_PENDING: conflict("the previous checkout's sessions are still being ended; try again shortly"),
  ACCOUNT_BUSY: conflict('the account is changing state; try again'),
  ACCOUNT_EXISTS: conflict('the target already has an account with this username'),
  USERNAME_TAKEN: conflict('choose another username'),
  LAST_ADMIN: conflict('keep at least one enabled admin'),
  BREAK_GLASS_USER: conflict('the bootstrap admin is the break-glass account: it stays enabled, admin, and able to sign in with its password'),
  ROLES_FROM_IDP: conflict("the identity provider decides this user's roles: change their groups there, or disable the user"),
  TARGET_IN_USE: conflict('end or delete what still uses the target first'),
  TARGET_NAME_TAKEN: conflict('choose another target name'),
  CHECKOUT_ENDED: conflict('the checkout is over'),
  CHECKOUT_NOT_ACTIVE: conflict('only an active checkout can do this'),
  CHECKOUT_NOT_PENDING: conflict('the checkout is not waiting for approval any more'),
  REQUEST_NOT_PENDING: conflict('the request is not waiting for approval any more'),
  REQUEST_CHANGED: conflict('the request changed since it was read; look at it again'),
  REQUEST_ENDED: conflict('the request is over'),
  NOT_APPROVED: conflict('the request is still waiting for approval'),
  ALREADY_DECIDED: conflict('you already approved or denied it'),
  ACCOUNT_IS_TARGET_ADMIN: conflict("the target's own administrator is never a vaulted account"),
  TARGET_CREDENTIAL_UNREADABLE: conflict("enter the target's admin credential again (the stored one does not decrypt for the target as it is now)"),
  TARGET_HOST_KEY_UNPINNED: conflict('compare the presented host key with the server (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then: vaultctl targets verify <id> --host-key SHA256:…'),
  CHECKOUT_NOT_ENDED: conflict('a break-glass checkout is reviewed once it has ended; ask its holder to check in, or wait for it to expire'),
  ALREADY_REVIEWED: conflict(),
  NOT_BREAK_GLASS: conflict(),
  CHANNEL_NAME_TAKEN: conflict('choose another channel name'),
  CHANNEL_DISABLED: conflict('enable the channel first: `vaultctl notifications channels update <id> --enable`'),
  GATEWAY_DISABLED: conflict('this vault runs no SSH gateway (VAULT_SSH_GATEWAY_PORT); use `vaultctl reveal <checkoutId> --exec -- ssh …` where the policy allows it'),
  EPHEMERAL_NOT_ACTIVE: conflict('the one-time account is not active: claim it first (`vaultctl ephemeral claim <id>`), or it has ended'),
  BROKERED_ONLY: conflict("the account's policy keeps its password in the vault: connect through the gateway with `vaultctl ssh <account>`"),
  SESSION_ENDED: conflict('the session is over'),
  // 410
  ALREADY_CLAIMED: gone('a one-time account is handed out once; ask for a new one'),
  EXPIRED: gone('ask again'),
  REVOKED: gone('the one-time account was revoked'),
  // 429
  THROTTLED: { exit: EXIT.THROTTLED, hint: 'too many failed attempts' },
  // 502
  TARGET_UNREACHABLE: target('the vault cannot reach the target system; check host, port and firewalls'),
  TARGET_AUTH_FAILED: target("the target refused the vault's administrator login; fix the target's admin credential"),
  TARGET_TIMEOUT: target('the target did not answer in time'),
  TARGET_HOST_KEY_MISMATCH: target("the target's SSH host key changed; if that is expected, update options.hostKeySha256"),
  TARGET_IDENTITY_UNVERIFIED: target('the server at that address did not prove it is the target (cleartext/MD5 password asked, no TLS, or a certificate that fails verification); nothing was sent'),
  TARGET_ERROR: target('the target failed the operation'),
  // 5xx
  UNAVAILABLE: { exit: EXIT.UNAVAILABLE, hint: 'the vault is not ready (database unreachable?); try again later' },
  INTERNAL: { exit: EXIT.UNEXPECTED, hint: "the vault failed; its log has the details (look for this request's time)" },
};

/** For codes not in the table (a newer vault): by HTTP status. */
export function exitForStatus(status: number): number {
  if (status === 400 || status === 405 || status === 413 || status === 415) return EXIT.USAGE;
  if (status === 401) return EXIT.UNAUTHENTICATED;
  if (status === 403) return EXIT.FORBIDDEN;
  if (status === 404) return EXIT.NOT_FOUND;
  if (status === 409) return EXIT.CONFLICT;
  if (status === 410) return EXIT.GONE;
  if (status === 429) return EXIT.THROTTLED;
  if (status === 502 || status === 504) return EXIT.TARGET;
  if (status === 503) return EXIT.UNAVAILABLE;
  return EXIT.UNEXPECTED;
}

/** An error that ends the command with a message (on stderr) and an exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    /** The vault's code, or a local one (NO_TOKEN, UNREACHABLE, ...), for --json. */
    readonly code?: string,
  ) {
    super(message);
  }
}

/** An error answer of the vault: `{statusCode, code, message, ...extra}`. */
export class ApiError extends CliError {
  declare readonly code: string;

  constructor(
    readonly status: number,
    code: string,
    readonly body: Record<string, unknown>,
  ) {
    super(describeApiError(status, code, body), exitForCode(status, code), code);
  }
}

export function exitForCode(status: number, code: string): number {
  return API_ERRORS[code]?.exit ?? exitForStatus(status);
}

/** Control characters out (terminal escapes in text that came from the network), newlines to spaces. */
export function clean(text: unknown): string {
  return String(text ?? '')
    .replace(/[\r\n\t]+/g, ' ')
    .replace(/[\u0000-\u001f\u007f-\u009f]/g, '');
}

function when(iso: unknown): string | undefined {
  if (typeof iso !== 'string') return undefined;
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return undefined;
  const secs = Math.ceil((t - Date.now()) / 1000);
  return secs > 0 ? `${clean(iso)} (in about ${secs} s)` : clean(iso);
}

/** `CODE (status): the vault's message. hint` — the vault's messages never hold a secret, and neither do the hints. */
export function describeApiError(status: number, code: string, body: Record<string, unknown>): string {
  const parts = [`${clean(code)} (${status}): ${clean(body.message ?? 'no message')}`];
  let hint = API_ERRORS[code]?.hint;
  if (code === 'MFA_REPLAYED') {
    const next = when(body.nextCodeAt);
    hint = next ? `each code is accepted once: the next code is accepted from ${next}` : hint;
  }
  if (code === 'THROTTLED' && typeof body.retryAfterSeconds === 'number') hint = `too many failed attempts: try again in ${body.retryAfterSeconds} s`;
  if (code === 'TTL_EXCEEDS_POLICY' && typeof body.maxTtlSeconds === 'number') hint = `ask for --ttl ${body.maxTtlSeconds} or less`;
  return hint ? `${parts[0]}\n  ${hint}` : parts[0];
}

export const usage = (message: string) => new CliError(message, EXIT.USAGE, 'USAGE');

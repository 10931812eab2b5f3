// The error-code table: kept low (src/common), so services, connectors and the OpenAPI document share it.

/**
 * Every stable error `code` the vault answers with, its HTTP status and what it means: the one table both the
 * exceptions (`new DomainException(code, message)` takes its status from here, so the compiler refuses a code that is
 * not in it) and the OpenAPI document (`/docs`) are built from.
 */
export const ERROR_CODES = {
  // the exception filter and the guards: any route
  VALIDATION_FAILED: { status: 400, description: 'The request is malformed: unknown or invalid fields, query parameters or ids, or JSON that does not parse.' },
  UNAUTHENTICATED: { status: 401, description: 'No valid bearer token (absent, unknown, expired, revoked, or its user is disabled); at login: wrong username or password.' },
  FORBIDDEN: { status: 403, description: "The caller's roles do not allow this action (or it needs a person and the caller is a service token)." },
  NOT_FOUND: { status: 404, description: 'No such resource (or the caller may not see it), or no such route.' },
  METHOD_NOT_ALLOWED: { status: 405, description: 'The route does not take this method.' },
  PAYLOAD_TOO_LARGE: { status: 413, description: 'The request body is larger than the configured limit.' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, description: 'The request body has a content type, charset or encoding the vault does not read (send JSON).' },
  THROTTLED: { status: 429, description: 'Too many failed password or MFA attempts for this user or address; `retryAfterSeconds` says how long to wait.' },
  CSRF_FAILED: { status: 403, description: "A request authenticated by the browser session cookie that changes something (not GET, HEAD or OPTIONS) must carry the session's token in `X-CSRF-Token` (GET /v1/auth/session answers it); it was missing or wrong. Nothing was changed." },
  INTERNAL: { status: 500, description: 'Unexpected failure; nothing about it is disclosed.' },
  UNAVAILABLE: { status: 503, description: 'A dependency is not available right now (the database, or a lock held by another session); try again later.' },

  // MFA (guards and the MFA service)
  MFA_REQUIRED: { status: 401, description: 'This action needs a fresh second factor: a TOTP code (`X-MFA-Code` header for a step-up, `code` at login) or a security key assertion (`X-MFA-Assertion`, `assertion` at login). At login, `methods` lists what the user has and `webauthn` carries a challenge for a key.' },
  MFA_INVALID: { status: 401, description: 'The TOTP code or security key assertion is malformed or not valid now (wrong signature, another challenge or action, expired, unknown or flagged key); both headers at once are refused.' },
  MFA_REPLAYED: { status: 401, description: 'This code (or a newer one) was already used by this user (`nextCodeAt` says when the next one is accepted), or this assertion\'s challenge was already used.' },
  MFA_ENROLLMENT_REQUIRED: { status: 403, description: 'The user has not enrolled TOTP yet: only /v1/me and the enrollment calls are allowed until then.' },
  MFA_ALREADY_ENROLLED: { status: 409, description: 'TOTP is already enrolled for this user; an admin can reset it.' },
  MFA_ENROLLMENT_NOT_STARTED: { status: 409, description: 'Nothing to confirm: start with POST /v1/me/mfa/totp.' },
  // WebAuthn (security keys and passkeys)
  WEBAUTHN_REQUIRED: { status: 403, description: "This action needs a security key (WebAuthn) step-up: the account's policy (`requireWebauthn`) or VAULT_APPROVERS_REQUIRE_WEBAUTHN refuses a TOTP code. The code sent was used up all the same." },
  WEBAUTHN_NOT_ENROLLED: { status: 409, description: 'The user has no usable security key (none registered, or every one is flagged as cloned): use the TOTP code, or register a key.' },
  WEBAUTHN_REGISTRATION_FAILED: { status: 400, description: "The authenticator's registration answer does not verify (wrong or expired challenge, origin or relying party, no user verification, or malformed); nothing was stored." },
  WEBAUTHN_NAME_TAKEN: { status: 409, description: 'You already have a security key with this name.' },
  WEBAUTHN_CREDENTIAL_EXISTS: { status: 409, description: 'This authenticator is already registered.' },
  WEBAUTHN_TOO_MANY_KEYS: { status: 409, description: 'You have the most security keys a user may have (20): remove one first.' },
  LAST_FACTOR: { status: 409, description: 'This is your only second factor: register another (or enrol TOTP) before removing it; an admin can reset MFA.' },

  // users
  USERNAME_TAKEN: { status: 409, description: 'A user with this username already exists.' },
  LAST_ADMIN: { status: 409, description: 'The change would leave the vault without an enabled admin.' },
  BREAK_GLASS_USER: { status: 409, description: 'The break-glass user (the bootstrap admin) is the way back in when single sign-on fails: it cannot be disabled, lose the admin role, or have its password sign-in turned off.' },
  ROLES_FROM_IDP: { status: 409, description: "This user signs in with an identity provider, which decides their roles (its groups, at every sign-in and re-check): change their groups there, or disable the user here." },

  // single sign-on (OpenID Connect); the browser sign-in redirects to /portal/sign-in?error=<code> with the same codes
  OIDC_PROVIDER_UNAVAILABLE: { status: 502, description: 'The identity provider did not answer, or answered what the vault refuses (a discovery document naming another issuer or a non-https endpoint, a refused token or device request); nothing was signed in.' },
  OIDC_PROVIDER_IN_USE: { status: 409, description: 'Users are bound to this provider (by their subject at its issuer): it cannot be deleted nor moved to another issuer. Disable it (`enabled: false`) instead.' },
  OIDC_STATE_INVALID: { status: 400, description: 'The sign-in answer does not belong to a sign-in this browser started (unknown, used or expired state, or the binding cookie is missing or another browser\'s).' },
  OIDC_TOKEN_INVALID: { status: 401, description: "The identity provider's answer did not verify (ID token signature, issuer, audience, expiry or nonce, or the code exchange failed); nothing was created." },
  OIDC_NO_ROLES: { status: 403, description: "None of the user's groups at the identity provider maps to a vault role: the user's roles are removed, their sessions end and the sign-in is refused." },
  OIDC_USERNAME_TAKEN: { status: 409, description: "The provider's `preferred_username` is held by a local user or another provider's user: accounts are never linked by name or e-mail." },
  OIDC_USERNAME_INVALID: { status: 403, description: "The provider sent no `preferred_username`, or one that is not a vault username (2-64 of a-z 0-9 . _ @ -)." },
  OIDC_ACCOUNT_DISABLED: { status: 403, description: 'The vault user bound to this provider account is disabled.' },
  AUTHORIZATION_PENDING: { status: 400, description: 'Device sign-in: the user has not finished at the identity provider yet; poll again after `interval` seconds.' },
  SLOW_DOWN: { status: 400, description: 'Device sign-in: polled too often; wait `interval` seconds (it grew) before the next poll.' },
  EXPIRED_TOKEN: { status: 400, description: 'Device sign-in: the device code is unknown, expired or already used; start again.' },
  ACCESS_DENIED: { status: 400, description: 'Device sign-in: the user (or the identity provider) refused the authorization.' },

  // targets and what the connectors answer
  TARGET_NAME_TAKEN: { status: 409, description: 'A target with this name already exists.' },
  ADMIN_CREDENTIAL_REQUIRED: { status: 400, description: "Moving a target (host, port, admin username, MySQL accountHost) or changing how its identity is checked (host key pin, TLS, CA, certificate pin) needs its admin credential again in `admin`: the stored one never follows the target to a new place. Nothing was changed." },
  TARGET_CREDENTIAL_UNREADABLE: { status: 409, description: "The target's stored admin credential does not decrypt for the target as it is now (its row was changed outside the API): enter it again with PATCH /v1/targets/:id and admin." },
  TARGET_IN_USE: { status: 409, description: 'The target still has accounts or open one-time accounts (delete or revoke them first; a target with open one-time accounts cannot be moved).' },
  TARGET_UNREACHABLE: { status: 502, description: 'Nothing answered at the target address.' },
  TARGET_AUTH_FAILED: { status: 502, description: "The target refused the vault's administrator credential." },
  TARGET_HOST_KEY_MISMATCH: { status: 502, description: 'The SSH host key differs from the pinned one; the vault refuses to talk to the host.' },
  TARGET_HOST_KEY_UNPINNED: { status: 409, description: 'The SSH target has no pinned host key: nothing is sent to it until an admin pins one (POST /v1/targets/:id/verify with `hostKeySha256`, or options.hostKeySha256). `presentedHostKeySha256` says what the server presents now.' },
  TARGET_IDENTITY_UNVERIFIED: { status: 502, description: "The server at the target's address did not prove it is the target (asked for a cleartext or MD5 password, no TLS where required, or a certificate that fails verification or its pin); no password was sent." },
  TARGET_TIMEOUT: { status: 502, description: 'The target did not answer in time.' },
  TARGET_INVALID_NAME: { status: 400, description: 'A name, grant or value cannot be used on this target type.' },
  TARGET_UNSUPPORTED: { status: 400, description: 'The request asks the target for something its type does not support (for example an account expiry on MySQL/MariaDB); refused before anything reaches the target, never silently ignored.' },
  TARGET_ERROR: { status: 502, description: 'The target failed the operation (message redacted of secrets).' },

  // accounts
  ACCOUNT_IS_TARGET_ADMIN: { status: 409, description: "The account is the target's own administrator (by name, or SSH: the same uid); the vault never vaults it, nor makes a vaulted account the admin." },
  ACCOUNT_EXISTS: { status: 409, description: 'The target already has an account with this username in the vault.' },
  ACCOUNT_BUSY: { status: 409, description: 'The account is not in a state that allows this now (checked out, rotating, or owes a cleanup or a review); try again later.' },
  ACCOUNT_CHECKED_OUT: { status: 409, description: 'Another checkout holds (or awaits approval for) the account.' },
  ACCOUNT_ROTATING: { status: 409, description: 'The account is being rotated; try again in a moment.' },
  ACCOUNT_NEEDS_ATTENTION: { status: 409, description: 'Rotation of the account kept failing; an administrator must look at it.' },
  ACCOUNT_NO_PASSWORD: { status: 409, description: 'The vault holds no password for this account yet.' },
  ACCOUNT_ROTATION_PENDING: { status: 409, description: 'The account must be rotated after its last checkout before it is handed out again.' },
  ACCOUNT_CLEANUP_PENDING: { status: 409, description: "The previous checkout's sessions on the target are still being ended; try again shortly." },

  // approvals (checkouts and one-time accounts)
  SELF_APPROVAL: { status: 403, description: 'A requester (or the vendor it is for) never approves, denies or reviews their own request, nor asks a one-time account for themselves.' },
  CHECKOUT_NOT_PENDING: { status: 409, description: 'The checkout is not waiting for approval any more.' },
  REQUEST_NOT_PENDING: { status: 409, description: 'The one-time account request is not waiting for approval any more.' },
  REQUEST_CHANGED: { status: 409, description: 'The request no longer matches the `requestDigest` the approver reviewed; read it again.' },
  ALREADY_DECIDED: { status: 409, description: 'This approver already decided on this request.' },
  EXPIRED: { status: 410, description: 'The request or lease has expired.' },

  // checkouts
  TTL_EXCEEDS_POLICY: { status: 400, description: "The requested lease or lifetime is longer than the policy allows (`maxTtlSeconds` / `maxExpiresAt` say how long)." },
  BREAK_GLASS_NOT_ALLOWED: { status: 403, description: "The account's policy does not allow break-glass checkouts." },
  CHECKOUT_NOT_ACTIVE: { status: 409, description: 'The checkout is not active.' },
  CHECKOUT_ENDED: { status: 409, description: 'The checkout has already ended.' },
  CHECKOUT_NOT_ENDED: { status: 409, description: 'A break-glass checkout is reviewed once it has ended (checked in, expired or revoked), not while it is pending or active.' },
  NOT_BREAK_GLASS: { status: 409, description: 'Only break-glass checkouts are reviewed.' },
  ALREADY_REVIEWED: { status: 409, description: 'The break-glass checkout was already reviewed.' },

  // one-time (ephemeral) accounts
  POLICY_NOT_ALLOWED: { status: 400, description: "An ephemeral policy allows what no one-time account may have (global or system-schema grants, privileged or missing roles, system groups…), checked against the target's own catalog; `refused` lists each problem." },
  ACCESS_NOT_ALLOWED: { status: 403, description: "The target's ephemeral policy does not allow the access asked for." },
  ALREADY_CLAIMED: { status: 410, description: 'The one-time account was already claimed; its credential is answered only once.' },
  NOT_APPROVED: { status: 409, description: 'The request is still waiting for approval.' },
  REQUEST_ENDED: { status: 409, description: 'The request has ended (denied, revoked, expired).' },
  REVOKED: { status: 410, description: 'The one-time account was revoked while it was being created.' },

  // notifications
  CHANNEL_NAME_TAKEN: { status: 409, description: 'A notification channel with this name already exists.' },
  CHANNEL_CONFIG_INVALID: { status: 400, description: "The change does not fit the channel's kind (email: `config.to` addresses and no secret; webhook: `config.url` and a signing secret; slack/teams: the incoming-webhook URL as `secret`, https or http to a loopback host), or a URL whose host is an internal address (loopback, private, link-local …) that VAULT_NOTIFY_ALLOWED_HOSTS does not list. Nothing was changed." },
  CHANNEL_DISABLED: { status: 409, description: 'The notification channel is disabled: enable it before sending it a test.' },
  EMAIL_DOMAIN_NOT_ALLOWED: { status: 400, description: 'The e-mail address is not in one of the domains VAULT_NOTIFY_EMAIL_DOMAINS allows (addresses are not verified: the vault mails only inside the organisation). Nothing was changed.' },
  NOTIFICATION_REQUIRED: { status: 400, description: 'This kind of notification cannot be muted: it is what your role requires (approval requests, one-time accounts ready to claim, alerts). Only the optional kinds can be muted.' },

  // the SSH gateway
  GATEWAY_DISABLED: { status: 409, description: 'The vault runs no SSH gateway (VAULT_SSH_GATEWAY_PORT is not set): no connection ticket is issued.' },
  EPHEMERAL_NOT_ACTIVE: { status: 409, description: 'The one-time account is not active (not claimed yet, ended, or claimed before the vault kept its credential for the gateway).' },
  BROKERED_ONLY: { status: 409, description: "The account's policy is brokered only: its password never leaves the vault; connect through the SSH gateway (POST …/connect)." },
  SESSION_ENDED: { status: 409, description: 'The gateway session has already ended.' },

  // live sessions on targets
  SESSION_NOT_FOUND: { status: 404, description: 'No live session with this id belongs to an account the vault manages on the target (it ended, or it is another user\'s): nothing was ended.' },
  SESSION_ID_INVALID: { status: 400, description: 'The session id is not of the form the target type uses (`ssh-<pid>-<16 hex>`, `pg-<pid>-<µs>`, `my-<id>`). Nothing was ended.' },
} as const satisfies Record<string, { status: number; description: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** The codes whose status is `S` (e.g. the 409s for Errors.conflict): a code answered with another status does not compile. */
export type CodeWithStatus<S extends number> = { [K in ErrorCode]: (typeof ERROR_CODES)[K]['status'] extends S ? K : never }[ErrorCode];

import { ConnectorError, isUnreachable } from './connector.errors';
import {
  AccessInspection, CallOptions, Connector, ConnectorTarget, DeleteUserRequest, EndSessionRequest, ListSessionsRequest, LoginRequest, NewUserRequest, NewUserResponse,
  SESSION_ID_PATTERNS, TargetSession, TerminateSessionsRequest, UpdatePasswordRequest, VerifyResult,
} from './connector.interface';
import { ACCOUNT_NAME_PATTERNS, GROUP_OR_ROLE_PATTERN } from './names';

const DEFAULT_TIMEOUT_MS = 15_000;
const MAX_MESSAGE = 300;

/** Replaces every secret of the call found in a text (and bounds its length). */
export function redact(text: string, secrets: Array<string | undefined>): string {
  let out = text;
  for (const s of secrets) {
    if (!s) continue;
    out = out.split(s).join('[REDACTED]');
    // private keys may be quoted line by line
    if (s.includes('\n')) for (const line of s.split('\n')) if (line.trim().length >= 8) out = out.split(line).join('[REDACTED]');
  }
  return out.length > MAX_MESSAGE ? `${out.slice(0, MAX_MESSAGE)}…` : out;
}

/** A real Date from 1970-01-01 to the end of 9999 (what every target's expiry syntax can hold). */
function isValidUntil(d: unknown): d is Date {
  if (!(d instanceof Date)) return false;
  const t = d.getTime();
  return Number.isFinite(t) && t >= 0 && t < Date.UTC(10000, 0, 1);
}

const unsupported = (what: string) => new ConnectorError('TARGET_UNSUPPORTED', what);

function checkGroupNames(names: string[]): void {
  for (const name of names) {
    if (!GROUP_OR_ROLE_PATTERN.test(name)) throw new ConnectorError('TARGET_INVALID_NAME', 'a group, role or database name has characters that are not allowed');
  }
}

/**
 * Wraps a connector so that every call (a) refuses, before anything runs (as a rejected promise, like every other
 * failure), names that fail the type's strict pattern and what the connector does not support (TARGET_UNSUPPORTED, never
 * silently ignored), (b) has a deadline and honours the caller's abort signal, and (c) throws only ConnectorError, with
 * every secret of the call stripped from its message — driver errors included.
 */
export class SafeConnector implements Connector {
  constructor(private readonly inner: Connector) {}

  get type() {
    return this.inner.type;
  }

  get supports() {
    return this.inner.supports;
  }

  async verify(target: ConnectorTarget, opts?: CallOptions): Promise<VerifyResult> {
    return this.run(target, [], opts, (o) => this.inner.verify(target, o));
  }

  async hostKey(target: ConnectorTarget, opts?: CallOptions): Promise<string> {
    const inner = this.inner.hostKey?.bind(this.inner);
    if (!inner || !this.supports.hostKey) throw unsupported(`${target.type} targets have no host key`);
    return this.run(target, [], opts, (o) => inner(target, o));
  }

  async inspectAccess(target: ConnectorTarget, access: AccessInspection, opts?: CallOptions): Promise<string[]> {
    checkGroupNames([...(access.groups ?? []), ...(access.roles ?? []), ...(access.databases ?? [])]);
    return this.run(target, [], opts, (o) => this.inner.inspectAccess(target, access, o));
  }

  async isAdmin(target: ConnectorTarget, username: string, opts?: CallOptions): Promise<boolean> {
    this.checkName(target, username);
    if (username === target.adminUsername) return true;
    return this.run(target, [], opts, (o) => this.inner.isAdmin(target, username, o));
  }

  async updatePassword(target: ConnectorTarget, req: UpdatePasswordRequest, opts?: CallOptions): Promise<void> {
    this.checkAccount(target, req);
    return this.run(target, [req.password], opts, (o) => this.inner.updatePassword(target, { username: req.username, password: req.password }, o));
  }

  async login(target: ConnectorTarget, req: LoginRequest, opts?: CallOptions): Promise<void> {
    this.checkAccount(target, req);
    return this.run(target, [req.password], opts, (o) => this.inner.login(target, { username: req.username, password: req.password }, o));
  }

  /** A request for an account expiry the target type cannot set is refused (TARGET_UNSUPPORTED), never ignored. */
  async newUser(target: ConnectorTarget, req: NewUserRequest, opts?: CallOptions): Promise<NewUserResponse> {
    this.checkAccount(target, req);
    const access = req.access ?? {};
    checkGroupNames([...(access.groups ?? []), ...(access.grantRoles ?? []), ...(access.database ? [access.database] : [])]);
    if (req.validUntil !== undefined) {
      if (!isValidUntil(req.validUntil)) throw new ConnectorError('TARGET_INVALID_NAME', 'validUntil is not a date between 1970 and 9999');
      if (this.supports.accountExpiry === 'none') throw unsupported(`${target.type} targets have no account expiry: a new user cannot be given validUntil`);
    }
    const request: NewUserRequest = { username: req.username, password: req.password, access, ...(req.validUntil !== undefined ? { validUntil: req.validUntil } : {}) };
    return this.run(target, [req.password], opts, (o) => this.inner.newUser(target, request, o));
  }

  async deleteUser(target: ConnectorTarget, { username }: DeleteUserRequest, opts?: CallOptions): Promise<void> {
    this.checkName(target, username);
    // deleting expires/locks the account and kills all its processes: never the connector's own admin (or root)
    if (username === target.adminUsername || (target.type === 'ssh' && username === 'root')) {
      throw new ConnectorError('TARGET_INVALID_NAME', 'the target\'s administrator cannot be revoked as a one-time account');
    }
    return this.run(target, [], opts, (o) => this.inner.deleteUser(target, { username }, o));
  }

  async terminateSessions(target: ConnectorTarget, { username }: TerminateSessionsRequest, opts?: CallOptions): Promise<void> {
    this.checkName(target, username);
    // the vault's own sessions (and every other instance's) run as the admin: never end them
    if (username === target.adminUsername) {
      throw new ConnectorError('TARGET_INVALID_NAME', 'the sessions of the target\'s administrator are never ended by the vault');
    }
    return this.run(target, [], opts, (o) => this.inner.terminateSessions(target, { username }, o));
  }

  /** The admin's own sessions (the vault's, every instance's) are never listed: asking for them is refused. */
  async listSessions(target: ConnectorTarget, { username }: ListSessionsRequest, opts?: CallOptions): Promise<TargetSession[]> {
    this.checkNotAdmin(target, username);
    return this.run(target, [], opts, (o) => this.inner.listSessions(target, { username }, o));
  }

  /** A session id that is not of the target type's form is refused (TARGET_INVALID_NAME) before anything runs. */
  async endSession(target: ConnectorTarget, { username, sessionId }: EndSessionRequest, opts?: CallOptions): Promise<boolean> {
    this.checkNotAdmin(target, username);
    if (typeof sessionId !== 'string' || !SESSION_ID_PATTERNS[target.type].test(sessionId)) {
      throw new ConnectorError('TARGET_INVALID_NAME', `the session id is not a ${target.type} session id`);
    }
    return this.run(target, [], opts, (o) => this.inner.endSession(target, { username, sessionId }, o));
  }

  private checkNotAdmin(target: ConnectorTarget, username: string): void {
    this.checkName(target, username);
    if (username === target.adminUsername || (target.type === 'ssh' && username === 'root')) {
      throw new ConnectorError('TARGET_INVALID_NAME', 'the sessions of the target\'s administrator are never listed nor ended by the vault');
    }
  }

  private checkName(target: ConnectorTarget, username: string): void {
    if (typeof username !== 'string' || !ACCOUNT_NAME_PATTERNS[target.type].test(username)) {
      throw new ConnectorError('TARGET_INVALID_NAME', `the account name is not a valid ${target.type} name`);
    }
  }

  private checkAccount(target: ConnectorTarget, account: { username: string; password: string }): void {
    this.checkName(target, account.username);
    // passwords travel on stdin lines (chpasswd) and in SQL literals: no control characters
    if (typeof account.password !== 'string' || account.password.length === 0 || /[\u0000-\u001f\u007f]/.test(account.password)) {
      throw new ConnectorError('TARGET_INVALID_NAME', 'the password has characters that cannot be set on a target');
    }
  }

  private async run<T>(target: ConnectorTarget, extraSecrets: string[], opts: CallOptions | undefined, call: (o: CallOptions) => Promise<T>): Promise<T> {
    const secrets = [target.adminPassword, target.adminPrivateKey, target.adminPassphrase, ...extraSecrets];
    const controller = new AbortController();
    const timeoutMs = opts?.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
    const onAbort = () => controller.abort();
    opts?.signal?.addEventListener('abort', onAbort, { once: true });
    if (opts?.signal?.aborted) controller.abort();
    try {
      const work = call({ signal: controller.signal, timeoutMs });
      // a connector that ignores the signal still cannot hold the caller past the deadline
      const aborted = new Promise<never>((_, reject) =>
        controller.signal.addEventListener('abort', () => reject(new ConnectorError(timedOut ? 'TARGET_TIMEOUT' : 'TARGET_ERROR', timedOut ? `no answer from the target within ${timeoutMs} ms` : 'the call was aborted')), { once: true }),
      );
      work.catch(() => undefined);
      return await Promise.race([work, aborted]);
    } catch (e) {
      if (e instanceof ConnectorError) throw new ConnectorError(e.connectorCode, redact(e.message, secrets));
      if (timedOut) throw new ConnectorError('TARGET_TIMEOUT', `no answer from the target within ${timeoutMs} ms`);
      if (isUnreachable(e)) throw new ConnectorError('TARGET_UNREACHABLE', `cannot reach ${target.host}:${target.port}`);
      const text = e instanceof Error ? e.message : String(e);
      throw new ConnectorError('TARGET_ERROR', redact(text, secrets));
    } finally {
      clearTimeout(timer);
      opts?.signal?.removeEventListener('abort', onAbort);
    }
  }
}

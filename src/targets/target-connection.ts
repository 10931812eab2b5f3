import { inspect } from 'node:util';
import { ConnectorError } from '../connectors/connector.errors';
import type { TargetType } from '../crypto/password-generator';
import type {
  AccessInspection, CallOptions, Connector, ConnectorSupport, ConnectorTarget, DeleteUserRequest, EndSessionRequest, ListSessionsRequest, LoginRequest, NewUserRequest,
  NewUserResponse, TargetSession, TerminateSessionsRequest, UpdatePasswordRequest, VerifyResult,
} from '../connectors/connector.interface';

/**
 * One target, bound: its type, its decrypted admin credential and its identity pins, and the connector for its type
 * (the registry's SafeConnector: names checked, deadlines kept, secrets stripped from errors). Handed out by
 * `TargetsService.connect()`; the only way services reach a target.
 *
 * The admin credential was decrypted once, when the connection was made, and is held in a private field: it is in no
 * property, no `JSON.stringify`, no `util.inspect` and no error of this object. Calls are stateless to the caller; the
 * connectors run their admin work on pooled connections (src/connectors/admin-pool.ts, ssh/ssh-pool.ts), reused only
 * under the same target, address, admin credential and pins.
 */
export class TargetConnection {
  readonly type: TargetType;
  readonly supports: Readonly<ConnectorSupport>;
  readonly #target: ConnectorTarget;
  readonly #connector: Connector;

  constructor(
    readonly targetId: string,
    target: ConnectorTarget,
    connector: Connector,
  ) {
    if (connector.type !== target.type) throw new Error(`a ${connector.type} connector for a ${target.type} target`);
    this.type = target.type;
    this.supports = Object.freeze({ ...connector.supports });
    this.#target = target;
    this.#connector = connector;
  }

  /** Sets an existing account's password through the admin credential. */
  updatePassword(req: UpdatePasswordRequest, opts?: CallOptions): Promise<void> {
    return this.#connector.updatePassword(this.#target, req, opts);
  }

  /** Logs in as the account itself: resolves when the password works, throws TARGET_AUTH_FAILED when not. */
  login(req: LoginRequest, opts?: CallOptions): Promise<void> {
    return this.#connector.login(this.#target, req, opts);
  }

  /**
   * Creates a one-time account. `validUntil` reaches the target only when its type supports an account expiry; the
   * answer says when the target itself stops the account (null: never, the vault's reaper is the only remover).
   */
  newUser(req: NewUserRequest, opts?: CallOptions): Promise<NewUserResponse> {
    const { validUntil, ...rest } = req;
    return this.#connector.newUser(this.#target, this.supports.accountExpiry === 'none' || validUntil === undefined ? rest : { ...rest, validUntil }, opts);
  }

  /** Ends the account's sessions and removes it; succeeds when it is already gone. */
  deleteUser(req: DeleteUserRequest, opts?: CallOptions): Promise<void> {
    return this.#connector.deleteUser(this.#target, req, opts);
  }

  /** Ends the account's login sessions (never the admin's). */
  terminateSessions(req: TerminateSessionsRequest, opts?: CallOptions): Promise<void> {
    return this.#connector.terminateSessions(this.#target, req, opts);
  }

  /** The account's live sessions on the target now (never the admin's). */
  listSessions(req: ListSessionsRequest, opts?: CallOptions): Promise<TargetSession[]> {
    return this.#connector.listSessions(this.#target, req, opts);
  }

  /** Ends one session of the account, only while it still matches the id and the account; false when there is none. */
  endSession(req: EndSessionRequest, opts?: CallOptions): Promise<boolean> {
    return this.#connector.endSession(this.#target, req, opts);
  }

  /** What of `access` the target's own catalog refuses, one line each (empty: all allowed). */
  inspectAccess(access: AccessInspection, opts?: CallOptions): Promise<string[]> {
    return this.#connector.inspectAccess(this.#target, access, opts);
  }

  /** Whether `username` is the target's administrator itself (the same name, or SSH: the same uid). */
  isAdmin(username: string, opts?: CallOptions): Promise<boolean> {
    return this.#connector.isAdmin(this.#target, username, opts);
  }

  /** Logs in as the admin and reports the server, (SSH) host key and privilege, and every capability the vault needs. */
  verify(opts?: CallOptions): Promise<VerifyResult> {
    return this.#connector.verify(this.#target, opts);
  }

  /** SSH: the host key the server presents, read without authenticating (nothing is sent). */
  async hostKey(opts?: CallOptions): Promise<string> {
    if (!this.#connector.hostKey) throw new ConnectorError('TARGET_UNSUPPORTED', `${this.type} targets have no host key`);
    return this.#connector.hostKey(this.#target, opts);
  }

  /** The same target with `hostKeySha256` as its pin: what verify uses to try a key the admin confirmed before pinning it. */
  withHostKeyPin(hostKeySha256: string): TargetConnection {
    return new TargetConnection(this.targetId, { ...this.#target, options: { ...this.#target.options, hostKeySha256 } }, this.#connector);
  }

  toJSON(): { targetId: string; type: TargetType } {
    return { targetId: this.targetId, type: this.type };
  }

  [inspect.custom](): string {
    return `TargetConnection { ${this.type} target ${this.targetId} }`;
  }
}

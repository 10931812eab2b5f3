import { ConnectorError, ConnectorErrorCode } from '../../src/connectors/connector.errors';
import type {
  AccessInspection, CallOptions, Connector, ConnectorSupport, ConnectorTarget, DeleteUserRequest, EndSessionRequest, EphemeralAccess, ListSessionsRequest, LoginRequest,
  NewUserRequest, NewUserResponse, TargetSession, TerminateSessionsRequest, UpdatePasswordRequest, VerifyResult,
} from '../../src/connectors/connector.interface';
import type { TargetType } from '../../src/crypto/password-generator';

/**
 * An in-memory target of one type behind the connector contract, for tests that decide what a target does without
 * running one (the module harness, test/support/module-harness.ts, registers one per type):
 *
 *     fake.users.set('app', 'Old-Password-1');            // the accounts that exist there and their passwords
 *     fake.fail('updatePassword', 'TARGET_UNREACHABLE');   // the next call fails (once; { times: Infinity }: always)
 *     fake.fail('updatePassword', 'TARGET_TIMEOUT', { afterEffect: true }); // the password changes, the answer is lost
 *     fake.cannotTell('login');                            // a login that neither works nor fails (TARGET_UNREACHABLE)
 *     fake.hang('terminateSessions');                      // never answers: until the caller's deadline/abort or unhang()
 *     fake.ops                                             // every call in order: { op, username, result }
 *
 * Operations are named as the bound target connection names them (src/targets/target-connection.ts): updatePassword,
 * login, newUser, deleteUser, terminateSessions, inspectAccess, isAdmin, verify, hostKey, listSessions, endSession.
 */
export type FakeOp = 'updatePassword' | 'login' | 'newUser' | 'deleteUser' | 'terminateSessions' | 'inspectAccess' | 'isAdmin' | 'verify' | 'hostKey' | 'listSessions' | 'endSession';

export interface FakeCall {
  op: FakeOp;
  username?: string;
  /** 'ok', the ConnectorError code it failed with, or 'pending' while it runs (or hangs). */
  result: 'ok' | 'pending' | ConnectorErrorCode;
}

interface Rule {
  op: FakeOp;
  /** Fail with this code; undefined: hang until aborted. */
  code?: ConnectorErrorCode;
  times: number;
  /** The operation takes effect on the target first, then the answer fails. */
  afterEffect: boolean;
  username?: string;
}

const SUPPORTS: Record<TargetType, ConnectorSupport> = {
  ssh: { accountExpiry: 'day', hostKey: true },
  postgres: { accountExpiry: 'exact', hostKey: false },
  mysql: { accountExpiry: 'none', hostKey: false },
};

/** The host key a fake SSH target presents (SHA-256, base64 without padding). */
export const FAKE_HOST_KEY = 'ZmFrZS1zc2gtaG9zdC1rZXktZm9yLXRlc3RzLW9ubHktMDAwMDA';

export class FakeConnector implements Connector {
  readonly supports: ConnectorSupport;
  /** The accounts on the target: username → password. */
  readonly users = new Map<string, string>();
  /** What each one-time account was created with. */
  readonly created = new Map<string, EphemeralAccess>();
  /** Every call, in the order they were made. */
  readonly ops: FakeCall[] = [];
  /** What inspectAccess answers (refusals, one line each). */
  refusals: string[] = [];
  /** The live sessions on the target, by account (listSessions answers them; endSession and terminateSessions remove them). */
  readonly sessions = new Map<string, TargetSession[]>();
  private rules: Rule[] = [];
  private readonly hung = new Set<(e: Error) => void>();

  constructor(readonly type: TargetType) {
    this.supports = SUPPORTS[type];
  }

  /** The next `times` (default 1; Infinity: always) calls of `op` (for `username` only, if given) fail with `code`. */
  fail(op: FakeOp, code: ConnectorErrorCode, o: { times?: number; afterEffect?: boolean; username?: string } = {}): this {
    this.rules.push({ op, code, times: o.times ?? 1, afterEffect: o.afterEffect ?? false, username: o.username });
    return this;
  }

  /** The target cannot say whether the password works (unreachable): neither "works" nor "does not". */
  cannotTell(op: FakeOp = 'login', o: { times?: number; username?: string } = {}): this {
    return this.fail(op, 'TARGET_UNREACHABLE', o);
  }

  /** The next `times` calls of `op` never answer: they end when the caller's deadline or signal aborts them, or at unhang(). */
  hang(op: FakeOp, o: { times?: number; afterEffect?: boolean; username?: string } = {}): this {
    this.rules.push({ op, times: o.times ?? 1, afterEffect: o.afterEffect ?? false, username: o.username });
    return this;
  }

  /** How many calls are hanging now. */
  hanging(): number {
    return this.hung.size;
  }

  /** Ends every hanging call with TARGET_TIMEOUT. */
  unhang(): void {
    for (const end of [...this.hung]) end(new ConnectorError('TARGET_TIMEOUT', 'fake target: released'));
  }

  /** Forgets programmed failures (not the accounts or the recorded calls). */
  reset(): void {
    this.rules = [];
  }

  /** The calls of one operation (optionally for one account). */
  calls(op: FakeOp, username?: string): FakeCall[] {
    return this.ops.filter((c) => c.op === op && (username === undefined || c.username === username));
  }

  async hostKey(_target: ConnectorTarget, opts?: CallOptions): Promise<string> {
    return this.call('hostKey', undefined, opts, () => FAKE_HOST_KEY);
  }

  async inspectAccess(_target: ConnectorTarget, _access: AccessInspection, opts?: CallOptions): Promise<string[]> {
    return this.call('inspectAccess', undefined, opts, () => [...this.refusals]);
  }

  async isAdmin(target: ConnectorTarget, username: string, opts?: CallOptions): Promise<boolean> {
    return this.call('isAdmin', username, opts, () => username === target.adminUsername);
  }

  async verify(_target: ConnectorTarget, opts?: CallOptions): Promise<VerifyResult> {
    return this.call('verify', undefined, opts, () => ({
      ok: true as const,
      serverVersion: `fake ${this.type}`,
      ...(this.type === 'ssh' ? { hostKeySha256: FAKE_HOST_KEY, privilege: 'root' as const } : {}),
      capabilities: [],
    }));
  }

  async updatePassword(_target: ConnectorTarget, account: UpdatePasswordRequest, opts?: CallOptions): Promise<void> {
    return this.call('updatePassword', account.username, opts, () => {
      if (!this.users.has(account.username)) throw new ConnectorError('TARGET_ERROR', 'fake target: no such account');
      this.users.set(account.username, account.password);
    });
  }

  async login(_target: ConnectorTarget, account: LoginRequest, opts?: CallOptions): Promise<void> {
    return this.call('login', account.username, opts, () => {
      if (this.users.get(account.username) !== account.password) throw new ConnectorError('TARGET_AUTH_FAILED', 'fake target: login refused');
    });
  }

  async newUser(_target: ConnectorTarget, account: NewUserRequest, opts?: CallOptions): Promise<NewUserResponse> {
    return this.call('newUser', account.username, opts, () => {
      if (this.users.has(account.username)) throw new ConnectorError('TARGET_ERROR', 'fake target: the account exists');
      this.users.set(account.username, account.password);
      this.created.set(account.username, account.access);
      // as the real ones: SSH expires from the start of the UTC day after validUntil, PostgreSQL exactly then
      const until = account.validUntil;
      if (!until) return { expiresOnTarget: null };
      return { expiresOnTarget: this.supports.accountExpiry === 'day' ? new Date((Math.floor(until.getTime() / 86_400_000) + 1) * 86_400_000) : until };
    });
  }

  async deleteUser(_target: ConnectorTarget, { username }: DeleteUserRequest, opts?: CallOptions): Promise<void> {
    return this.call('deleteUser', username, opts, () => {
      this.users.delete(username);
      this.created.delete(username);
    });
  }

  async terminateSessions(_target: ConnectorTarget, { username }: TerminateSessionsRequest, opts?: CallOptions): Promise<void> {
    return this.call('terminateSessions', username, opts, () => void this.sessions.delete(username));
  }

  async listSessions(_target: ConnectorTarget, { username }: ListSessionsRequest, opts?: CallOptions): Promise<TargetSession[]> {
    return this.call('listSessions', username, opts, () => [...(this.sessions.get(username) ?? [])]);
  }

  async endSession(_target: ConnectorTarget, { username, sessionId }: EndSessionRequest, opts?: CallOptions): Promise<boolean> {
    return this.call('endSession', username, opts, () => {
      const list = this.sessions.get(username) ?? [];
      const left = list.filter((x) => x.id !== sessionId);
      this.sessions.set(username, left);
      return left.length < list.length;
    });
  }

  private async call<T>(op: FakeOp, username: string | undefined, opts: CallOptions | undefined, effect: () => T): Promise<T> {
    const record: FakeCall = { op, username, result: 'pending' };
    this.ops.push(record);
    const rule = this.rules.find((r) => r.op === op && r.times > 0 && (r.username === undefined || r.username === username));
    if (rule) rule.times--;
    try {
      if (!rule) {
        const out = effect();
        record.result = 'ok';
        return out;
      }
      if (rule.afterEffect) effect();
      if (rule.code) throw new ConnectorError(rule.code, `fake target: injected ${rule.code}`);
      return await this.hangUntilAborted(opts);
    } catch (e) {
      record.result = e instanceof ConnectorError ? e.connectorCode : 'TARGET_ERROR';
      throw e;
    }
  }

  private hangUntilAborted(opts: CallOptions | undefined): Promise<never> {
    return new Promise<never>((_, reject) => {
      const end = (e: Error) => {
        this.hung.delete(end);
        opts?.signal?.removeEventListener('abort', onAbort);
        reject(e);
      };
      const onAbort = () => end(new ConnectorError('TARGET_TIMEOUT', 'fake target: aborted'));
      this.hung.add(end);
      if (opts?.signal?.aborted) onAbort();
      else opts?.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

import { randomUUID } from 'node:crypto';
import { inspect } from 'node:util';
import type { DataSource } from 'typeorm';
import type { AuditService } from '../audit/audit.service';
import { ConnectorError } from '../connectors/connector.errors';
import type {
  AccessInspection, CallOptions, Connector, ConnectorSupport, ConnectorTarget, DeleteUserRequest, EndSessionRequest, ListSessionsRequest, LoginRequest, NewUserRequest,
  NewUserResponse, TargetSession, TerminateSessionsRequest, UpdatePasswordRequest, VerifyResult,
} from '../connectors/connector.interface';
import { ConnectorRegistry } from '../connectors/connector.registry';
import { DecryptionError } from '../crypto/aead';
import type { TargetType } from '../crypto/password-generator';
import type { SecretBoxService } from '../crypto/secret-box.service';
import type { UnitOfWork } from '../database/unit-of-work';
import type { TargetEntity } from './target.entity';
import { TargetConnection } from './target-connection';
import { TargetsService } from './targets.service';

const ADMIN_PASSWORD = 'Admin-Secret-4f1c9e';
const SUPPORTS: Record<TargetType, ConnectorSupport> = {
  ssh: { accountExpiry: 'day', hostKey: true },
  postgres: { accountExpiry: 'exact', hostKey: false },
  mysql: { accountExpiry: 'none', hostKey: false },
};

/** A target that answers everything and records what reached it (the target as the connector saw it, and the request). */
class RecordingConnector implements Connector {
  readonly supports: ConnectorSupport;
  readonly calls: Array<{ op: string; target: ConnectorTarget; req?: unknown }> = [];

  constructor(readonly type: TargetType) {
    this.supports = SUPPORTS[type];
  }

  async hostKey(target: ConnectorTarget, _opts?: CallOptions): Promise<string> {
    this.calls.push({ op: 'hostKey', target });
    return 'presented-key';
  }

  async inspectAccess(target: ConnectorTarget, req: AccessInspection): Promise<string[]> {
    this.calls.push({ op: 'inspectAccess', target, req });
    return [];
  }

  async isAdmin(target: ConnectorTarget, username: string): Promise<boolean> {
    this.calls.push({ op: 'isAdmin', target, req: username });
    return false;
  }

  async verify(target: ConnectorTarget): Promise<VerifyResult> {
    this.calls.push({ op: 'verify', target });
    return { ok: true, capabilities: [] };
  }

  async updatePassword(target: ConnectorTarget, req: UpdatePasswordRequest): Promise<void> {
    this.calls.push({ op: 'updatePassword', target, req });
  }

  /** Fails the way a driver might: quoting the admin's password in its message. */
  async login(target: ConnectorTarget, req: LoginRequest): Promise<void> {
    this.calls.push({ op: 'login', target, req });
    throw new Error(`authentication of ${target.adminUsername} with ${target.adminPassword} failed`);
  }

  async newUser(target: ConnectorTarget, req: NewUserRequest): Promise<NewUserResponse> {
    this.calls.push({ op: 'newUser', target, req });
    return { expiresOnTarget: req.validUntil ?? null };
  }

  async deleteUser(target: ConnectorTarget, req: DeleteUserRequest): Promise<void> {
    this.calls.push({ op: 'deleteUser', target, req });
  }

  async terminateSessions(target: ConnectorTarget, req: TerminateSessionsRequest): Promise<void> {
    this.calls.push({ op: 'terminateSessions', target, req });
  }

  async listSessions(target: ConnectorTarget, req: ListSessionsRequest): Promise<TargetSession[]> {
    this.calls.push({ op: 'listSessions', target, req });
    return [];
  }

  async endSession(target: ConnectorTarget, req: EndSessionRequest): Promise<boolean> {
    this.calls.push({ op: 'endSession', target, req });
    return false;
  }
}

function setup(type: TargetType, decrypt: () => string = () => JSON.stringify({ password: ADMIN_PASSWORD })) {
  const fake = new RecordingConnector(type);
  const registry = new ConnectorRegistry();
  registry.register(fake);
  const secrets = { decrypt: jest.fn(decrypt) };
  const targets = new TargetsService({} as DataSource, {} as UnitOfWork, {} as AuditService, secrets as unknown as SecretBoxService, registry);
  const target = {
    id: randomUUID(), type, name: 't1', host: '127.0.0.1', port: 5432, adminUsername: 'vault_admin', adminSecret: Buffer.from('sealed'), adminCredentials: ['password'], options: {},
  } as unknown as TargetEntity;
  return { fake, registry, secrets, targets, target };
}

const codeOf = (p: Promise<unknown>) => p.then(() => 'resolved', (e: unknown) => (e instanceof ConnectorError ? e.connectorCode : (e as { code?: string }).code ?? String(e)));

describe('TargetConnection (TargetsService.connect)', () => {
  it('decrypts the admin credential once, in connect(), and hands it to the connector on every call', async () => {
    const { fake, secrets, targets, target } = setup('postgres');
    const conn = await targets.connect(target);
    expect(secrets.decrypt).toHaveBeenCalledTimes(1);
    expect(conn).toBeInstanceOf(TargetConnection);
    expect(conn).toMatchObject({ type: 'postgres', targetId: target.id, supports: SUPPORTS.postgres });

    await conn.verify();
    await conn.updatePassword({ username: 'app', password: 'New-Password-1' });
    await conn.terminateSessions({ username: 'app' });
    await conn.deleteUser({ username: 'vt_x' });
    await conn.inspectAccess({ roles: ['readers'] });
    await conn.isAdmin('app');
    await codeOf(conn.login({ username: 'app', password: 'New-Password-1' }));
    expect(secrets.decrypt).toHaveBeenCalledTimes(1);

    expect(fake.calls.map((c) => c.op)).toEqual(['verify', 'updatePassword', 'terminateSessions', 'deleteUser', 'inspectAccess', 'isAdmin', 'login']);
    for (const c of fake.calls) expect(c.target).toMatchObject({ type: 'postgres', host: '127.0.0.1', port: 5432, adminUsername: 'vault_admin', adminPassword: ADMIN_PASSWORD });
    expect(fake.calls[1].req).toEqual({ username: 'app', password: 'New-Password-1' });
    expect(fake.calls[2].req).toEqual({ username: 'app' });
  });

  it('never exposes the credential: not in its properties, JSON.stringify, util.inspect, nor in the errors of its calls', async () => {
    const { targets, target } = setup('postgres');
    const conn = await targets.connect(target);
    expect(JSON.stringify(conn)).not.toContain(ADMIN_PASSWORD);
    expect(JSON.parse(JSON.stringify(conn))).toEqual({ targetId: target.id, type: 'postgres' });
    expect(inspect(conn, { showHidden: true, depth: 10 })).not.toContain(ADMIN_PASSWORD);
    expect(JSON.stringify(Object.getOwnPropertyNames(conn).map((k) => (conn as unknown as Record<string, unknown>)[k]))).not.toContain(ADMIN_PASSWORD);
    expect(`${conn}`).not.toContain(ADMIN_PASSWORD);

    // the connector's error quoted the admin password: what reaches the caller is a ConnectorError without it
    const e = await conn.login({ username: 'app', password: 'Account-Password-2' }).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(ConnectorError);
    expect((e as ConnectorError).connectorCode).toBe('TARGET_ERROR');
    expect((e as Error).message).toContain('[REDACTED]');
    for (const text of [(e as Error).message, JSON.stringify(e), inspect(e)]) expect(text).not.toContain(ADMIN_PASSWORD);
  });

  it("newUser never sends validUntil to a type without account expiry (MySQL) and says so: expiresOnTarget null", async () => {
    const { fake, targets, target } = setup('mysql');
    const conn = await targets.connect(target);
    expect(conn.supports.accountExpiry).toBe('none');
    const res = await conn.newUser({ username: 'vt_a', password: 'Pw-1-abcdef', access: { grants: [{ privileges: ['SELECT'], on: 'app.*' }] }, validUntil: new Date(Date.now() + 3_600_000) });
    expect(res).toEqual({ expiresOnTarget: null });
    expect(fake.calls).toHaveLength(1);
    expect(fake.calls[0].req).not.toHaveProperty('validUntil');
    expect(fake.calls[0].req).toMatchObject({ username: 'vt_a', access: { grants: [{ privileges: ['SELECT'], on: 'app.*' }] } });
  });

  it('newUser hands validUntil to a type with account expiry and answers what the target holds', async () => {
    const { fake, targets, target } = setup('postgres');
    const conn = await targets.connect(target);
    const validUntil = new Date(Date.now() + 3_600_000);
    expect(await conn.newUser({ username: 'vt_b', password: 'Pw-2-abcdef', access: {}, validUntil })).toEqual({ expiresOnTarget: validUntil });
    expect(fake.calls[0].req).toMatchObject({ validUntil });
    expect(await conn.newUser({ username: 'vt_c', password: 'Pw-3-abcdef', access: {} })).toEqual({ expiresOnTarget: null });
  });

  it('an option the connector does not support is refused (TARGET_UNSUPPORTED) before anything reaches the target, never ignored', async () => {
    const { fake, registry, targets, target } = setup('mysql');
    const ct = { type: 'mysql' as const, host: '127.0.0.1', port: 3306, adminUsername: 'vault_admin', adminPassword: ADMIN_PASSWORD, options: {} };
    expect(await codeOf(registry.get('mysql').newUser(ct, { username: 'vt_d', password: 'Pw-4-abcdef', access: {}, validUntil: new Date(Date.now() + 60_000) }))).toBe('TARGET_UNSUPPORTED');
    expect(await codeOf((await targets.connect(target)).hostKey())).toBe('TARGET_UNSUPPORTED');
    expect(fake.calls).toEqual([]);
  });

  it('withHostKeyPin: the same target with the pin being confirmed, without decrypting again; the original keeps its options', async () => {
    const { fake, secrets, targets, target } = setup('ssh');
    const conn = await targets.connect(target);
    expect(await conn.hostKey()).toBe('presented-key');
    await conn.withHostKeyPin('presented-key').verify();
    await conn.verify();
    expect(secrets.decrypt).toHaveBeenCalledTimes(1);
    expect(fake.calls.map((c) => [c.op, c.target.options.hostKeySha256])).toEqual([['hostKey', undefined], ['verify', 'presented-key'], ['verify', undefined]]);
  });

  it("a credential that no longer decrypts: connect() answers 409 TARGET_CREDENTIAL_UNREADABLE and nothing reaches the target", async () => {
    const { fake, targets, target } = setup('postgres', () => {
      throw new DecryptionError();
    });
    await expect(targets.connect(target)).rejects.toMatchObject({ code: 'TARGET_CREDENTIAL_UNREADABLE', status: 409 });
    expect(fake.calls).toEqual([]);
  });
});

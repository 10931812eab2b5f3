import { createHash, randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { AuditService } from '../audit/audit.service';
import { DomainException, Errors } from '../common/errors';
import { ConnectorTarget, TargetOptions } from '../connectors/connector.interface';
import { ConnectorRegistry } from '../connectors/connector.registry';
import { Page } from '../common/pagination';
import { findByIdOrThrow, isUniqueViolation, keysetPage } from '../database/queries';
import { UnitOfWork } from '../database/unit-of-work';
import { DecryptionError } from '../crypto/aead';
import { SecretBoxService } from '../crypto/secret-box.service';
import { Actor } from '../common/actor';
import { TargetConnection } from './target-connection';
import { TargetUsage } from './target-usage';
import { TargetEntity } from './target.entity';
import {
  CreateTargetDto, mapTarget, normalizeCertSha256, pemCertificates, TargetAdminDto, TargetListQuery, TargetOptionsDto, TargetView, UpdateTargetDto, VerifyTargetDto, VerifyView,
} from './targets.dto';
import { ConnectorError } from '../connectors/connector.errors';

/** What the vault keeps of a target's admin credential, encrypted as one JSON document. */
export interface TargetAdminSecret {
  password?: string;
  privateKey?: string;
  passphrase?: string;
}

/**
 * The admin credential is bound to where it may be used: someone who can write the database but has no key
 * cannot point a target at their own host (or unpin its SSH key) and have the vault hand the credential there;
 * the ciphertext simply stops decrypting. The vault re-encrypts when an admin changes these fields.
 */
type TargetLocation = Pick<TargetEntity, 'id' | 'type' | 'host' | 'port' | 'adminUsername' | 'options'>;
const secretRef = (t: TargetLocation) => ({
  table: 'targets',
  rowId: t.id,
  column: 'admin_secret',
  context: JSON.stringify([t.type, t.host, t.port, t.adminUsername, t.options.hostKeySha256 ?? null, ...tlsBinding(t.options), ...accountHostBinding(t.options)]),
});

/**
 * MySQL: the account host one-time accounts are created under ('v'@'<accountHost>') is bound too, when set: a
 * database-side change of it would make the reaper drop 'v'@'<other>' (nothing) and leave the real account alive;
 * with it bound the credential stops decrypting and the vault fails loudly instead. Rows without it keep their context.
 */
function accountHostBinding(o: TargetOptions): unknown[] {
  return o.accountHost === undefined ? [] : [{ accountHost: o.accountHost }];
}

/** The server-identity settings (TLS, CA, certificate pin) are bound too, when set (rows without them keep their old context). */
function tlsBinding(o: TargetOptions): unknown[] {
  if (o.tls === undefined && o.tlsCa === undefined && o.tlsCertSha256 === undefined) return [];
  return [{ tls: o.tls ?? null, ca: o.tlsCa ? createHash('sha256').update(o.tlsCa).digest('hex') : null, pin: o.tlsCertSha256 ?? null }];
}

@Injectable()
export class TargetsService {
  constructor(
    private readonly dataSource: DataSource,
    private readonly uow: UnitOfWork,
    private readonly audit: AuditService,
    private readonly secrets: SecretBoxService,
    private readonly connectors: ConnectorRegistry,
  ) {}

  private readonly usages: TargetUsage[] = [];

  /** Another module tells what it keeps on targets (src/targets/target-usage.ts). */
  registerUsage(usage: TargetUsage): void {
    this.usages.push(usage);
    this.usages.sort((a, b) => a.order - b.order);
  }

  async create(actor: Actor, dto: CreateTargetDto): Promise<TargetView> {
    const options = checkOptions(dto.type, dto.options ?? {});
    const credentials = checkAdmin(dto.type, dto.admin);
    const id = randomUUID();
    const target = await this.uow.run(async ({ em, audit }) => {
      const location: TargetLocation = { id, type: dto.type, host: dto.host, port: dto.port, adminUsername: dto.admin.username, options };
      const row: Partial<TargetEntity> = {
        ...location,
        name: dto.name,
        adminSecret: this.secrets.encrypt(secretRef(location), JSON.stringify(secretOf(dto.admin))),
        adminCredentials: credentials,
      };
      await uniqueName(() => em.getRepository(TargetEntity).insert(row));
      await audit({ type: 'target.created', actor, subjectType: 'target', subjectId: id, details: publicDetails(row) });
      return em.getRepository(TargetEntity).findOneByOrFail({ id });
    });
    return mapTarget(target);
  }

  async list(q: TargetListQuery): Promise<Page<TargetView>> {
    return keysetPage(this.dataSource.manager, TargetEntity, { column: 'name', kind: 'string' }, q, mapTarget, (qb) => {
      if (q.type) qb.andWhere('r.type = :type', { type: q.type });
    });
  }

  async get(id: string): Promise<TargetView> {
    return mapTarget(await this.find(this.dataSource.manager, id));
  }

  async update(actor: Actor, id: string, dto: UpdateTargetDto): Promise<TargetView> {
    const target = await this.uow.run(async ({ em, audit }) => {
      const current = await this.find(em, id, true);
      const changes: Partial<TargetEntity> = {};
      if (dto.name !== undefined) changes.name = dto.name;
      if (dto.host !== undefined) changes.host = dto.host;
      if (dto.port !== undefined) changes.port = dto.port;
      if (dto.options !== undefined) changes.options = checkOptions(current.type, { ...current.options, ...definedOnly(dto.options) });
      if (dto.admin !== undefined) {
        changes.adminCredentials = checkAdmin(current.type, dto.admin);
        changes.adminUsername = dto.admin.username;
        // the vault rotates its accounts' passwords: an admin that is one of them would be locked out by the next rotation
        for (const usage of this.usages) if (await usage.hasUsername?.(em, id, dto.admin.username)) throw adminIsAccount();
      }
      const before = secretRef(current);
      const after = secretRef({ ...current, ...changes });
      const relocated = ['host', 'port', 'adminUsername'].some((k) => k in changes && changes[k as keyof TargetEntity] !== current[k as keyof TargetEntity]) ||
        (changes.options !== undefined && changes.options.accountHost !== current.options.accountHost);
      // the stored admin credential never follows the target to another place (or to another server identity: host
      // key pin, TLS, CA, certificate pin): whoever moves it types the credential again, so a stolen session cannot
      // send the stored one to an address of its choosing
      if ((relocated || after.context !== before.context) && dto.admin === undefined) throw adminCredentialRequired();
      // a one-time account lives on the server it was created on (MySQL: under its account host): moving the target
      // under it would send its removal elsewhere and leave it behind
      for (const usage of relocated ? this.usages : []) {
        if (usage.moveRefusal && (await usage.count(em, id)) > 0) throw Errors.conflict('TARGET_IN_USE', usage.moveRefusal);
      }
      if (dto.admin !== undefined) changes.adminSecret = this.secrets.encrypt(after, JSON.stringify(secretOf(dto.admin)));
      if (Object.keys(changes).length === 0) return current;
      await uniqueName(() => em.getRepository(TargetEntity).update({ id }, changes));
      await audit({
        type: 'target.updated',
        actor,
        subjectType: 'target',
        subjectId: id,
        details: { ...publicDetails(changes), adminSecretChanged: dto.admin !== undefined },
      });
      return em.getRepository(TargetEntity).findOneByOrFail({ id });
    });
    return mapTarget(target);
  }

  async remove(actor: Actor, id: string): Promise<void> {
    await this.uow.run(async ({ em, audit }) => {
      const current = await this.find(em, id, true);
      // its accounts go first; one-time accounts that may still exist on it (or be created) must be removed by the vault
      for (const usage of this.usages) {
        const n = await usage.count(em, id);
        if (n > 0) throw Errors.conflict('TARGET_IN_USE', usage.deleteRefusal(n));
      }
      await em.getRepository(TargetEntity).delete({ id });
      await audit({ type: 'target.deleted', actor, subjectType: 'target', subjectId: id, details: { name: current.name } });
    });
  }

  /** The decrypted admin credential, for connectors only. Never returned over the API. */
  async adminSecret(target: TargetEntity): Promise<TargetAdminSecret> {
    return JSON.parse(this.readSecret(target)) as TargetAdminSecret;
  }

  /**
   * The stored admin credential, decrypted. One that no longer decrypts — its row was changed outside the API (address,
   * admin, pin, TLS or accountHost), or copied from elsewhere — is a 409 with a stable code and never reaches a target.
   */
  private readSecret(target: TargetLocation & Pick<TargetEntity, 'adminSecret'>): string {
    try {
      return this.secrets.decrypt(secretRef(target), target.adminSecret);
    } catch (e) {
      if (!(e instanceof DecryptionError) && !/unknown secret format|key version/.test((e as Error)?.message ?? '')) throw e;
      throw Errors.conflict('TARGET_CREDENTIAL_UNREADABLE', "the target's stored admin credential does not decrypt for this target (changed outside the API?): enter it again with PATCH /v1/targets/:id and admin");
    }
  }

  /**
   * The target, bound: its admin credential is decrypted here, once (a 409 TARGET_CREDENTIAL_UNREADABLE when it no
   * longer decrypts, before anything reaches the target), and held privately by the connection, which goes through the
   * connector for the target's type. The one way services reach a target.
   */
  async connect(target: TargetEntity): Promise<TargetConnection> {
    return new TargetConnection(target.id, connectorTargetOf(target, await this.adminSecret(target)), this.connectors.get(target.type));
  }

  /** {@link connect} for the target with this id (404 when there is none). */
  async connectById(em: EntityManager, id: string): Promise<TargetConnection> {
    return this.connect(await this.find(em, id));
  }

  /**
   * Logs in with the admin credential and reports every capability the vault needs (all at once). An SSH target
   * without a pinned host key is never logged in to: the first verify answers 409 TARGET_HOST_KEY_UNPINNED with the
   * key the server presents; the admin compares it with the server out of band and verifies again with
   * `hostKeySha256`, which is pinned when it is what the server presents and the login works.
   */
  async verify(actor: Actor, id: string, dto: VerifyTargetDto = {}): Promise<VerifyView> {
    const target = await this.find(this.dataSource.manager, id);
    let result;
    let pin: string | undefined;
    try {
      let conn = await this.connect(target);
      if (conn.supports.hostKey) {
        const confirmed = dto.hostKeySha256?.replace(/^SHA256:/, '').replace(/=$/, '');
        if (!target.options.hostKeySha256) {
          const presented = await conn.hostKey();
          if (!confirmed) {
            throw new DomainException('TARGET_HOST_KEY_UNPINNED', `the server presents host key SHA256:${presented}; compare it with the server and verify again with hostKeySha256 to pin it`, {
              presentedHostKeySha256: presented,
            });
          }
          if (confirmed !== presented) throw new ConnectorError('TARGET_HOST_KEY_MISMATCH', `the server presents SHA256:${presented}, not the host key given`);
          pin = presented;
          conn = conn.withHostKeyPin(pin);
        } else if (confirmed && confirmed !== target.options.hostKeySha256) {
          throw new ConnectorError('TARGET_HOST_KEY_MISMATCH', 'the target has another pinned host key; change the pin with PATCH options.hostKeySha256');
        }
      } else if (dto.hostKeySha256 !== undefined) {
        throw Errors.validation('hostKeySha256: for SSH targets only');
      }
      result = await conn.verify();
    } catch (e) {
      const code = e instanceof DomainException ? e.code : 'TARGET_ERROR';
      await this.audit.recordAlone({ type: 'target.verified', actor, subjectType: 'target', subjectId: id, outcome: 'failure', details: { code } });
      throw e;
    }
    const missing = result.capabilities.filter((c) => !c.ok).map((c) => c.code);
    await this.uow.run(async ({ em, audit }) => {
      if (pin) {
        const current = await this.find(em, id, true);
        // pinned meanwhile by someone else (to another key): theirs stands, this verify does not overwrite it
        if (current.options.hostKeySha256 && current.options.hostKeySha256 !== pin) throw new ConnectorError('TARGET_HOST_KEY_MISMATCH', 'another host key was pinned meanwhile');
        const options = { ...current.options, hostKeySha256: pin };
        const adminSecret = this.secrets.encrypt(secretRef({ ...current, options }), this.readSecret(current));
        await em.getRepository(TargetEntity).update({ id }, { options, adminSecret });
      }
      await audit({
        type: 'target.verified',
        actor,
        subjectType: 'target',
        subjectId: id,
        details: { serverVersion: result.serverVersion ?? null, pinnedHostKey: pin ?? null, privilege: result.privilege ?? null, missing },
      });
    });
    return {
      ok: missing.length === 0,
      serverVersion: result.serverVersion,
      ...(target.type === 'ssh' ? { hostKeySha256: pin ?? target.options.hostKeySha256, privilege: result.privilege } : {}),
      capabilities: result.capabilities,
      missing,
    };
  }

  /**
   * Refuses an account that is the target's own administrator (INVARIANT 18): by name, and by identity where the target
   * can tell (SSH: the same uid). Rotating it would lock the vault out of the target for every other account.
   */
  async refuseAdminAccount(target: TargetEntity, username: string): Promise<void> {
    if (username === target.adminUsername) throw adminIsAccount();
    if (target.type !== 'ssh') return; // PostgreSQL roles and MySQL users are their names
    if (await (await this.connect(target)).isAdmin(username)) throw adminIsAccount();
  }

  find(em: EntityManager, id: string, lock = false): Promise<TargetEntity> {
    return findByIdOrThrow(em, TargetEntity, id, 'target', lock);
  }
}

/** What a connector needs to act on this target as its administrator. */
function connectorTargetOf(target: TargetEntity, admin: TargetAdminSecret): ConnectorTarget {
  return {
    id: target.id,
    type: target.type,
    host: target.host,
    port: target.port,
    adminUsername: target.adminUsername,
    adminPassword: admin.password,
    adminPrivateKey: admin.privateKey,
    adminPassphrase: admin.passphrase,
    options: target.options,
  };
}

const adminCredentialRequired = () =>
  new DomainException('ADMIN_CREDENTIAL_REQUIRED',
    "moving a target (host, port, admin username, MySQL accountHost) or changing how its identity is checked (host key pin, TLS, CA, certificate pin) needs its admin credential again in `admin`; nothing was changed",
  );

const adminIsAccount = () =>
  Errors.conflict('ACCOUNT_IS_TARGET_ADMIN', "the target's own administrator cannot be a vaulted account: the vault would rotate the password it works with");

function secretOf(admin: TargetAdminDto): TargetAdminSecret {
  return { password: admin.password, privateKey: admin.privateKey, passphrase: admin.passphrase };
}

function checkAdmin(type: TargetEntity['type'], admin: TargetAdminDto): Array<'password' | 'privateKey'> {
  if (!admin.password && !admin.privateKey) throw Errors.validation('admin: give a password or a privateKey');
  if (admin.privateKey && type !== 'ssh') throw Errors.validation('admin.privateKey: only SSH targets take a private key');
  if (admin.passphrase && !admin.privateKey) throw Errors.validation('admin.passphrase: only with a privateKey');
  return [...(admin.password ? (['password'] as const) : []), ...(admin.privateKey ? (['privateKey'] as const) : [])];
}

/** DTO instances carry every declared field, absent ones as `undefined`: keep only what the client sent. */
function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function checkOptions(type: TargetEntity['type'], options: TargetOptionsDto): TargetOptions {
  if (type !== 'ssh' && (options.hostKeySha256 !== undefined || options.sudo !== undefined)) {
    throw Errors.validation('options: hostKeySha256 and sudo are for SSH targets only');
  }
  if (type === 'ssh' && options.database !== undefined) throw Errors.validation('options.database: not for SSH targets');
  if (type !== 'mysql' && options.accountHost !== undefined) throw Errors.validation('options.accountHost: for MySQL targets only');
  if (type === 'ssh' && (options.tls !== undefined || options.tlsCa !== undefined || options.tlsCertSha256 !== undefined)) {
    throw Errors.validation('options.tls, tlsCa and tlsCertSha256: not for SSH targets (they pin a host key)');
  }
  if (type === 'mysql' && options.tls === false) throw Errors.validation('options.tls: MySQL/MariaDB targets always use TLS with a verified certificate');
  // a CA or pin given with TLS turned off would protect nothing while looking as if it did
  if (options.tls === false && (options.tlsCa !== undefined || options.tlsCertSha256 !== undefined)) {
    throw Errors.validation('options.tlsCa and tlsCertSha256 need TLS: remove options.tls: false');
  }
  const out: TargetOptions = {};
  if (options.hostKeySha256 !== undefined) out.hostKeySha256 = options.hostKeySha256.replace(/^SHA256:/, '').replace(/=$/, '');
  if (options.sudo !== undefined) out.sudo = options.sudo;
  if (options.database !== undefined) out.database = options.database;
  if (options.accountHost !== undefined) out.accountHost = options.accountHost;
  if (options.tls !== undefined) out.tls = options.tls;
  if (options.tlsCa !== undefined) out.tlsCa = pemCertificates(options.tlsCa) ?? undefined;
  if (options.tlsCertSha256 !== undefined) out.tlsCertSha256 = normalizeCertSha256(options.tlsCertSha256);
  return out;
}

/** The fields of a target row that may appear in an audit event. */
function publicDetails(row: Partial<TargetEntity>): Record<string, unknown> {
  const { name, type, host, port, adminUsername, adminCredentials, options } = row;
  return { name, type, host, port, adminUsername, adminCredentials, options };
}

async function uniqueName(write: () => Promise<unknown>): Promise<void> {
  try {
    await write();
  } catch (e) {
    if (isUniqueViolation(e)) {
      throw Errors.conflict('TARGET_NAME_TAKEN', 'a target with this name already exists');
    }
    throw e;
  }
}

import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { UnitOfWork } from '../database/unit-of-work';
import { DataSource, EntityManager } from 'typeorm';
import { DomainException, Errors } from '../common/errors';
import { Page } from '../common/pagination';
import { findByIdOrThrow, isUniqueViolation, keysetPage } from '../database/queries';
import { Actor } from '../common/actor';
import { APP_CONFIG, AppConfig } from '../config/config';
import { PasswordHasher } from './password-hasher';
import { UserEntity } from './user.entity';
import { CreateUserDto, mapUser, UpdateMeDto, UpdateUserDto, UserListQuery, UserView } from './users.dto';

/** A person's own notification settings (`GET/PATCH /v1/me`). */
export interface NotificationSettings {
  email: string | null;
  mutedNotifications: string[];
}

/** Admin management of users: create, list, change roles, disable. */
@Injectable()
export class UsersService {
  constructor(
    private readonly dataSource: DataSource,
    private readonly uow: UnitOfWork,
    private readonly hasher: PasswordHasher,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /**
   * Addresses are not verified (no confirmation mail): with VAULT_NOTIFY_EMAIL_DOMAINS set, every address the vault is
   * given (a user's, an e-mail channel's) must be in one of those domains (exactly; 400 EMAIL_DOMAIN_NOT_ALLOWED), so
   * approval requests never leave the organisation whoever typed the address.
   */
  checkEmailDomain(address: string, field = 'email'): void {
    const domains = this.config.notify.emailDomains;
    if (!domains) return;
    const domain = address.slice(address.lastIndexOf('@') + 1).toLowerCase().replace(/\.$/, '');
    if (!domains.includes(domain)) {
      throw new DomainException('EMAIL_DOMAIN_NOT_ALLOWED', `${field}: the address must be in ${domains.length === 1 ? 'the domain' : 'one of the domains'} ${domains.slice(0, 10).join(', ')}`);
    }
  }

  /** The notification kinds and which of them a user may mute: told at start by the notifications module (a higher layer). */
  private notificationKinds: { all: ReadonlySet<string>; optional: ReadonlySet<string> } = { all: new Set(), optional: new Set() };

  registerNotificationKinds(all: readonly string[], optional: readonly string[]): void {
    this.notificationKinds = { all: new Set(all), optional: new Set(optional) };
  }

  /** A list of kinds to mute: each must be a known kind (else 400 VALIDATION_FAILED) and an optional one (else 400 NOTIFICATION_REQUIRED). */
  checkMutes(kinds: readonly string[]): void {
    const unknown = kinds.filter((k) => !this.notificationKinds.all.has(k));
    if (unknown.length) throw Errors.validation(`mutedNotifications: unknown notification kind ${unknown.slice(0, 5).join(', ')}`);
    const required = kinds.filter((k) => !this.notificationKinds.optional.has(k));
    if (required.length) {
      throw new DomainException('NOTIFICATION_REQUIRED', `${required.slice(0, 5).join(', ')} cannot be muted: only ${[...this.notificationKinds.optional].join(', ')} can`);
    }
  }

  async create(actor: Actor, dto: CreateUserDto): Promise<UserView> {
    const id = randomUUID();
    const passwordHash = await this.hasher.hash(dto.password);
    const user = await this.uow.run(async ({ em, audit }) => {
      try {
        await em.getRepository(UserEntity).insert({ id, username: dto.username, passwordHash, roles: dto.roles, disabled: false });
      } catch (e) {
        if (isUniqueViolation(e)) throw Errors.conflict('USERNAME_TAKEN', 'a user with this username already exists');
        throw e;
      }
      await audit({ type: 'user.created', actor, subjectType: 'user', subjectId: id, details: { username: dto.username, roles: dto.roles } });
      return em.getRepository(UserEntity).findOneByOrFail({ id });
    });
    return mapUser(user);
  }

  async list(q: UserListQuery): Promise<Page<UserView>> {
    return keysetPage(this.dataSource.manager, UserEntity, { column: 'username', kind: 'string' }, q, mapUser);
  }

  /**
   * Role and disabled changes take effect on the next request: tokens are checked against the user row. What a lost role
   * (or a disabled user) was granted ends too: open checkouts of a requester who is no operator are revoked by the
   * checkout sweep (`requester_role_removed`), live one-time accounts of an ex-vendor are removed by the reaper, and an
   * ex-approver's approvals stop counting (countApprovals).
   */
  async update(actor: Actor, id: string, dto: UpdateUserDto): Promise<UserView> {
    if (typeof dto.email === 'string') this.checkEmailDomain(dto.email);
    const user = await this.uow.run(async ({ em, audit }) => {
      // role and enable changes take turns (one transaction-level lock, always first): two admins demoting each other at
      // once would otherwise each lock their own row and wait for the other's (a deadlock: 500), or both pass the check
      if (dto.roles !== undefined || dto.disabled !== undefined) await em.query(USER_ROLES_LOCK);
      const current = await findByIdOrThrow(em, UserEntity, id, 'user', true);
      assertAllowedChange(current, dto);
      const changes: Partial<UserEntity> = {};
      if (dto.roles !== undefined) changes.roles = dto.roles;
      if (dto.disabled !== undefined) changes.disabled = dto.disabled;
      if (dto.passwordLogin !== undefined) changes.passwordLogin = dto.passwordLogin;
      if (dto.email !== undefined) changes.email = dto.email;
      if (Object.keys(changes).length === 0) return current;
      const next = { ...current, ...changes };
      if (current.roles.includes('admin') && !current.disabled && (!next.roles.includes('admin') || next.disabled)) {
        await assertAnotherAdmin(em, id);
      }
      await em.getRepository(UserEntity).update({ id }, changes);
      if (changes.disabled) await em.query('UPDATE access_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL', [id]);
      await audit({
        type: 'user.updated',
        actor,
        subjectType: 'user',
        subjectId: id,
        details: {
          before: { roles: current.roles, disabled: current.disabled, ...(dto.email !== undefined ? { email: current.email } : {}), ...(dto.passwordLogin !== undefined ? { passwordLogin: current.passwordLogin } : {}) },
          after: { roles: next.roles, disabled: next.disabled, ...(dto.email !== undefined ? { email: next.email } : {}), ...(dto.passwordLogin !== undefined ? { passwordLogin: next.passwordLogin } : {}) },
        },
      });
      return em.getRepository(UserEntity).findOneByOrFail({ id });
    });
    return mapUser(user);
  }

  /** The caller's own e-mail address and muted kinds (a service token has neither). */
  async notificationSettings(actor: Actor): Promise<NotificationSettings> {
    if (actor.kind !== 'user') return { email: null, mutedNotifications: [] };
    const u = await findByIdOrThrow(this.dataSource.manager, UserEntity, actor.id, 'user');
    return { email: u.email, mutedNotifications: u.mutedNotifications };
  }

  /**
   * A person changes their own e-mail address (where approval requests for them go: the route takes a step-up code) or
   * the optional kinds they mute (checked by {@link checkMutes} before the code is used). Audited.
   */
  async updateMe(actor: Actor, dto: UpdateMeDto): Promise<NotificationSettings> {
    if (actor.kind !== 'user') throw Errors.forbidden('only a person has an e-mail address and muted notifications');
    if (dto.mutedNotifications !== undefined) this.checkMutes(dto.mutedNotifications);
    if (dto.email !== undefined) this.checkEmailDomain(dto.email);
    return this.uow.run(async ({ em, audit }) => {
      const current = await findByIdOrThrow(em, UserEntity, actor.id, 'user', true);
      const changes: Partial<UserEntity> = {};
      if (dto.email !== undefined && dto.email !== current.email) changes.email = dto.email;
      if (dto.mutedNotifications !== undefined) {
        const muted = [...dto.mutedNotifications].sort();
        if (JSON.stringify(muted) !== JSON.stringify([...current.mutedNotifications].sort())) changes.mutedNotifications = muted;
      }
      const settings = (u: Pick<UserEntity, 'email' | 'mutedNotifications'>) => ({ email: u.email, mutedNotifications: u.mutedNotifications });
      if (Object.keys(changes).length === 0) return settings(current);
      await em.getRepository(UserEntity).update({ id: actor.id }, changes);
      const next = { ...current, ...changes };
      await audit({ type: 'user.notifications_updated', actor, subjectType: 'user', subjectId: actor.id, details: { before: settings(current), after: settings(next) } });
      return settings(next);
    });
  }

  /** Usernames by id, for the views that name who asks and for whom (an id no longer known is left out). */
  async usernames(em: EntityManager, ids: readonly string[]): Promise<Map<string, string>> {
    const unique = [...new Set(ids)];
    if (unique.length === 0) return new Map();
    const rows: Array<{ id: string; username: string }> = await em.query('SELECT id, username FROM users WHERE id = ANY ($1::uuid[])', [unique]);
    return new Map(rows.map((r) => [r.id, r.username]));
  }

  /** One user; `em`: inside the caller's transaction (never a second pool connection while it holds locks). */
  async get(id: string, em: EntityManager = this.dataSource.manager): Promise<UserView> {
    return mapUser(await findByIdOrThrow(em, UserEntity, id, 'user'));
  }
}

/**
 * The break-glass user (README "Single sign-on → Break glass") stays an enabled admin who may sign in with a password;
 * a user of an identity provider gets their roles from its groups (a role set here would be undone at their next
 * sign-in: refused, so what the admin sees is what holds).
 */
function assertAllowedChange(current: UserEntity, dto: UpdateUserDto): void {
  if (current.breakGlass && (dto.disabled === true || dto.passwordLogin === false || (dto.roles !== undefined && !dto.roles.includes('admin')))) {
    throw Errors.conflict('BREAK_GLASS_USER', 'the break-glass user stays an enabled admin who may sign in with a password');
  }
  if (current.oidcProvider !== null && dto.roles !== undefined && !sameSet(dto.roles, current.roles)) {
    throw Errors.conflict('ROLES_FROM_IDP', `${current.oidcProvider} decides this user's roles (their groups there): change them there, or disable the user`);
  }
}

const sameSet = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x) => b.includes(x));

/** Role and enable changes take turns (here and in single sign-on's role sync): one transaction-level lock, taken first. */
export const USER_ROLES_LOCK = "SELECT pg_advisory_xact_lock(hashtext('pam-vault:user-roles'))";

/** Never leave the vault without an enabled admin. */
async function assertAnotherAdmin(em: EntityManager, exceptId: string): Promise<void> {
  const rows: unknown[] = await em.query(
    "SELECT id FROM users WHERE id <> $1 AND NOT disabled AND 'admin' = ANY (roles) FOR UPDATE",
    [exceptId],
  );
  if (rows.length === 0) throw Errors.conflict('LAST_ADMIN', 'this is the last enabled admin');
}

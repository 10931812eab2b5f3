import { randomBytes, randomUUID } from 'node:crypto';
import { Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { UnitOfWork } from '../database/unit-of-work';
import { DataSource, EntityManager } from 'typeorm';
import { AuditService } from '../audit/audit.service';
import { AuditQueryService } from '../audit/audit-query.service';
import { Clock } from '../common/clock';
import { DomainException, Errors } from '../common/errors';
import { APP_CONFIG, AppConfig } from '../config/config';
import { Actor } from '../common/actor';
import { LoginDto, LoginResponse, MeView } from './identity.dto';
import { MfaService } from './mfa.service';
import { PasswordHasher } from './password-hasher';
import { PasswordLoginPolicy } from './password-login';
import { hashToken, insertSession, purgeEndedTokens, SERVICE_TOKEN_PREFIX, USER_TOKEN_PREFIX } from './sessions';
import { ThrottleService } from './throttle.service';
import { UserEntity } from './user.entity';
import { mfaEnrolledSql, WebAuthnStore } from './webauthn/webauthn-store';

export { hashToken, insertSession, newToken, SERVICE_TOKEN_PREFIX, USER_TOKEN_PREFIX } from './sessions';

/** Login (bearer tokens and browser sessions) and bearer-token authentication (user login tokens and service tokens). */
@Injectable()
export class IdentityService implements OnApplicationBootstrap {
  private readonly logger = new Logger(IdentityService.name);

  constructor(
    private readonly dataSource: DataSource,
    private readonly audit: AuditService,
    private readonly uow: UnitOfWork,
    private readonly hasher: PasswordHasher,
    private readonly mfa: MfaService,
    private readonly throttle: ThrottleService,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    auditQuery: AuditQueryService,
    private readonly passwordLogin: PasswordLoginPolicy,
  ) {
    // the audit verify asks whether the vault was ever set up: a user exists (the bootstrap admin comes with its event)
    auditQuery.whenInitialised(async (em) => (await em.query('SELECT EXISTS (SELECT 1 FROM users) AS initialised'))[0].initialised as boolean);
  }

  async onApplicationBootstrap(): Promise<void> {
    await this.bootstrapAdmin();
  }

  /**
   * Password, then (once enrolled) the TOTP code. Each password attempt is counted (reserved) in the throttle
   * before argon2 runs and given back only when the whole login succeeds; failures are audited. The response
   * never says which part was wrong beyond "the code is required / invalid".
   */
  async login(dto: LoginDto, address: string | undefined): Promise<LoginResponse> {
    const { issued, actor } = await this.signIn(dto, address, 'bearer', (em, userId) => insertSession(em, userId, this.clock.now(), this.config.tokenTtlSeconds));
    return { ...issued, mfaEnrollmentRequired: !actor.mfaEnrolled };
  }

  /**
   * The one sign-in path of the bearer login and the browser session (POST /v1/auth/session): the same checks,
   * throttle and audit; `issue` creates the token or session in the transaction that re-checks the user row.
   */
  async signIn<T>(
    dto: LoginDto,
    address: string | undefined,
    via: 'bearer' | 'browser',
    issue: (em: EntityManager, userId: string) => Promise<T>,
  ): Promise<{ issued: T; actor: Actor }> {
    const user = await this.dataSource.getRepository(UserEntity).findOneBy({ username: dto.username.toLowerCase() });
    const who = { subject: user?.id ?? this.audit.hmacOf(dto.username.toLowerCase()), address, unknownUser: !user };
    const attempt = await this.throttle.reserve('pw', who);
    const ok = user && !user.disabled ? await this.hasher.verify(user.passwordHash, dto.password) : await this.hasher.burn(dto.password);
    if (!user || !ok) {
      await this.audit.recordAlone({
        type: 'auth.login',
        actor: null,
        subjectType: 'user',
        subjectId: user?.id ?? null,
        outcome: 'failure',
        // the typed username may be a mistyped password: keep only its keyed HMAC
        details: { usernameHmac: this.audit.hmacOf(dto.username), address: address ?? null, reason: user?.disabled ? 'disabled' : 'bad_credentials' },
      });
      throw Errors.unauthenticated('invalid username or password');
    }
    await this.passwordLogin.admit(user, address);
    const actor: Actor = { ...toActor(user), mfaEnrolled: (await this.mfa.methodsOf(user.id)).length > 0 };
    // the password attempt stays counted while a factor is missing: "code required" tells that the password was right
    const factor = await this.mfa.signInFactor(actor, { code: dto.code, assertion: dto.assertion }, address, attempt).catch(async (e: unknown) => {
      // the password was right and a replayed code is no guess: neither counts
      if (e instanceof DomainException && e.code === 'MFA_REPLAYED') await this.throttle.release(attempt);
      throw e;
    });
    const issued = await this.uow.run(async ({ em, audit }) => {
      // decided against the row as it is now: an enrollment (which ends every earlier token) or a reset committed
      // since the check above must not be followed by a token issued on the old state
      const [now]: Array<{ enrolled: boolean; disabled: boolean }> = await em.query(
        `SELECT ${mfaEnrolledSql('u')} AS enrolled, disabled FROM users u WHERE id = $1 FOR SHARE OF u`,
        [user.id],
      );
      if (!now || now.disabled) throw Errors.unauthenticated('invalid username or password');
      if (now.enrolled !== actor.mfaEnrolled) {
        throw new DomainException('MFA_REQUIRED', 'MFA enrollment changed during this login: log in again (with the current TOTP code once enrolled)');
      }
      // a key flagged as cloned since it was checked (its copy racing this sign-in): no token comes out of it
      if (factor?.credentialId && !(await WebAuthnStore.stillUsable(em, factor.credentialId))) {
        throw new DomainException('MFA_INVALID', 'this security key was flagged as cloned during the sign-in');
      }
      const made = await issue(em, user.id);
      const details = { address: address ?? null, mfa: factor?.method ?? null, authenticatorId: factor?.credentialId ?? null, ...(via === 'browser' ? { session: 'browser' } : {}) };
      await audit({ type: 'auth.login', actor, subjectType: 'user', subjectId: user.id, details });
      return made;
    });
    await this.throttle.release(attempt);
    return { issued, actor };
  }

  /** Resolves a bearer token to its actor: unknown, expired, revoked, or disabled-user tokens are refused. */
  async authenticate(token: string): Promise<Actor> {
    if (typeof token !== 'string' || token.length > 100) throw Errors.unauthenticated('invalid or expired token');
    const now = this.clock.now();
    if (token.startsWith(USER_TOKEN_PREFIX)) {
      const rows: UserRow[] = await this.dataSource.query(
        `SELECT u.id, u.username, u.roles, ${mfaEnrolledSql('u')} AS "mfaEnrolled" FROM access_tokens t JOIN users u ON u.id = t.user_id
          WHERE t.token_hash = $1 AND t.kind = 'bearer' AND t.revoked_at IS NULL AND t.expires_at > $2 AND NOT u.disabled`,
        [hashToken(token), now],
      );
      if (rows.length === 1) return { id: rows[0].id, kind: 'user', name: rows[0].username, roles: rows[0].roles, mfaEnrolled: rows[0].mfaEnrolled };
    } else if (token.startsWith(SERVICE_TOKEN_PREFIX)) {
      const rows: Array<{ id: string; name: string; roles: Actor['roles'] }> = await this.dataSource.query(
        `SELECT id, name, roles FROM service_tokens
          WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)`,
        [hashToken(token), now],
      );
      if (rows.length === 1) return { id: rows[0].id, kind: 'service', name: rows[0].name, roles: rows[0].roles, mfaEnrolled: false };
    }
    throw Errors.unauthenticated('invalid or expired token');
  }

  /** When this instance last purged ended tokens (the sweep that calls it runs every few seconds; once an hour does). */
  private lastPurge = -Infinity;

  /** The rotation sweep's housekeeping step: ended tokens and sessions, and long-expired WebAuthn challenges, go (at most once an hour per instance). */
  async purgeEndedTokens(): Promise<number> {
    const now = this.clock.now();
    if (now.getTime() - this.lastPurge < 3600 * 1000) return 0;
    this.lastPurge = now.getTime();
    await WebAuthnStore.purgeExpired(this.dataSource.manager, now);
    return purgeEndedTokens(this.dataSource.manager, now, this.config.portal.idleSeconds);
  }

  /** Who the caller is, and their second factors (the controller adds their notification settings). */
  async me(actor: Actor): Promise<Omit<MeView, 'email' | 'mutedNotifications'>> {
    const mfaMethods = actor.kind === 'user' ? await this.mfa.methodsOf(actor.id) : [];
    return { id: actor.id, username: actor.name, roles: actor.roles, mfaEnrolled: actor.mfaEnrolled, mfaMethods, kind: actor.kind };
  }

  /**
   * First start: create `admin` with the configured password, or a generated one printed once to the
   * terminal. Several instances may start together: only the one whose insert wins prints.
   */
  async bootstrapAdmin(): Promise<void> {
    const exists = await this.dataSource.getRepository(UserEntity).existsBy({ username: 'admin' });
    if (exists) return;
    const generated = this.config.bootstrapAdminPassword === undefined;
    const password = this.config.bootstrapAdminPassword ?? randomBytes(18).toString('base64url');
    const passwordHash = await this.hasher.hash(password);
    const id = randomUUID();
    const created = await this.uow.run(async ({ em, audit }) => {
      const res: unknown[] = await em.query(
        `INSERT INTO users (id, username, password_hash, roles, break_glass) VALUES ($1, 'admin', $2, '{admin}', true)
         ON CONFLICT (username) DO NOTHING RETURNING id`,
        [id, passwordHash],
      );
      if (res.length === 0) return false;
      await audit({ type: 'user.bootstrapped', actor: null, subjectType: 'user', subjectId: id, details: { username: 'admin', roles: ['admin'], generatedPassword: generated } });
      return true;
    });
    if (!created) return;
    this.logger.warn({ username: 'admin', generatedPassword: generated }, 'created the bootstrap admin user');
    if (generated) {
      // Deliberately outside the logger: shown once on the operator's terminal, never in log storage.
      process.stderr.write(
        `\n  Bootstrap admin created. Username: admin  Password: ${password}\n  This password is shown only once.\n\n`,
      );
    }
  }
}

interface UserRow {
  id: string;
  username: string;
  roles: Actor['roles'];
  mfaEnrolled: boolean;
}

export function toActor(user: UserEntity): Actor {
  return { id: user.id, kind: 'user', name: user.username, roles: user.roles, mfaEnrolled: user.mfaSecret !== null };
}

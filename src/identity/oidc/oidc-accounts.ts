import { randomBytes, randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import type { IdTokenClaims } from 'openid-client';
import { EntityManager } from 'typeorm';
import { AuditService } from '../../audit/audit.service';
import { Actor, Role, ROLES } from '../../common/actor';
import { DomainException } from '../../common/errors';
import type { ErrorCode } from '../../common/error-codes';
import { Clock } from '../../common/clock';
import { SecretBoxService } from '../../crypto/secret-box.service';
import { Tx, UnitOfWork } from '../../database/unit-of-work';
import { PasswordHasher } from '../password-hasher';
import { isEmailAddress, USERNAME_PATTERN } from '../users.dto';
import { UsersService } from '../users.service';
import { OidcProviderEntity } from './oidc-provider.entity';
import { oidcUsers, OidcUserRow, providers, refreshTokens } from './oidc-store';
import { USER_ROLES_LOCK } from '../users.service';

/** Why a verified provider account does not get in (each is a stable error code, and the sign-in page's `?error=`). */
export type OidcRefusal = Extract<ErrorCode, 'OIDC_NO_ROLES' | 'OIDC_USERNAME_TAKEN' | 'OIDC_USERNAME_INVALID' | 'OIDC_ACCOUNT_DISABLED' | 'OIDC_PROVIDER_UNAVAILABLE'>;

/** The vault roles of a provider account: the union of what its groups map to (in the vault's role order). */
export function rolesOf(p: Pick<OidcProviderEntity, 'groupRoles' | 'groupsClaim'>, claims: Record<string, unknown>): Role[] {
  const groups = groupsOf(claims, p.groupsClaim);
  const granted = new Set<Role>();
  for (const g of groups) for (const r of Object.hasOwn(p.groupRoles, g) ? p.groupRoles[g] : []) granted.add(r);
  return ROLES.filter((r) => granted.has(r));
}

/** A `preferred_username` the vault takes (then lower-cased): ASCII only, the shape of a vault username in either case. */
const PROVIDER_USERNAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{1,63}$/;

/** OIDC Core §2: `sub` is at most 255 ASCII characters; none of them a control character (PostgreSQL refuses NUL). */
export const isSubject = (v: unknown): v is string => typeof v === 'string' && /^[\x20-\x7e]{1,255}$/.test(v);

/** The provider's own MFA claims, for the audit only: printable, short, never trusted. */
export function idpMfaOf(claims: Record<string, unknown>): { amr: string[] | null; acr: string | null } {
  const clean = (v: unknown, max: number) => (typeof v === 'string' ? v.replace(/[^\x20-\x7e]/g, '').slice(0, max) : undefined);
  const amr = Array.isArray(claims.amr) ? claims.amr.slice(0, 10).map((a) => clean(a, 64)).filter((a): a is string => a !== undefined) : null;
  return { amr, acr: clean(claims.acr, 200) ?? null };
}

/** The groups claim (a dotted path reaches a nested claim: `realm_access.roles`): an array of strings, or one string. */
export function groupsOf(claims: Record<string, unknown>, claim: string): string[] {
  let v: unknown = Object.hasOwn(claims, claim) ? claims[claim] : undefined;
  if (v === undefined && claim.includes('.')) {
    v = claim.split('.').reduce<unknown>((o, k) => (o !== null && typeof o === 'object' && Object.hasOwn(o, k) ? (o as Record<string, unknown>)[k] : undefined), claims);
  }
  if (typeof v === 'string') return [v];
  return Array.isArray(v) ? v.filter((g): g is string => typeof g === 'string') : [];
}

/**
 * The vault user of a verified provider account, at each sign-in (browser or device): found by (provider, subject) —
 * never by name or e-mail —, created at the first sign-in (username from `preferred_username`, refused when a local
 * user or another provider's user holds it), its roles set from the groups every time. No mapped role: an existing
 * user's roles become `{}` and every token and session of theirs ends (committed), and the sign-in is refused.
 */
@Injectable()
export class OidcAccounts {
  constructor(
    private readonly uow: UnitOfWork,
    private readonly audit: AuditService,
    private readonly hasher: PasswordHasher,
    private readonly users: UsersService,
    private readonly secretBox: SecretBoxService,
    private readonly clock: Clock,
  ) {}

  /**
   * `issue` makes the session or token in the transaction that decided; `keep`: the provider's refresh token, kept
   * (encrypted) with what was issued (found by `tokenHashOf`) for the re-check sweep.
   */
  async signIn<T>(
    p: OidcProviderEntity,
    claims: IdTokenClaims,
    via: 'browser' | 'bearer',
    address: string | undefined,
    issue: (em: EntityManager, userId: string) => Promise<T>,
    keep?: { refreshToken: string | undefined; tokenHashOf: (issued: T) => Buffer },
  ): Promise<{ issued: T; actor: Actor }> {
    const roles = rolesOf(p, claims);
    if (!isSubject(claims.sub)) {
      // a broken or hostile provider: nothing of its answer is stored (PostgreSQL refuses a NUL)
      await this.auditRefusal({ provider: p.name, address, session: via, code: 'OIDC_TOKEN_INVALID', detail: 'bad_claims: sub' });
      throw new DomainException('OIDC_TOKEN_INVALID', "the identity provider's ID token has an unusable subject");
    }
    const base = { method: 'oidc', provider: p.name, subject: claims.sub, address: address ?? null, session: via, idpMfa: idpMfaOf(claims) };
    type Refused = { refused: OidcRefusal; userId: string | null; username?: string; committed?: true };
    const outcome = await this.uow.run(async ({ em, audit }): Promise<Refused | { refused?: undefined; issued: T; actor: Actor }> => {
      // the provider disabled while its answer was awaited (a compromised one is slow on purpose): nothing is issued;
      // the share lock makes a disable that commits later wait for this sign-in, and then end what it issued
      if (!(await providers.stillEnabled(em, p.name))) return { refused: 'OIDC_PROVIDER_UNAVAILABLE', userId: null };
      let user = await oidcUsers.bySubject(em, p.name, claims.sub);
      let created = false;
      if (!user) {
        if (roles.length === 0) return { refused: 'OIDC_NO_ROLES', userId: null };
        // checked as sent, before folding: toLowerCase() turns some non-ASCII letters into ASCII ones (U+212A KELVIN SIGN → k)
        const raw = claims.preferred_username;
        const username = typeof raw === 'string' && PROVIDER_USERNAME.test(raw) ? raw.toLowerCase() : '';
        if (!USERNAME_PATTERN.test(username)) return { refused: 'OIDC_USERNAME_INVALID', userId: null };
        const id = randomUUID();
        // a new user's password is one nobody knows: the account is single sign-on only (password_login false as well)
        const passwordHash = await this.hasher.hash(randomBytes(32).toString('base64url'));
        if (!(await oidcUsers.create(em, { id, username, passwordHash, roles, email: this.emailOf(claims), provider: p.name, subject: claims.sub }))) {
          // the name is someone else's — unless the same account was created by a concurrent sign-in
          user = await oidcUsers.bySubject(em, p.name, claims.sub);
          if (!user) return { refused: 'OIDC_USERNAME_TAKEN', userId: null, username };
        } else {
          created = true;
          await audit({ type: 'user.created', actor: null, subjectType: 'user', subjectId: id, details: { username, roles, provider: p.name, subject: claims.sub, via: 'oidc' } });
          user = { id, username, roles, disabled: false, mfaEnrolled: false };
        }
      }
      if (user.disabled) return { refused: 'OIDC_ACCOUNT_DISABLED', userId: user.id };
      const granted = created || sameRoles(user.roles, roles) ? roles : (await syncRoles({ em, audit }, p.name, user.id, roles, 'sign_in')).roles;
      if (granted.length === 0) {
        // no access (removed now, or already): whatever the user still holds ends, nothing new is issued
        await oidcUsers.endSessions(em, user.id);
        await audit({ type: 'auth.login', actor: null, subjectType: 'user', subjectId: user.id, outcome: 'failure', details: { ...base, reason: 'no_roles', sessionsEnded: true } });
        return { refused: 'OIDC_NO_ROLES', userId: user.id, committed: true as const };
      }
      // decided against the row as it is now, as the password sign-in does: a disable committed since the read above is
      // seen here, and one that comes later waits for this transaction and then ends what it issued
      if (!created && (await oidcUsers.disabledNow(em, user.id))) return { refused: 'OIDC_ACCOUNT_DISABLED', userId: user.id };
      const actor: Actor = { id: user.id, kind: 'user', name: user.username, roles: granted, mfaEnrolled: user.mfaEnrolled };
      const issued = await issue(em, user.id);
      if (keep?.refreshToken !== undefined) {
        const refreshToken = keep.refreshToken;
        await refreshTokens.attach(em, keep.tokenHashOf(issued), p.name, this.clock.now(), (rowId) => this.secretBox.encrypt(refreshRef(rowId), refreshToken));
      }
      await audit({ type: 'auth.login', actor, subjectType: 'user', subjectId: user.id, details: { ...base, mfa: null } });
      return { issued, actor };
    });
    if (outcome.refused !== undefined) {
      if (!outcome.committed) {
        await this.audit.recordAlone({
          type: 'auth.login',
          actor: null,
          subjectType: 'user',
          subjectId: outcome.userId,
          outcome: 'failure',
          details: { ...base, reason: outcome.refused, ...(outcome.username !== undefined ? { username: outcome.username } : {}) },
        });
      }
      throw new DomainException(outcome.refused, REFUSALS[outcome.refused]);
    }
    return { issued: outcome.issued, actor: outcome.actor };
  }

  /** A sign-in refused before any user is known (the answer did not verify, was not this browser's, or is unusable). */
  async auditRefusal(r: { provider: string | null; address: string | undefined; session: 'browser' | 'bearer'; code: string; detail: string }): Promise<void> {
    await this.audit.recordAlone({
      type: 'auth.login',
      actor: null,
      subjectType: 'user',
      subjectId: null,
      outcome: 'failure',
      details: { method: 'oidc', provider: r.provider, address: r.address ?? null, session: r.session, reason: r.code, detail: r.detail },
    });
  }

  /** The provider's address for the user's notifications, when verified, well-formed and in an allowed domain. */
  private emailOf(claims: IdTokenClaims): string | null {
    if (claims.email_verified === false || !isEmailAddress(claims.email)) return null;
    try {
      this.users.checkEmailDomain(claims.email);
      return claims.email;
    } catch {
      return null;
    }
  }
}

export type { OidcUserRow };

/** Where a kept refresh token is bound (a ciphertext moved to another session fails to decrypt). */
export const refreshRef = (rowId: string) => ({ table: 'access_tokens', rowId, column: 'oidc_refresh' });

/**
 * Sets a bound user's roles from what the provider says now (audited `user.roles_synced` when they change), under the
 * same user-roles lock as the admin API, and never removing the last enabled admin: that user keeps `admin` (audited
 * `kept: 'LAST_ADMIN'`). No role left: every token and session of the user ends too (`removed`).
 */
export async function syncRoles(
  tx: Pick<Tx, 'em' | 'audit'>,
  provider: string,
  userId: string,
  wanted: Role[],
  when: 'sign_in' | 'recheck',
): Promise<{ roles: Role[]; removed: boolean }> {
  await tx.em.query(USER_ROLES_LOCK);
  const current = await oidcUsers.lockStanding(tx.em, userId);
  let roles = wanted;
  const lastAdmin = current.roles.includes('admin') && !current.disabled && !wanted.includes('admin') && !(await oidcUsers.anotherAdmin(tx.em, userId));
  if (lastAdmin) roles = ROLES.filter((r) => r === 'admin' || wanted.includes(r));
  if (!sameRoles(current.roles, roles) || lastAdmin) {
    if (!sameRoles(current.roles, roles)) await oidcUsers.setRoles(tx.em, userId, roles);
    const kept = lastAdmin ? { kept: 'LAST_ADMIN', wanted } : {};
    await tx.audit({ type: 'user.roles_synced', actor: null, subjectType: 'user', subjectId: userId, details: { provider, before: current.roles, after: roles, when, ...kept } });
  }
  if (roles.length > 0) return { roles, removed: false };
  // access removed at the identity provider: nothing the user holds here goes on
  await oidcUsers.endSessions(tx.em, userId);
  return { roles, removed: true };
}

export const sameRoles = (a: readonly Role[], b: readonly Role[]) => a.length === b.length && a.every((r) => b.includes(r));

const REFUSALS: Record<OidcRefusal, string> = {
  OIDC_NO_ROLES: 'none of your groups at the identity provider gives access to the vault',
  OIDC_USERNAME_TAKEN: "the identity provider's username is taken by another vault user",
  OIDC_USERNAME_INVALID: 'the identity provider sent no usable preferred_username',
  OIDC_ACCOUNT_DISABLED: 'this vault user is disabled',
  OIDC_PROVIDER_UNAVAILABLE: 'the identity provider was disabled during this sign-in',
};

import { timingSafeEqual } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { UnitOfWork } from '../database/unit-of-work';
import { Clock } from '../common/clock';
import { DomainException, Errors } from '../common/errors';
import { APP_CONFIG, AppConfig } from '../config/config';
import { Actor } from '../common/actor';
import { LoginDto, MeView } from './identity.dto';
import { IdentityService } from './identity.service';
import { MfaService } from './mfa.service';
import { BROWSER_SESSION_PREFIX, csrfTokenOf, hashToken, insertBrowserSession, IssuedBrowserSession } from './sessions';
import { UsersService } from './users.service';
import { mfaEnrolledSql } from './webauthn/webauthn-store';

/** What a request authenticated by the session cookie carries besides its actor (the guard puts it on the request). */
export interface BrowserSessionRef {
  id: string;
  /** The cookie's value (to answer the CSRF token again); never logged or answered. */
  token: string;
  expiresAt: Date;
}

export const BROWSER_SESSION = Symbol('vault:browserSession');
export type WithBrowserSession = { [BROWSER_SESSION]?: BrowserSessionRef };

/** The browser session that authenticated this request, or undefined (a bearer token did, or nothing). */
export const browserSessionOf = (req: object): BrowserSessionRef | undefined => (req as WithBrowserSession)[BROWSER_SESSION];

/** The body of POST and GET /v1/auth/session. */
export interface BrowserSessionView {
  /** Send it as `X-CSRF-Token` with every request that changes something; keep it in memory only. */
  csrfToken: string;
  /** The absolute end of the session. */
  expiresAt: string;
  idleTimeoutSeconds: number;
  mfaEnrollmentRequired: boolean;
  user: MeView;
}

/** What the request says about itself, for the CSRF check and the idle clock. */
export interface SessionRequest {
  /** Not GET/HEAD/OPTIONS: needs the CSRF token. */
  changesState: boolean;
  /** Sent by a page of another site (Fetch Metadata). */
  crossSite: boolean;
  csrfHeader: unknown;
  /** `X-Session-Activity: passive` (the portal's background polling): authenticates without counting as activity. */
  passive: boolean;
}

/** Within this long of the last recorded use a request does not write last_seen_at again: the idle clock is this exact. */
const TOUCH_EVERY_MS = 5_000;

/**
 * Browser sessions of the web portal (README "Web portal → Security model"): sign-in through the one login path,
 * authentication of the cookie with its CSRF check and timeouts, sign-out, and a fresh session at TOTP enrollment.
 */
@Injectable()
export class BrowserSessionsService {
  constructor(
    private readonly dataSource: DataSource,
    private readonly uow: UnitOfWork,
    private readonly identity: IdentityService,
    private readonly users: UsersService,
    private readonly mfa: MfaService,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /**
   * Password (and TOTP once enrolled) as for POST /v1/auth/login — same throttle and audit — then a new session.
   * A session the browser presented is ended in the same transaction: a sign-in never continues an existing id.
   */
  async signIn(dto: LoginDto, address: string | undefined, presented: string | undefined): Promise<{ token: string; view: BrowserSessionView }> {
    const { issued, actor } = await this.identity.signIn(dto, address, 'browser', async (em, userId) => {
      if (presented !== undefined && isSessionToken(presented)) {
        await em.query(`UPDATE access_tokens SET revoked_at = now() WHERE token_hash = $1 AND kind = 'browser' AND revoked_at IS NULL`, [hashToken(presented)]);
      }
      return insertBrowserSession(em, userId, this.clock.now(), this.config.portal.sessionSeconds);
    });
    return { token: issued.token, view: await this.view(actor, issued) };
  }

  /**
   * The cookie's session → its actor. Refused (401): unknown, revoked (sign-out, disabled user, MFA reset or
   * enrollment), past its absolute end or idle too long, or a disabled user. A request another site's page made (Fetch
   * Metadata) is refused whatever its method, and one that changes something must carry the session's CSRF token
   * (403 CSRF_FAILED, before anything is written).
   * Roles and enrollment are read from the user row on every request.
   */
  async authenticate(token: string, req: SessionRequest): Promise<{ actor: Actor; session: BrowserSessionRef }> {
    if (!isSessionToken(token)) throw Errors.unauthenticated('invalid or expired session');
    const now = this.clock.now();
    const rows: SessionRow[] = await this.dataSource.query(
      `SELECT t.id, t.csrf_hash AS "csrfHash", t.last_seen_at AS "lastSeenAt", t.expires_at AS "expiresAt",
              u.id AS "userId", u.username, u.roles, ${mfaEnrolledSql('u')} AS "mfaEnrolled"
         FROM access_tokens t JOIN users u ON u.id = t.user_id
        WHERE t.token_hash = $1 AND t.kind = 'browser' AND t.revoked_at IS NULL AND t.expires_at > $2 AND t.last_seen_at > $3 AND NOT u.disabled`,
      [hashToken(token), now, new Date(now.getTime() - this.config.portal.idleSeconds * 1000)],
    );
    if (rows.length !== 1) throw Errors.unauthenticated('invalid or expired session');
    const row = rows[0];
    // no page of another site (a sibling subdomain's <img> carries even a SameSite=Strict cookie) gets anything by
    // cookie, not even a GET (GET /v1/audit-events/verify seals the chain); the cookie stays (no forced sign-out)
    if (req.crossSite) throw new DomainException('CSRF_FAILED', "requests from another site's page are refused");
    if (req.changesState && !csrfMatches(req.csrfHeader, row.csrfHash)) {
      throw new DomainException('CSRF_FAILED', "send the session's CSRF token in X-CSRF-Token (GET /v1/auth/session answers it)");
    }
    if (!req.passive && now.getTime() - row.lastSeenAt.getTime() >= TOUCH_EVERY_MS) {
      await this.dataSource.query('UPDATE access_tokens SET last_seen_at = $2 WHERE id = $1 AND revoked_at IS NULL AND last_seen_at < $2', [row.id, now]);
    }
    const actor: Actor = { id: row.userId, kind: 'user', name: row.username, roles: row.roles, mfaEnrolled: row.mfaEnrolled };
    return { actor, session: { id: row.id, token, expiresAt: row.expiresAt } };
  }

  /** GET /v1/auth/session: a reloaded page gets its CSRF token again. */
  current(actor: Actor, session: BrowserSessionRef): Promise<BrowserSessionView> {
    return this.view(actor, { csrfToken: csrfTokenOf(session.token), expiresAt: session.expiresAt.toISOString() });
  }

  /** DELETE /v1/auth/session: the session ends server-side (its cookie is then worth nothing, wherever a copy went). */
  async signOut(actor: Actor, session: BrowserSessionRef, address: string | undefined): Promise<void> {
    await this.uow.run(async ({ em, audit }) => {
      await em.query(`UPDATE access_tokens SET revoked_at = now() WHERE id = $1 AND kind = 'browser' AND revoked_at IS NULL`, [session.id]);
      await audit({ type: 'auth.logout', actor, subjectType: 'user', subjectId: actor.id, details: { address: address ?? null, session: 'browser' } });
    });
  }

  /**
   * TOTP enrollment confirmed from the portal: every earlier token and session of the user ends (as for a bearer
   * client) and a new browser session replaces the one that proved only the password.
   */
  async confirmEnrollment(actor: Actor, code: string, address: string | undefined): Promise<{ token: string; view: BrowserSessionView & { mfaEnrolled: true } }> {
    const issued = await this.mfa.confirmEnrollment(actor, code, address, (em) => insertBrowserSession(em, actor.id, this.clock.now(), this.config.portal.sessionSeconds));
    const view = await this.view({ ...actor, mfaEnrolled: true }, issued);
    return { token: issued.token, view: { mfaEnrolled: true, ...view } };
  }

  /** The body that goes with a session: its CSRF token, its end and who is signed in (also for a session made elsewhere). */
  viewOf(actor: Actor, issued: Pick<IssuedBrowserSession, 'csrfToken' | 'expiresAt'>): Promise<BrowserSessionView> {
    return this.view(actor, issued);
  }

  private async view(actor: Actor, issued: Pick<IssuedBrowserSession, 'csrfToken' | 'expiresAt'>): Promise<BrowserSessionView> {
    return {
      csrfToken: issued.csrfToken,
      expiresAt: issued.expiresAt,
      idleTimeoutSeconds: this.config.portal.idleSeconds,
      mfaEnrollmentRequired: !actor.mfaEnrolled,
      user: { ...(await this.identity.me(actor)), ...(await this.users.notificationSettings(actor)) },
    };
  }
}

interface SessionRow {
  id: string;
  csrfHash: Buffer;
  lastSeenAt: Date;
  expiresAt: Date;
  userId: string;
  username: string;
  roles: Actor['roles'];
  mfaEnrolled: boolean;
}

/** Only a value shaped like a session this server issues is looked up (a bearer token in the cookie is not one). */
const isSessionToken = (token: string) => token.startsWith(BROWSER_SESSION_PREFIX) && token.length <= 100;

/** Constant-time: the digests of the sent and the stored token are compared (equal lengths whatever was sent). */
function csrfMatches(header: unknown, stored: Buffer): boolean {
  if (typeof header !== 'string' || header.length === 0 || header.length > 200) return false;
  return timingSafeEqual(hashToken(header), stored);
}

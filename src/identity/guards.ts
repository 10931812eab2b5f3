import { CanActivate, ExecutionContext, Inject, Injectable, Logger } from '@nestjs/common';
import { normalizeAddress } from '../common/client-address';
import { screenInput } from '../common/validation';
import type { Request, Response } from 'express';
import { Reflector } from '@nestjs/core';
import { AuthGuard } from '@nestjs/passport';
import type { Actor, Role } from '../common/actor';
import { MfaService, StepUpProof } from './mfa.service';
import { actionDigest } from './webauthn/action-digest';
import { MAX_ASSERTION_CHARS } from './webauthn/webauthn.service';
import { ALLOW_WITHOUT_MFA, IS_PUBLIC, MFA_ADDS_FACTOR, MFA_AFTER_VALIDATION, MFA_STEP_UP, REQUIRES_MFA, ROLES_KEY, StepUp, StepUpRequest } from '../common/auth.decorators';
import { DomainException, Errors } from '../common/errors';
import { APP_CONFIG, AppConfig } from '../config/config';
import { BROWSER_SESSION, BrowserSessionsService, WithBrowserSession } from './browser-sessions';
import { clearSessionCookie, fromAnotherSite, readSessionCookie, SAFE_METHODS } from './session-cookie';

const isPublic = (reflector: Reflector, ctx: ExecutionContext) =>
  reflector.getAllAndOverride<boolean>(IS_PUBLIC, [ctx.getHandler(), ctx.getClass()]) === true;

/**
 * Global: every route needs a valid bearer token or browser session unless it is @Public. An `Authorization` header
 * wins (an API client never depends on a cookie it happens to carry); otherwise the portal's session cookie is
 * checked, with its CSRF token on requests that change something (BrowserSessionsService.authenticate). A cookie that
 * no longer opens a session is cleared in the refusal.
 */
@Injectable()
export class AuthenticationGuard extends AuthGuard('bearer') {
  private readonly logger = new Logger('AuthenticationGuard');

  constructor(
    private readonly reflector: Reflector,
    private readonly sessions: BrowserSessionsService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    super();
  }

  override async canActivate(ctx: ExecutionContext): Promise<boolean> {
    if (isPublic(this.reflector, ctx)) return true;
    const req = ctx.switchToHttp().getRequest<Request & { user?: Actor } & WithBrowserSession>();
    const cookie = req.headers.authorization === undefined ? readSessionCookie(req, this.config) : { kind: 'none' as const };
    if (cookie.kind === 'none') return (await super.canActivate(ctx)) as boolean;
    const res = ctx.switchToHttp().getResponse<Response>();
    try {
      if (cookie.kind === 'many') throw Errors.unauthenticated('more than one session cookie: sign in again');
      const { actor, session } = await this.sessions.authenticate(cookie.value, {
        changesState: !SAFE_METHODS.has(req.method),
        crossSite: fromAnotherSite(req),
        csrfHeader: req.headers['x-csrf-token'],
        passive: req.headers['x-session-activity'] === 'passive',
      });
      req.user = actor;
      req[BROWSER_SESSION] = session;
      return true;
    } catch (e) {
      if (e instanceof DomainException && e.code === 'UNAUTHENTICATED') clearSessionCookie(req, res, this.config);
      if (e instanceof DomainException && e.code === 'CSRF_FAILED') this.logCsrfRefusal(ctx, req);
      throw e;
    }
  }

  /** A refused CSRF check is worth a warning (a forged request, or a broken client): the route and why, never a token. */
  private logCsrfRefusal(ctx: ExecutionContext, req: Request): void {
    const header = req.headers['x-csrf-token'];
    const reason = fromAnotherSite(req) ? 'another_site' : header === undefined ? 'missing_token' : 'wrong_token';
    this.logger.warn({ route: `${ctx.getClass().name}.${ctx.getHandler().name}`, method: req.method, reason }, 'CSRF check refused a request by session cookie');
  }

  override handleRequest<T>(err: unknown, user: T): T {
    if (err) throw err;
    if (!user) throw Errors.unauthenticated();
    return user;
  }
}

/** Global: the caller must hold one of the route's roles. Fails closed for routes that declare none. */
@Injectable()
export class RolesGuard implements CanActivate {
  private readonly logger = new Logger(RolesGuard.name);

  constructor(private readonly reflector: Reflector) {}

  canActivate(ctx: ExecutionContext): boolean {
    if (isPublic(this.reflector, ctx)) return true;
    const allowed = this.reflector.getAllAndOverride<Role[] | undefined>(ROLES_KEY, [ctx.getHandler(), ctx.getClass()]);
    if (!allowed) {
      this.logger.error({ route: `${ctx.getClass().name}.${ctx.getHandler().name}` }, 'route declares no roles; refused');
      throw Errors.forbidden();
    }
    const actor = ctx.switchToHttp().getRequest<{ user?: Actor }>().user;
    if (!actor || !actor.roles.some((r) => allowed.includes(r))) throw Errors.forbidden();
    return true;
  }
}

/**
 * Global, after roles: a user without a second factor may only enroll (routes marked @AllowWithoutMfa), and a route
 * marked @RequiresMfa needs a fresh TOTP code in `X-MFA-Code` or a security key's assertion in `X-MFA-Assertion`
 * (base64url of the AuthenticationResponseJSON, over a challenge from POST /v1/me/webauthn/step-up bound to this
 * request: its method, path and body as received, before validation). The guard refuses a missing or malformed proof
 * (no state changes); the proof itself is verified and burned once the request has passed validation, just before
 * the handler runs (see RequiresMfa), so a request refused by the pipes (400) burns nothing.
 */
@Injectable()
export class MfaGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly mfa: MfaService,
  ) {}

  async canActivate(ctx: ExecutionContext): Promise<boolean> {
    if (isPublic(this.reflector, ctx)) return true;
    const req = ctx.switchToHttp().getRequest<Request & { user: Actor } & StepUpRequest>();
    const actor = req.user;
    const flag = (key: string) => this.reflector.getAllAndOverride<boolean>(key, [ctx.getHandler(), ctx.getClass()]) === true;
    if (actor.kind === 'user' && !actor.mfaEnrolled && !flag(ALLOW_WITHOUT_MFA)) {
      throw new DomainException('MFA_ENROLLMENT_REQUIRED', 'enroll a second factor first: POST /v1/me/mfa/totp (then /confirm), or a security key at POST /v1/me/webauthn/registrations');
    }
    if (!flag(REQUIRES_MFA)) return true;
    if (actor.kind !== 'user') throw Errors.forbidden('this action needs a person with MFA; service tokens cannot perform it');
    const adds = Reflect.getMetadata(MFA_ADDS_FACTOR, ctx.getHandler()) as 'totp' | 'webauthn' | undefined;
    if (adds && !(await this.addingNeedsStepUp(actor, adds))) {
      req[MFA_STEP_UP] = (then) => then();
      return true;
    }
    const proof = proofOf(req);
    const address = normalizeAddress(req.ip);
    const action = `${req.method} ${req.route?.path ?? ''}`;
    const stepUp: StepUp = (then, inTransaction) =>
      inTransaction ? this.mfa.stepUp(actor, proof, address, action, then) : this.mfa.verifyThen(actor, proof, address, action, then);
    if (Reflect.getMetadata(MFA_AFTER_VALIDATION, ctx.getHandler()) === true) {
      req[MFA_STEP_UP] = stepUp;
      return true;
    }
    await this.mfa.verify(actor, proof, address, action);
    return true;
  }

  /** A first factor needs no step-up; nor does a TOTP enrollment by a user who has TOTP (refused with 409 anyway). */
  private async addingNeedsStepUp(actor: Actor, adds: 'totp' | 'webauthn'): Promise<boolean> {
    if (!actor.mfaEnrolled) return false;
    return !(adds === 'totp' && (await this.mfa.methodsOf(actor.id)).includes('totp'));
  }
}

/** The step-up proof the request carries: exactly one of a 6-digit code and an assertion bound to this request. */
function proofOf(req: Request): StepUpProof {
  const code = req.headers['x-mfa-code'];
  const assertion = req.headers['x-mfa-assertion'];
  if (code !== undefined && assertion !== undefined) throw new DomainException('MFA_INVALID', 'send either X-MFA-Code or X-MFA-Assertion, not both');
  if (assertion !== undefined) {
    const parsed = typeof assertion === 'string' && assertion.length <= MAX_ASSERTION_CHARS && /^[A-Za-z0-9_-]+$/.test(assertion) ? parseJson(Buffer.from(assertion, 'base64url').toString('utf8')) : undefined;
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new DomainException('MFA_INVALID', 'X-MFA-Assertion must be the base64url of the JSON startAuthentication answered');
    }
    // bound to the request as received: method, path (no query) and the body as parsed, before validation — screened
    // first as the validation pipe will (depth, text), so a hostile body is a 400 here too, never a stack overflow
    screenInput(req.body);
    const binding = actionDigest({ method: req.method, path: req.path, body: (req.body as unknown) ?? {} });
    return { method: 'webauthn', assertion: parsed, purpose: 'step_up', binding };
  }
  if (code === undefined) throw new DomainException('MFA_REQUIRED', 'send the current TOTP code in the X-MFA-Code header, or a security key assertion in X-MFA-Assertion');
  if (typeof code !== 'string' || !/^\d{6}$/.test(code)) throw new DomainException('MFA_INVALID', 'X-MFA-Code must be 6 digits');
  return { method: 'totp', code };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

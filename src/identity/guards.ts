import { CanActivate, ExecutionContext, Injectable, Logger } from '@nestjs/common';
import { normalizeAddress } from '../common/client-address';
import type { Request } from 'express';
import { Reflector } from '@nestjs/core';
import { AuthGuard } from '@nestjs/passport';
import type { Actor, Role } from '../common/actor';
import { MfaService } from './mfa.service';
import { ALLOW_WITHOUT_MFA, IS_PUBLIC, MFA_AFTER_VALIDATION, MFA_STEP_UP, REQUIRES_MFA, ROLES_KEY, StepUpRequest } from '../common/auth.decorators';
import { DomainException, Errors } from '../common/errors';

const isPublic = (reflector: Reflector, ctx: ExecutionContext) =>
  reflector.getAllAndOverride<boolean>(IS_PUBLIC, [ctx.getHandler(), ctx.getClass()]) === true;

/** Global: every route needs a valid bearer token unless it is @Public. */
@Injectable()
export class BearerAuthGuard extends AuthGuard('bearer') {
  constructor(private readonly reflector: Reflector) {
    super();
  }

  override canActivate(ctx: ExecutionContext) {
    if (isPublic(this.reflector, ctx)) return true;
    return super.canActivate(ctx);
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
 * Global, after roles: a user without TOTP may only enroll (routes marked @AllowWithoutMfa), and a route
 * marked @RequiresMfa needs a fresh code in `X-MFA-Code`. The guard refuses a missing or malformed code (no state
 * changes); the code itself is verified and burned once the request has passed validation, just before the handler
 * runs (see RequiresMfa), so a request refused by the pipes (400) burns nothing.
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
      throw new DomainException('MFA_ENROLLMENT_REQUIRED', 'enroll TOTP first: POST /v1/me/mfa/totp, then /v1/me/mfa/totp/confirm');
    }
    if (!flag(REQUIRES_MFA)) return true;
    if (actor.kind !== 'user') throw Errors.forbidden('this action needs a person with MFA; service tokens cannot perform it');
    const code = req.headers['x-mfa-code'];
    if (code === undefined) throw new DomainException('MFA_REQUIRED', 'send the current TOTP code in the X-MFA-Code header');
    if (typeof code !== 'string' || !/^\d{6}$/.test(code)) throw new DomainException('MFA_INVALID', 'X-MFA-Code must be 6 digits');
    const verify = () => this.mfa.verify(actor, code, normalizeAddress(req.ip), `${req.method} ${req.route?.path ?? ''}`);
    if (Reflect.getMetadata(MFA_AFTER_VALIDATION, ctx.getHandler()) === true) {
      req[MFA_STEP_UP] = verify;
      return true;
    }
    await verify();
    return true;
  }
}

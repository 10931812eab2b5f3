import { CanActivate, ExecutionContext, Injectable, Logger } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { AuthGuard } from '@nestjs/passport';
import type { Actor, Role } from '../identity/actor';
import { IS_PUBLIC, ROLES_KEY } from './auth.decorators';
import { Errors } from './errors';

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

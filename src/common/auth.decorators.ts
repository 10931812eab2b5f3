import { createParamDecorator, ExecutionContext, SetMetadata } from '@nestjs/common';
import type { Actor, Role } from '../identity/actor';

export const IS_PUBLIC = 'vault:isPublic';
export const ROLES_KEY = 'vault:roles';

/** No authentication: login and health only. */
export const Public = () => SetMetadata(IS_PUBLIC, true);

/** The roles allowed to call a route. A route with neither @Roles nor @Public is refused to everyone. */
export const Roles = (...roles: Role[]) => SetMetadata(ROLES_KEY, roles);

export const ALLOW_WITHOUT_MFA = 'vault:allowWithoutMfa';
export const REQUIRES_MFA = 'vault:requiresMfa';

/** One of the few routes a user who has not enrolled TOTP yet may call (me, enroll, confirm). */
export const AllowWithoutMfa = () => SetMetadata(ALLOW_WITHOUT_MFA, true);

/** Step-up: the request must carry a fresh TOTP code in `X-MFA-Code`, which is then burned. */
export const RequiresMfa = () => SetMetadata(REQUIRES_MFA, true);

export const CurrentActor = createParamDecorator((_data: unknown, ctx: ExecutionContext): Actor => {
  return ctx.switchToHttp().getRequest<{ user: Actor }>().user;
});

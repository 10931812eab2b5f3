import { createParamDecorator, ExecutionContext, Req, SetMetadata } from '@nestjs/common';
import { ROUTE_ARGS_METADATA } from '@nestjs/common/constants';
import type { Actor, Role } from './actor';
import { DomainException } from './errors';

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

/** Marks a handler whose step-up code is burned after validation (set by @RequiresMfa on a method). */
export const MFA_AFTER_VALIDATION = 'vault:mfaAfterValidation';

/** Set by `@RequiresMfa({ addsFactor })`: the kind of second factor the route adds. */
export const MFA_ADDS_FACTOR = 'vault:mfaAddsFactor';

/** Where the MFA guard leaves the step-up check for the handler wrapper: a one-shot function on the request. */
export const MFA_STEP_UP = Symbol('vault:mfaStepUp');
/**
 * What the MFA guard leaves on the request: verify the code (or security key assertion), burn it and run the action
 * inside the step-up (MfaService.verifyThen), or — `inTransaction` — verify it, run the action and burn it in the
 * action's first transaction (MfaService.stepUp).
 */
export type StepUp = <T>(action: () => Promise<T>, inTransaction: boolean) => Promise<T>;
export type StepUpRequest = { [MFA_STEP_UP]?: StepUp };

/**
 * Step-up: the request must carry a fresh TOTP code in `X-MFA-Code`, or a security key's assertion over a challenge
 * bound to this very request in `X-MFA-Assertion` (POST /v1/me/webauthn/step-up), which is then burned.
 *
 * NestJS runs guards before pipes, so a guard that burned the code would burn it for a request the validation
 * pipes then refuse (400). On a method, this decorator therefore wraps the handler: the MFA guard only checks that
 * a well-formed code is present and leaves the verification on the request, and the wrapper runs it when Nest calls
 * the handler, i.e. after every pipe (global ValidationPipe, parameter pipes) has accepted the body, params and
 * query. A refused request changes nothing: the code is not burned, not counted, and no `mfa.verified` is written.
 * The request reaches the wrapper through an extra `@Req()` argument after the handler's own.
 *
 * `inTransaction`: the code is checked before the handler, and burned (with `mfa.verified` and the throttle's release)
 * as the first statements of the handler's first unit of work, so the action and the burn are one transaction
 * (MfaService.stepUp). Only for handlers whose first effect is a unit of work. A refused action still burns the code.
 *
 * `addsFactor`: the route adds a second factor (a TOTP seed, a security key). A user who has none yet needs no step-up
 * (it is their enrollment); once they have one, a stolen session must not add another: the step-up is required —
 * except a TOTP enrollment by a user who has TOTP already, which is refused anyway (409) and changes nothing.
 */
export function RequiresMfa(options: { inTransaction?: boolean; addsFactor?: 'totp' | 'webauthn' } = {}): ClassDecorator & MethodDecorator {
  return ((target: object, key?: string | symbol, descriptor?: PropertyDescriptor) => {
    // on a class, the guard verifies (before validation): kept for completeness, no route uses it
    if (!descriptor || key === undefined) return SetMetadata(REQUIRES_MFA, true)(target as never);
    const original = descriptor.value as (...args: unknown[]) => unknown;
    const routeArgs = (Reflect.getMetadata(ROUTE_ARGS_METADATA, target.constructor, key) ?? {}) as Record<string, { index: number }>;
    const paramTypes = (Reflect.getMetadata('design:paramtypes', target, key) ?? []) as unknown[];
    const reqIndex = Math.max(original.length, paramTypes.length, ...Object.values(routeArgs).map((a) => a.index + 1));
    const wrapped = async function (this: unknown, ...args: unknown[]): Promise<unknown> {
      const handler = () => Promise.resolve(original.apply(this, args.slice(0, reqIndex)));
      return runStepUp(args[reqIndex] as StepUpRequest | undefined, handler, options.inTransaction === true);
    };
    // what the decorators applied before this one recorded on the handler (route, status code, OpenAPI) carries over
    for (const k of Reflect.getOwnMetadataKeys(original)) Reflect.defineMetadata(k, Reflect.getOwnMetadata(k, original), wrapped);
    Object.defineProperty(wrapped, 'name', { value: original.name });
    Reflect.defineMetadata(REQUIRES_MFA, true, wrapped);
    Reflect.defineMetadata(MFA_AFTER_VALIDATION, true, wrapped);
    if (options.addsFactor) Reflect.defineMetadata(MFA_ADDS_FACTOR, options.addsFactor, wrapped);
    Req()(target, key, reqIndex);
    descriptor.value = wrapped;
    return descriptor;
  }) as ClassDecorator & MethodDecorator;
}

async function runStepUp<T>(req: StepUpRequest | undefined, action: () => Promise<T>, inTransaction: boolean): Promise<T> {
  const stepUp = req?.[MFA_STEP_UP];
  // fail closed: the guard always leaves the check; without it, nothing runs
  if (typeof stepUp !== 'function') throw new DomainException('MFA_REQUIRED', 'send the current TOTP code in the X-MFA-Code header');
  delete req![MFA_STEP_UP];
  return stepUp(action, inTransaction);
}

export const CurrentActor = createParamDecorator((_data: unknown, ctx: ExecutionContext): Actor => {
  return ctx.switchToHttp().getRequest<{ user: Actor }>().user;
});

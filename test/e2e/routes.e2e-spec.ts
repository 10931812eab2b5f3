import { METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants';
import { ModulesContainer } from '@nestjs/core';
import { IS_PUBLIC, ROLES_KEY } from '../../src/common/auth.decorators';
import { startTestVault, TestVault } from '../support/vault';

/** Every route the application registers, with its declared access. */
function declaredRoutes(vault: TestVault): Array<{ route: string; roles?: string[]; isPublic: boolean }> {
  const out: Array<{ route: string; roles?: string[]; isPublic: boolean }> = [];
  for (const mod of vault.get(ModulesContainer).values()) {
    for (const wrapper of mod.controllers.values()) {
      const ctrl = wrapper.metatype as { prototype: Record<string, unknown> } & (new (...a: never[]) => unknown);
      const base = Reflect.getMetadata(PATH_METADATA, ctrl) as string;
      for (const name of Object.getOwnPropertyNames(ctrl.prototype)) {
        const handler = ctrl.prototype[name] as object;
        if (name === 'constructor' || typeof handler !== 'function' || Reflect.getMetadata(METHOD_METADATA, handler) === undefined) continue;
        out.push({
          route: `${Reflect.getMetadata(METHOD_METADATA, handler)} /${[base, Reflect.getMetadata(PATH_METADATA, handler) as string].filter((p) => p && p !== '/').join('/')}`,
          roles: Reflect.getMetadata(ROLES_KEY, handler) ?? Reflect.getMetadata(ROLES_KEY, ctrl),
          isPublic: (Reflect.getMetadata(IS_PUBLIC, handler) ?? Reflect.getMetadata(IS_PUBLIC, ctrl)) === true,
        });
      }
    }
  }
  return out;
}

describe('route access declarations', () => {
  let vault: TestVault;
  beforeAll(async () => (vault = await startTestVault()));
  afterAll(() => vault.close());

  it('every route declares its roles, and only login (bearer and browser session), health and metrics are public', () => {
    const routes = declaredRoutes(vault);
    expect(routes.length).toBeGreaterThanOrEqual(15);
    for (const r of routes) expect({ route: r.route, declared: r.isPublic || (r.roles?.length ?? 0) > 0 }).toEqual({ route: r.route, declared: true });
    expect(routes.filter((r) => r.isPublic).map((r) => r.route).sort()).toEqual(
      [
        '0 /health/live',
        '0 /health/ready',
        '0 /metrics',
        '1 /v1/auth/login',
        '1 /v1/auth/session',
        // single sign-on: the sign-in page's buttons, the browser's way to the provider and back, the CLI's device flow
        '0 /v1/auth/oidc/providers',
        '0 /v1/auth/oidc/:name/start',
        '0 /v1/auth/oidc/callback',
        '1 /v1/auth/oidc/:name/device',
        '1 /v1/auth/oidc/device/token',
      ].sort(),
    );
  });
});

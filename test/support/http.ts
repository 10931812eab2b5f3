import type { Test } from 'supertest';
import type { TestUser, TestVault } from './vault';

/**
 * Requests as a user of the test vault. `mfa` (post, put, patch, delete) adds a fresh `X-MFA-Code` (the test clock moves past the user's last
 * burned step). Await a call for the response, or `.expect(status)` it like supertest.
 */
export function actingAs(vault: TestVault, user: TestUser) {
  type Method = 'post' | 'put' | 'patch' | 'delete';
  const send = (method: Method, path: string, body: object | undefined, mfa: boolean) => {
    // wrapped, so the pending supertest request is not resolved (sent) before `.expect` is attached
    const built = (async () => {
      const req = vault.http()[method](path).set('Authorization', user.auth);
      if (mfa) req.set('X-MFA-Code', await user.code());
      return { req: body === undefined ? req : req.send(body) };
    })();
    return Object.assign(
      built.then(({ req }) => req),
      { expect: (status: number) => built.then(({ req }) => req.expect(status)) },
    );
  };
  return {
    post: (path: string, body: object = {}, mfa = false) => send('post', path, body, mfa),
    get: (path: string) => vault.http().get(path).set('Authorization', user.auth),
    put: (path: string, body: object, mfa = false) => send('put', path, body, mfa),
    patch: (path: string, body: object, mfa = false) => send('patch', path, body, mfa),
    delete: (path: string, mfa = false) => send('delete', path, undefined, mfa),
  };
}

/**
 * The routes that need the caller's step-up code (`@RequiresMfa`) besides checkout, reveal, extend, approve, deny and
 * claim: the admin actions that weaken protection or move secrets. For helpers that send any request.
 */
const STEP_UP_ROUTES: Array<[string, RegExp]> = [
  ['POST', /^\/v1\/users$/],
  ['PATCH', /^\/v1\/users\/[^/]+$/],
  ['POST', /^\/v1\/users\/[^/]+\/mfa\/reset$/],
  ['POST', /^\/v1\/service-tokens$/],
  ['DELETE', /^\/v1\/service-tokens\/[^/]+$/],
  ['POST', /^\/v1\/accounts$/],
  ['PATCH', /^\/v1\/accounts\/[^/]+$/],
  ['DELETE', /^\/v1\/accounts\/[^/]+$/],
  ['POST', /^\/v1\/targets$/],
  ['PATCH', /^\/v1\/targets\/[^/]+$/],
  ['DELETE', /^\/v1\/targets\/[^/]+$/],
  ['POST', /^\/v1\/targets\/[^/]+\/verify$/],
  ['PUT', /^\/v1\/targets\/[^/]+\/ephemeral-policy$/],
  ['PUT', /^\/v1\/oidc-providers\/[^/]+$/],
  ['DELETE', /^\/v1\/oidc-providers\/[^/]+$/],
];

/** Whether an admin request needs the caller's step-up code. */
export function needsStepUp(method: string, path: string): boolean {
  const bare = path.split('?')[0];
  return STEP_UP_ROUTES.some(([m, p]) => m === method.toUpperCase() && p.test(bare));
}

/** `req` with a fresh `X-MFA-Code` from `code()`: await it for the response, or `.expect(status)` it like supertest. */
export function withMfa(req: Test, code: () => Promise<string>) {
  // wrapped, so the pending supertest request is not resolved (sent) before the header is set
  const built = code().then((c) => ({ req: req.set('X-MFA-Code', c) }));
  return Object.assign(
    built.then(({ req: r }) => r),
    { expect: (status: number) => built.then(({ req: r }) => r.expect(status)) },
  );
}

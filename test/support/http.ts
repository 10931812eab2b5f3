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

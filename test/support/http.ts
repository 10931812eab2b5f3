import type { TestUser, TestVault } from './vault';

/**
 * Requests as a user of the test vault. `mfa` adds a fresh `X-MFA-Code` (the test clock moves past the user's last
 * burned step). Await a call for the response, or `.expect(status)` it like supertest.
 */
export function actingAs(vault: TestVault, user: TestUser) {
  return {
    post: (path: string, body: object = {}, mfa = false) => {
      // wrapped, so the pending supertest request is not resolved (sent) before `.expect` is attached
      const built = (async () => {
        const req = vault.http().post(path).set('Authorization', user.auth);
        if (mfa) req.set('X-MFA-Code', await user.code());
        return { req: req.send(body) };
      })();
      return Object.assign(
        built.then(({ req }) => req),
        { expect: (status: number) => built.then(({ req }) => req.expect(status)) },
      );
    },
    get: (path: string) => vault.http().get(path).set('Authorization', user.auth),
    put: (path: string, body: object) => vault.http().put(path).set('Authorization', user.auth).send(body),
    patch: (path: string, body: object) => vault.http().patch(path).set('Authorization', user.auth).send(body),
    delete: (path: string) => vault.http().delete(path).set('Authorization', user.auth),
  };
}

import { browserSignIn, sessionCookieOf } from '../support/browser-session';
import { startTestVault } from '../support/vault';

/**
 * The portal's session cookie over HTTPS (README "Web portal → Security model"): Secure and `__Host-` when the request
 * came over TLS through a trusted proxy or VAULT_PUBLIC_URL is https; a forged X-Forwarded-Proto changes nothing.
 */
describe('browser sessions over HTTPS (e2e, real PostgreSQL)', () => {
  it('behind a trusted proxy that says https: a Secure __Host- cookie, read only under that name and only over https', async () => {
    const vault = await startTestVault({ env: { VAULT_TRUST_PROXY: 'loopback' } });
    try {
      const user = await vault.createUser(['operator']);
      const https = { 'X-Forwarded-Proto': 'https' };
      const s = await browserSignIn(vault, { username: user.username, password: user.password, code: user.code }, https);
      expect(s.setCookie).toMatch(/^__Host-vault_session=pvb_[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; Secure; SameSite=Strict$/);
      await vault.http().get('/v1/me').set(https).set('Cookie', s.cookie).expect(200);
      // the same value under the plain name (planted over http, or by a sibling subdomain) is not read over https
      await vault.http().get('/v1/me').set(https).set('Cookie', s.cookie.replace('__Host-', '')).expect(401);
      // over plain http the __Host- cookie is not read (a browser would not send a Secure cookie there anyway)
      await vault.http().get('/v1/me').set('Cookie', s.cookie).expect(401);
      const out = await vault.http().delete('/v1/auth/session').set(https).set('Cookie', s.cookie).set('X-CSRF-Token', s.csrf).expect(204);
      expect(sessionCookieOf(out)?.line).toMatch(/^__Host-vault_session=; Path=\/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; Secure; SameSite=Strict$/);
    } finally {
      await vault.close();
    }
  });

  it('an X-Forwarded-Proto from a client no proxy setting trusts is ignored: no Secure cookie', async () => {
    const vault = await startTestVault();
    try {
      const user = await vault.createUser(['operator']);
      const s = await browserSignIn(vault, { username: user.username, password: user.password, code: user.code }, { 'X-Forwarded-Proto': 'https' });
      expect(s.setCookie).toMatch(/^vault_session=/);
      expect(s.setCookie).not.toMatch(/Secure/);
    } finally {
      await vault.close();
    }
  });

  it('with an https VAULT_PUBLIC_URL the cookie is always Secure', async () => {
    const vault = await startTestVault({ env: { VAULT_PUBLIC_URL: 'https://vault.example.com' } });
    try {
      const user = await vault.createUser(['operator']);
      const s = await browserSignIn(vault, { username: user.username, password: user.password, code: user.code });
      expect(s.setCookie).toMatch(/^__Host-vault_session=pvb_[^;]+; Path=\/; HttpOnly; Secure; SameSite=Strict$/);
      await vault.http().get('/v1/me').set('Cookie', s.cookie).expect(200);
    } finally {
      await vault.close();
    }
  });
});

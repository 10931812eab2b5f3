/**
 * The identity provider changes its signing key (issue 18): the vault keeps the provider's discovered client, and
 * openid-client fetches the JWKS again when an ID token names a key it does not know — at most once a minute (its
 * throttle against a flood of made-up key ids), so a key that appears within a minute of the last fetch is honoured
 * from the minute's end. Real IdPs publish a new key well before they sign with it. A separate file: it waits that
 * minute out (the other OIDC tests run meanwhile).
 */
import { startTestIdp, TestIdp } from '../support/oidc-idp';
import { OIDC_REDIRECT_URI, OIDC_VAULT_ENV, oidcBrowserSignIn, putTestProvider } from '../support/oidc-sign-in';
import { startTestVault, TestVault } from '../support/vault';

const JWKS_REFETCH_THROTTLE_MS = 60_000;

describe('single sign-on: the IdP rotates its signing key (e2e, real IdP)', () => {
  let idp: TestIdp;
  let vault: TestVault;

  beforeAll(async () => {
    idp = await startTestIdp({ redirectUris: [OIDC_REDIRECT_URI], users: { alice: { groups: ['ops'] } } });
    vault = await startTestVault({ env: OIDC_VAULT_ENV });
    await putTestProvider(vault, idp, 'corp', { ops: ['operator'] });
  });
  afterAll(async () => {
    await vault?.close();
    await idp?.stop();
  });

  it('a token signed with the new key is accepted once the JWKS may be fetched again, without touching the provider', async () => {
    const first = await oidcBrowserSignIn(vault, idp, 'corp', 'alice');
    expect(first.location).toBe('/portal/');
    const fetchedAt = Date.now(); // the JWKS was fetched (for the first time) during this sign-in
    const oldKid = idp.kid;
    await idp.rotateKey();
    expect(idp.kid).not.toBe(oldKid);
    // within the minute: the unknown key is not looked up again, the token does not verify
    const early = await oidcBrowserSignIn(vault, idp, 'corp', 'alice');
    expect(early.location).toBe('/portal/sign-in?error=OIDC_TOKEN_INVALID');
    const [audit] = await vault.db.query<{ details: { detail: string } }>("SELECT details FROM audit_events WHERE type = 'auth.login' AND outcome = 'failure' ORDER BY id DESC LIMIT 1");
    expect(audit.details.detail).toMatch(/no valid key found/);
    await new Promise((r) => setTimeout(r, Math.max(0, fetchedAt + JWKS_REFETCH_THROTTLE_MS + 2_000 - Date.now())));
    const after = await oidcBrowserSignIn(vault, idp, 'corp', 'alice');
    expect(after.location).toBe('/portal/');
    expect(after.session).toMatch(/^vault_session=/);
    const provider = await vault.db.query<{ updated_at: Date; created_at: Date }>("SELECT created_at, updated_at FROM oidc_providers WHERE name = 'corp'");
    expect(provider[0].updated_at.getTime()).toBe(provider[0].created_at.getTime()); // nobody re-saved the provider
  }, 120_000);
});

/**
 * Single sign-on with OpenID Connect (issue 18), at the HTTP level, against a real identity provider
 * (test/support/oidc-idp.ts: oidc-provider in its own process) and the real PostgreSQL: the provider admin API (the
 * client secret is write-only), the portal's code flow (PKCE, state, nonce, the binding cookie), user provisioning
 * and group → role mapping, refusals that create nothing (forged ID tokens, another browser's state, a taken
 * username), the device flow for the CLI, and password sign-in turned off per user and for everyone with the
 * break-glass admin audited and alerted. Key rotation is in oidc-key-rotation.e2e-spec.ts (it waits out
 * openid-client's JWKS refetch throttle).
 */
import { TamperMode, startTestIdp, TestIdp } from '../support/oidc-idp';
import { cookieFrom, OIDC_PUBLIC_URL, OIDC_REDIRECT_URI, OIDC_VAULT_ENV, oidcBrowserSignIn, putTestProvider } from '../support/oidc-sign-in';
import { actingAs } from '../support/http';
import { ADMIN_PASSWORD, startTestVault, TestVault } from '../support/vault';
import { safeReturnTo } from '../../src/identity/oidc/oidc-sign-in.service';
import { OidcRecheckService } from '../../src/identity/oidc/oidc-recheck.service';

const GROUP_ROLES = { 'vault-ops': ['operator'], 'vault-approvers': ['approver'], 'vault-admins': ['admin'] };

describe('single sign-on with OpenID Connect (e2e, real IdP and PostgreSQL)', () => {
  let idp: TestIdp;
  let vault: TestVault;

  const userRow = async (username: string) =>
    (await vault.db.query<{ id: string; roles: string[]; oidc_provider: string | null; oidc_subject: string | null; password_login: boolean }>(
      'SELECT id, roles, oidc_provider, oidc_subject, password_login FROM users WHERE username = $1',
      [username],
    ))[0];
  const userCount = async () => Number((await vault.db.query<{ n: string }>('SELECT count(*) AS n FROM users'))[0].n);
  const sessionOf = (cookie: string | undefined) => vault.http().get('/v1/auth/session').set('Cookie', cookie ?? '');
  const lastAudit = async (type: string) =>
    (await vault.db.query<{ outcome: string; details: Record<string, unknown>; subject_id: string | null }>(
      'SELECT outcome, details, subject_id FROM audit_events WHERE type = $1 ORDER BY id DESC LIMIT 1',
      [type],
    ))[0];

  beforeAll(async () => {
    idp = await startTestIdp({
      redirectUris: [OIDC_REDIRECT_URI],
      users: {
        alice: { groups: ['vault-ops'], amr: ['pwd', 'otp'], acr: 'urn:test:loa:2' },
        carol: { groups: ['vault-approvers', 'unrelated'] },
        mallory: { groups: ['vault-ops'] },
        nobody: { groups: ['marketing'] },
        dave: { groups: ['vault-ops'] },
        erin: { groups: ['vault-ops'] },
      },
    });
    vault = await startTestVault({ env: OIDC_VAULT_ENV });
    await putTestProvider(vault, idp, 'corp', GROUP_ROLES);
  });
  afterAll(async () => {
    await vault?.close();
    await idp?.stop();
  });

  describe('provider admin API', () => {
    it('creates and lists a provider; the client secret is write-only (answers, audit and the database never show it)', async () => {
      const admin = await vault.admin();
      const created = await putTestProvider(vault, idp, 'second', { 'vault-ops': ['operator'] }, { scopes: ['openid', 'profile', 'groups'], enabled: false });
      expect(created.body).toMatchObject({ name: 'second', issuer: idp.issuer, clientId: idp.clientId, clientSecretSet: true, enabled: false, scopes: ['openid', 'profile', 'groups'], redirectUri: OIDC_REDIRECT_URI });
      expect(created.body).not.toHaveProperty('clientSecret');
      const list = await actingAs(vault, admin).get('/v1/oidc-providers').expect(200);
      expect(list.body.map((p: { name: string }) => p.name)).toEqual(['corp', 'second']);
      for (const body of [created.text, list.text]) expect(body).not.toContain(idp.clientSecret);
      const audits = await vault.db.query<{ details: string }>("SELECT details::text AS details FROM audit_events WHERE type LIKE 'oidc.%'");
      expect(audits.length).toBeGreaterThanOrEqual(2);
      for (const a of audits) expect(a.details).not.toContain(idp.clientSecret);
      expect(JSON.parse(audits[audits.length - 1].details)).toMatchObject({ name: 'second', clientSecretChanged: true, created: true });
      const [row] = await vault.db.query<{ secret: Buffer }>("SELECT client_secret AS secret FROM oidc_providers WHERE name = 'second'");
      expect(row.secret.includes(Buffer.from(idp.clientSecret))).toBe(false);
      // the sign-in page lists enabled providers only
      const options = await vault.http().get('/v1/auth/oidc/providers').expect(200);
      expect(options.body).toEqual([{ name: 'corp', displayName: 'Test IdP corp' }]);
    });

    it('a replace without clientSecret keeps the stored one (sign-in still works); removal; bad input is a 400 that changes nothing', async () => {
      const admin = await vault.admin();
      const as = actingAs(vault, admin);
      const replaced = await as.put('/v1/oidc-providers/second', { displayName: 'Second', issuer: idp.issuer, clientId: idp.clientId, groupRoles: { 'vault-ops': ['operator'] }, enabled: true }, true).expect(200);
      expect(replaced.body).toMatchObject({ clientSecretSet: true, displayName: 'Second', scopes: ['openid', 'profile', 'email', 'groups'] });
      const signedIn = await oidcBrowserSignIn(vault, idp, 'second', 'erin');
      expect(signedIn.session).toBeDefined();
      // erin is bound to `second` now: moving it to another issuer or removing it is refused
      const moved = await as.put('/v1/oidc-providers/second', { displayName: 'Second', issuer: 'https://login.example.com/tenant', clientId: idp.clientId, groupRoles: {} }, true).expect(409);
      expect(moved.body.code).toBe('OIDC_PROVIDER_IN_USE');
      expect((await as.delete('/v1/oidc-providers/second', true).expect(409)).body.code).toBe('OIDC_PROVIDER_IN_USE');
      await putTestProvider(vault, idp, 'spare', {});
      await as.delete('/v1/oidc-providers/spare', true).expect(204);
      await as.delete('/v1/oidc-providers/spare', true).expect(404);

      const bad: Array<[string, Record<string, unknown>]> = [
        ['corp', { displayName: 'x', issuer: 'http://idp.example.com', clientId: 'vault', groupRoles: {} }], // http off loopback
        ['corp', { displayName: 'x', issuer: idp.issuer, clientId: 'vault', groupRoles: { ops: ['root'] } }],
        ['corp', { displayName: 'x', issuer: idp.issuer, clientId: 'vault', groupRoles: { ops: [] } }],
        ['corp', { displayName: 'x', issuer: idp.issuer, clientId: 'vault', groupRoles: [] }],
        ['corp', { displayName: 'x', issuer: idp.issuer, clientId: 'vault', groupRoles: {}, scopes: ['profile'] }],
        ['corp', { displayName: 'x', issuer: `${idp.issuer}?x=1`, clientId: 'vault', groupRoles: {} }],
        ['corp', { displayName: 'x', issuer: idp.issuer, clientId: 'vault', groupRoles: {}, clientSecret: 7 }],
        ['Bad_Name', { displayName: 'x', issuer: idp.issuer, clientId: 'vault', groupRoles: {} }],
      ];
      for (const [name, body] of bad) {
        const res = await as.put(`/v1/oidc-providers/${name}`, body, true);
        expect({ name, body, status: res.status, code: res.body.code }).toEqual({ name, body, status: 400, code: 'VALIDATION_FAILED' });
      }
      const corp = (await as.get('/v1/oidc-providers').expect(200)).body.find((p: { name: string }) => p.name === 'corp');
      expect(corp).toMatchObject({ displayName: 'Test IdP corp', groupRoles: GROUP_ROLES });
    });

    it('needs an admin, and a step-up code for changes', async () => {
      const operator = await vault.createUser(['operator']);
      await actingAs(vault, operator).get('/v1/oidc-providers').expect(403);
      await vault.http().get('/v1/oidc-providers').expect(401);
      const admin = await vault.admin();
      const noCode = await vault.http().put('/v1/oidc-providers/corp').set('Authorization', admin.auth).send({ displayName: 'x', issuer: idp.issuer, clientId: 'vault', groupRoles: {} });
      expect(noCode.status).toBe(401);
      expect(noCode.body.code).toBe('MFA_REQUIRED');
    });
  });

  describe('portal sign-in (code flow)', () => {
    it('creates the user at the first sign-in with the roles its groups map to, and a browser session as a password sign-in makes', async () => {
      const before = await userCount();
      const r = await oidcBrowserSignIn(vault, idp, 'corp', 'alice', { returnTo: '/portal/accounts?filter=db' });
      expect(r.location).toBe('/portal/accounts?filter=db');
      expect(r.session).toMatch(/^vault_session=pvb_/);
      // the authorization request: PKCE S256, state and nonce (the IdP insists on PKCE too)
      const session = await sessionOf(r.session).expect(200);
      expect(session.body).toMatchObject({ user: { username: 'alice', roles: ['operator'], mfaEnrolled: false }, mfaEnrollmentRequired: true });
      expect(typeof session.body.csrfToken).toBe('string');
      expect(await userCount()).toBe(before + 1);
      const row = await userRow('alice');
      expect(row).toMatchObject({ roles: ['operator'], oidc_provider: 'corp', oidc_subject: 'sub-alice', password_login: false });
      const login = await lastAudit('auth.login');
      expect(login).toMatchObject({ outcome: 'success', subject_id: row.id, details: { method: 'oidc', provider: 'corp', session: 'browser', idpMfa: { amr: ['pwd', 'otp'], acr: 'urn:test:loa:2' } } });
      expect(await lastAudit('user.created')).toMatchObject({ details: { username: 'alice', roles: ['operator'], provider: 'corp', via: 'oidc' } });
      // an SSO user has no password that works, whatever is typed
      await vault.http().post('/v1/auth/login').send({ username: 'alice', password: 'password' }).expect(401);
      // the binding cookie was cleared by the callback; the session cookie is the portal's usual one
      const again = await oidcBrowserSignIn(vault, idp, 'corp', 'alice');
      expect(again.location).toBe('/portal/');
      expect(await userCount()).toBe(before + 1);
    });

    it('a group change at the IdP changes the roles at the next sign-in (audited)', async () => {
      await idp.setUser('carol', { groups: ['vault-approvers', 'unrelated'] });
      const first = await oidcBrowserSignIn(vault, idp, 'corp', 'carol');
      expect((await sessionOf(first.session).expect(200)).body.user.roles).toEqual(['approver']);
      await idp.setUser('carol', { groups: ['vault-approvers', 'vault-ops'] });
      const second = await oidcBrowserSignIn(vault, idp, 'corp', 'carol');
      expect((await sessionOf(second.session).expect(200)).body.user.roles).toEqual(['operator', 'approver']);
      expect(await lastAudit('user.roles_synced')).toMatchObject({ details: { provider: 'corp', before: ['approver'], after: ['operator', 'approver'] } });
      // the earlier session reads the roles from the row: it sees the new ones too
      expect((await sessionOf(first.session).expect(200)).body.user.roles).toEqual(['operator', 'approver']);
    });

    it('no mapped group left: the sign-in is refused, the roles go and every session of the user ends', async () => {
      await idp.setUser('carol', { groups: ['vault-ops'] });
      const kept = await oidcBrowserSignIn(vault, idp, 'corp', 'carol');
      await sessionOf(kept.session).expect(200);
      await idp.setUser('carol', { groups: ['unrelated'] });
      const refused = await oidcBrowserSignIn(vault, idp, 'corp', 'carol');
      expect(refused.location).toBe('/portal/sign-in?error=OIDC_NO_ROLES');
      expect(refused.session).toBeUndefined();
      await sessionOf(kept.session).expect(401);
      expect((await userRow('carol')).roles).toEqual([]);
      expect(await lastAudit('auth.login')).toMatchObject({ outcome: 'failure', details: { reason: 'no_roles', sessionsEnded: true, provider: 'corp' } });
      // a first sign-in without a mapped group creates nobody
      const before = await userCount();
      expect((await oidcBrowserSignIn(vault, idp, 'corp', 'nobody')).location).toBe('/portal/sign-in?error=OIDC_NO_ROLES');
      expect(await userCount()).toBe(before);
      expect(await userRow('nobody')).toBeUndefined();
      // given a group again, carol is back at her next sign-in
      await idp.setUser('carol', { groups: ['vault-approvers'] });
      expect((await sessionOf((await oidcBrowserSignIn(vault, idp, 'corp', 'carol')).session).expect(200)).body.user.roles).toEqual(['approver']);
    });

    it.each<TamperMode>(['audience', 'expired', 'issuer', 'nonce', 'signature', 'unknown-key'])('a forged ID token (%s) is refused and creates nothing', async (mode) => {
      const before = await userCount();
      const r = await oidcBrowserSignIn(vault, idp, 'corp', 'mallory', { beforeCallback: () => idp.tamperNext(mode) });
      expect(r.location).toBe('/portal/sign-in?error=OIDC_TOKEN_INVALID');
      expect(r.session).toBeUndefined();
      expect(await userCount()).toBe(before);
      const audit = await lastAudit('auth.login');
      expect(audit).toMatchObject({ outcome: 'failure', details: { method: 'oidc', provider: 'corp', reason: 'OIDC_TOKEN_INVALID' } });
      const expected: Record<TamperMode, RegExp> = { audience: /aud/, expired: /expired/, issuer: /iss/, nonce: /nonce/, signature: /signature/, 'unknown-key': /no valid key/ };
      expect(String(audit.details.detail)).toMatch(expected[mode]);
    });

    it('the IdP answered the forged tokens for mallory only: the same user signs in once nothing is forged', async () => {
      const r = await oidcBrowserSignIn(vault, idp, 'corp', 'mallory');
      expect(r.location).toBe('/portal/');
      await idp.tamperNext(null);
    });

    it("another browser's binding cookie, none, a replayed or made-up state: refused, nothing created", async () => {
      const before = await userCount();
      const other = await vault.http().get('/v1/auth/oidc/corp/start').expect(302);
      const otherBinding = cookieFrom(other, 'vault_oidc')!;
      const foreign = await oidcBrowserSignIn(vault, idp, 'corp', 'dave', { bindingOverride: otherBinding });
      expect(foreign.location).toBe('/portal/sign-in?error=OIDC_STATE_INVALID');
      const none = await oidcBrowserSignIn(vault, idp, 'corp', 'dave', { bindingOverride: null });
      expect(none.location).toBe('/portal/sign-in?error=OIDC_STATE_INVALID');
      // the state was used up by the refused attempt: the right cookie does not bring it back
      const replay = await vault.http().get(none.callback.pathname + none.callback.search).set('Cookie', none.binding!).expect(302);
      expect(replay.headers.location).toBe('/portal/sign-in?error=OIDC_STATE_INVALID');
      // a successful callback cannot be replayed either
      const ok = await oidcBrowserSignIn(vault, idp, 'corp', 'dave');
      expect(ok.session).toBeDefined();
      const replayOk = await vault.http().get(ok.callback.pathname + ok.callback.search).set('Cookie', ok.binding!).expect(302);
      expect(replayOk.headers.location).toBe('/portal/sign-in?error=OIDC_STATE_INVALID');
      expect(cookieFrom(replayOk, 'vault_session')).toBeUndefined();
      for (const query of ['', '?state=forged&code=abc', '?code=abc', `?state=${'x'.repeat(500)}`, '?state=a&state=b&code=c']) {
        const res = await vault.http().get(`/v1/auth/oidc/callback${query}`).set('Cookie', otherBinding).expect(302);
        expect({ query, location: res.headers.location }).toEqual({ query, location: '/portal/sign-in?error=OIDC_STATE_INVALID' });
      }
      expect(await userCount()).toBe(before + 1); // dave, once
      expect(await lastAudit('auth.login')).toMatchObject({ outcome: 'failure', details: { reason: 'OIDC_STATE_INVALID' } });
    });

    it('made-up states from one address are refused, but only ten a minute are audited (nobody fills the audit chain)', async () => {
      const count = async () => Number((await vault.db.query<{ n: string }>("SELECT count(*) AS n FROM audit_events WHERE type = 'auth.login' AND details->>'reason' = 'OIDC_STATE_INVALID'"))[0].n);
      const before = await count();
      const answers = await Promise.all(Array.from({ length: 60 }, (_, i) => vault.http().get(`/v1/auth/oidc/callback?state=made-up-${i}&code=x`)));
      expect(new Set(answers.map((a) => `${a.status} ${a.headers.location}`))).toEqual(new Set(['302 /portal/sign-in?error=OIDC_STATE_INVALID']));
      expect((await count()) - before).toBeLessThanOrEqual(10);
    });

    it('returnTo is only ever a portal path: anything else lands on /portal/', async () => {
      const r = await oidcBrowserSignIn(vault, idp, 'corp', 'alice', { returnTo: 'https://evil.example/portal/' });
      expect(r.location).toBe('/portal/');
      const hostile = ['//evil.example/portal/', '/\\evil.example', '/portal/\\\\evil.example', '/portal/../admin', 'javascript:alert(1)', '/portal/%0d%0aSet-Cookie:x=1', '/portalx', 'https://localhost:18443/portal/', '/portal/\u0000'];
      for (const v of hostile) expect({ v, to: safeReturnTo(v) }).toEqual({ v, to: v === '/portal/%0d%0aSet-Cookie:x=1' ? v : '/portal/' });
      expect(safeReturnTo('/portal/checkouts/123?tab=a#top')).toBe('/portal/checkouts/123?tab=a#top');
      expect(safeReturnTo(undefined)).toBe('/portal/');
    });

    it("a username held by a local user or another provider's user is refused: never linked by name", async () => {
      const local = await vault.createUser(['auditor']);
      await idp.setUser('bob', { groups: ['vault-admins'], preferredUsername: local.username, email: 'bob@idp.test' });
      const before = await userCount();
      const r = await oidcBrowserSignIn(vault, idp, 'corp', 'bob');
      expect(r.location).toBe('/portal/sign-in?error=OIDC_USERNAME_TAKEN');
      expect(r.session).toBeUndefined();
      expect(await userCount()).toBe(before);
      expect(await userRow(local.username)).toMatchObject({ roles: ['auditor'], oidc_provider: null });
      await idp.setUser('bob', { preferredUsername: 'Admin' });
      expect((await oidcBrowserSignIn(vault, idp, 'corp', 'bob')).location).toBe('/portal/sign-in?error=OIDC_USERNAME_TAKEN');
      // erin signed in through `second`: the same name through `corp` is someone else
      await idp.setUser('bob', { preferredUsername: 'erin' });
      expect((await oidcBrowserSignIn(vault, idp, 'corp', 'bob')).location).toBe('/portal/sign-in?error=OIDC_USERNAME_TAKEN');
      await idp.setUser('bob', { preferredUsername: 'Not A Username!' });
      expect((await oidcBrowserSignIn(vault, idp, 'corp', 'bob')).location).toBe('/portal/sign-in?error=OIDC_USERNAME_INVALID');
      // checked before folding: the KELVIN SIGN (U+212A) would lower-case to an ASCII k and squat "kevin"
      await idp.setUser('bob', { preferredUsername: '\u212Aevin' });
      expect((await oidcBrowserSignIn(vault, idp, 'corp', 'bob')).location).toBe('/portal/sign-in?error=OIDC_USERNAME_INVALID');
      expect(await userRow('kevin')).toBeUndefined();
      expect(await userCount()).toBe(before);
      expect(await lastAudit('auth.login')).toMatchObject({ outcome: 'failure', details: { reason: 'OIDC_USERNAME_INVALID' } });
    });

    it('a subject the vault cannot store (a NUL, over 255 characters) is an invalid token: refused, nothing stored, never a 500', async () => {
      const before = await userCount();
      for (const sub of ['sub-with-\u0000-nul', `sub-${'x'.repeat(300)}`]) {
        const name = `odd${before}${sub.length}`;
        await idp.setUser(name, { sub, groups: ['vault-ops'] });
        expect((await oidcBrowserSignIn(vault, idp, 'corp', name)).location).toBe('/portal/sign-in?error=OIDC_TOKEN_INVALID');
        expect(await lastAudit('auth.login')).toMatchObject({ outcome: 'failure', details: { reason: 'OIDC_TOKEN_INVALID', detail: 'bad_claims: sub' } });
      }
      expect(await userCount()).toBe(before);
    });

    it("an IdP user's roles are the IdP's: an admin's role change is refused (409 ROLES_FROM_IDP); disabling works", async () => {
      const admin = await vault.admin();
      const alice = await userRow('alice');
      const res = await actingAs(vault, admin).patch(`/v1/users/${alice.id}`, { roles: ['admin'] }, true).expect(409);
      expect(res.body.code).toBe('ROLES_FROM_IDP');
      expect((await userRow('alice')).roles).toEqual(['operator']);
      await actingAs(vault, admin).patch(`/v1/users/${alice.id}`, { roles: ['operator'] }, true).expect(200); // the same roles: nothing to refuse
    });

    it('disabling a provider ends every session and token of its users at once (a compromised or misconfigured provider)', async () => {
      const admin = await vault.admin();
      const erin = await oidcBrowserSignIn(vault, idp, 'second', 'erin');
      await sessionOf(erin.session).expect(200);
      const res = await actingAs(vault, admin).put('/v1/oidc-providers/second', { displayName: 'Second', issuer: idp.issuer, clientId: idp.clientId, groupRoles: { 'vault-ops': ['operator'] }, enabled: false }, true).expect(200);
      expect(res.body.enabled).toBe(false);
      await sessionOf(erin.session).expect(401);
      expect((await lastAudit('oidc.provider_saved')).details).toMatchObject({ name: 'second', enabled: false, sessionsEnded: expect.any(Number) });
      expect(Number((await lastAudit('oidc.provider_saved')).details.sessionsEnded)).toBeGreaterThanOrEqual(1);
      // alice (of corp) is untouched
      await sessionOf((await oidcBrowserSignIn(vault, idp, 'corp', 'alice')).session).expect(200);
    });

    it('the IdP never removes the last enabled admin: that user keeps admin (audited kept LAST_ADMIN)', async () => {
      await idp.setUser('hank', { groups: ['vault-admins'] });
      const first = await oidcBrowserSignIn(vault, idp, 'corp', 'hank');
      expect((await sessionOf(first.session).expect(200)).body.user.roles).toEqual(['admin']);
      // a vault whose break-glass admin was disabled (before this release refused it): hank is the only enabled admin
      await vault.db.query("UPDATE users SET disabled = true WHERE username = 'admin'");
      try {
        await idp.setUser('hank', { groups: ['vault-ops'] });
        const second = await oidcBrowserSignIn(vault, idp, 'corp', 'hank');
        expect((await sessionOf(second.session).expect(200)).body.user.roles).toEqual(['admin', 'operator']);
        expect(await lastAudit('user.roles_synced')).toMatchObject({ details: { kept: 'LAST_ADMIN', wanted: ['operator'], after: ['admin', 'operator'] } });
      } finally {
        await vault.db.query("UPDATE users SET disabled = false WHERE username = 'admin'");
      }
      // with another admin again, the IdP's word holds
      const third = await oidcBrowserSignIn(vault, idp, 'corp', 'hank');
      expect((await sessionOf(third.session).expect(200)).body.user.roles).toEqual(['operator']);
    });

    it('a disabled provider, an unknown one, and a disabled user are refused', async () => {
      expect((await vault.http().get('/v1/auth/oidc/nope/start').expect(404)).body.code).toBe('NOT_FOUND');
      expect((await vault.http().get('/v1/auth/oidc/second/start').expect(404)).body.code).toBe('NOT_FOUND'); // disabled above
      expect((await vault.http().get('/v1/auth/oidc/corp/start').expect(302)).headers.location).toContain(idp.issuer);
      // a provider whose issuer does not answer: the browser is sent back to the sign-in page
      const admin0 = await vault.admin();
      await actingAs(vault, admin0).put('/v1/oidc-providers/offline', { displayName: 'Offline', issuer: 'http://127.0.0.1:9/realms/none', clientId: 'vault', groupRoles: {} }, true).expect(200);
      expect((await vault.http().get('/v1/auth/oidc/offline/start').expect(302)).headers.location).toBe('/portal/sign-in?error=OIDC_PROVIDER_UNAVAILABLE');
      expect((await vault.http().post('/v1/auth/oidc/offline/device').expect(502)).body.code).toBe('OIDC_PROVIDER_UNAVAILABLE');
      await actingAs(vault, admin0).put('/v1/oidc-providers/offline', { displayName: 'Offline', issuer: 'http://127.0.0.1:9/realms/none', clientId: 'vault', groupRoles: {}, enabled: false }, true).expect(200);
      await vault.http().get('/v1/auth/oidc/offline/start').expect(404);
      await vault.http().get('/v1/auth/oidc/Not_A_Name/start').expect(400);
      const admin = await vault.admin();
      const dave = await userRow('dave');
      await actingAs(vault, admin).patch(`/v1/users/${dave.id}`, { disabled: true }, true).expect(200);
      expect((await oidcBrowserSignIn(vault, idp, 'corp', 'dave')).location).toBe('/portal/sign-in?error=OIDC_ACCOUNT_DISABLED');
      await actingAs(vault, admin).patch(`/v1/users/${dave.id}`, { disabled: false }, true).expect(200);
    });
  });

  describe('device sign-in (CLI)', () => {
    /** Polls until the answer is not AUTHORIZATION_PENDING / SLOW_DOWN (moving the vault's clock past the interval). */
    const pollUntilDone = async (deviceCode: string) => {
      for (let i = 0; i < 10; i++) {
        vault.clock.advance(6_000);
        const res = await vault.http().post('/v1/auth/oidc/device/token').send({ deviceCode });
        if (!(res.status === 400 && ['AUTHORIZATION_PENDING', 'SLOW_DOWN'].includes(res.body.code))) return res;
      }
      throw new Error('the device sign-in stayed pending');
    };

    it('device authorization, pending, slow down, approval at the IdP, then a bearer token; used once', async () => {
      const start = await vault.http().post('/v1/auth/oidc/corp/device').expect(200);
      expect(start.body).toMatchObject({ deviceCode: expect.stringMatching(/^pvd_/), userCode: expect.any(String), verificationUri: `${idp.issuer}/device`, interval: 5 });
      expect(start.body.verificationUriComplete).toContain(idp.issuer);
      expect(start.body.expiresIn).toBeGreaterThan(60);
      // the IdP's device code is not what the CLI holds
      const [row] = await vault.db.query<{ device_code: Buffer }>('SELECT device_code FROM oidc_logins WHERE kind = $1 ORDER BY created_at DESC LIMIT 1', ['device']);
      expect(row.device_code.toString('latin1')).not.toContain(start.body.deviceCode);
      const pending = await vault.http().post('/v1/auth/oidc/device/token').send({ deviceCode: start.body.deviceCode }).expect(400);
      expect(pending.body.code).toBe('AUTHORIZATION_PENDING');
      const tooSoon = await vault.http().post('/v1/auth/oidc/device/token').send({ deviceCode: start.body.deviceCode }).expect(400);
      expect(tooSoon.body).toMatchObject({ code: 'SLOW_DOWN', interval: 5 });
      await idp.completeDevice(start.body.verificationUriComplete, 'alice');
      const done = await pollUntilDone(start.body.deviceCode);
      expect(done.status).toBe(200);
      expect(done.body).toMatchObject({ accessToken: expect.stringMatching(/^pvt_/), mfaEnrollmentRequired: true });
      const me = await vault.http().get('/v1/me').set('Authorization', `Bearer ${done.body.accessToken}`).expect(200);
      expect(me.body).toMatchObject({ username: 'alice', roles: ['operator'] });
      expect(await lastAudit('auth.login')).toMatchObject({ outcome: 'success', details: { method: 'oidc', session: 'bearer', provider: 'corp' } });
      vault.clock.advance(6_000);
      const reused = await vault.http().post('/v1/auth/oidc/device/token').send({ deviceCode: start.body.deviceCode }).expect(400);
      expect(reused.body.code).toBe('EXPIRED_TOKEN');
    });

    it('refused at the IdP: ACCESS_DENIED; unknown or lapsed: EXPIRED_TOKEN; no role: OIDC_NO_ROLES; a forged ID token: OIDC_TOKEN_INVALID', async () => {
      const denied = await vault.http().post('/v1/auth/oidc/corp/device').expect(200);
      await idp.denyDevice(denied.body.verificationUriComplete);
      expect((await pollUntilDone(denied.body.deviceCode)).body.code).toBe('ACCESS_DENIED');

      for (const deviceCode of ['pvd_unknown', 'nothing-like-it', denied.body.deviceCode]) {
        vault.clock.advance(6_000);
        expect((await vault.http().post('/v1/auth/oidc/device/token').send({ deviceCode }).expect(400)).body.code).toBe('EXPIRED_TOKEN');
      }
      await vault.http().post('/v1/auth/oidc/device/token').send({}).expect(400);
      const lapsed = await vault.http().post('/v1/auth/oidc/corp/device').expect(200);
      vault.clock.advance(11 * 60_000);
      expect((await vault.http().post('/v1/auth/oidc/device/token').send({ deviceCode: lapsed.body.deviceCode }).expect(400)).body.code).toBe('EXPIRED_TOKEN');

      const before = await userCount();
      const noRole = await vault.http().post('/v1/auth/oidc/corp/device').expect(200);
      await idp.completeDevice(noRole.body.verificationUriComplete, 'nobody');
      const refused = await pollUntilDone(noRole.body.deviceCode);
      expect({ status: refused.status, code: refused.body.code }).toEqual({ status: 403, code: 'OIDC_NO_ROLES' });

      const forged = await vault.http().post('/v1/auth/oidc/corp/device').expect(200);
      await idp.completeDevice(forged.body.verificationUriComplete, 'mallory');
      await idp.tamperNext('audience');
      const bad = await pollUntilDone(forged.body.deviceCode);
      expect({ status: bad.status, code: bad.body.code }).toEqual({ status: 401, code: 'OIDC_TOKEN_INVALID' });
      expect(await userCount()).toBe(before);
      await vault.http().post('/v1/auth/oidc/nope/device').expect(404);
    });
  });

  describe('between sign-ins: the re-check sweep (VAULT_OIDC_RECHECK_SECONDS, default 300)', () => {
    // the background sweep is off in these vaults (OIDC_VAULT_ENV): each pass here is the test's own, with the default period
    const recheck = () => vault.get(OidcRecheckService).recheckDue(300);
    const nextPass = async () => {
      vault.clock.advance(301_000);
      await recheck();
    };

    it("keeps the provider's refresh token encrypted with the session; roles follow the groups without a sign-in; no group left ends every session", async () => {
      await idp.setUser('frank', { groups: ['vault-ops'] });
      const s = await oidcBrowserSignIn(vault, idp, 'corp', 'frank');
      const frank = await userRow('frank');
      const [kept] = await vault.db.query<{ oidc_provider: string; refresh: Buffer | null }>(
        "SELECT oidc_provider, oidc_refresh AS refresh FROM access_tokens WHERE user_id = $1 AND kind = 'browser' AND revoked_at IS NULL",
        [frank.id],
      );
      expect(kept.oidc_provider).toBe('corp');
      expect(kept.refresh).not.toBeNull();
      // not due yet: nothing is asked of the provider
      await idp.setUser('frank', { groups: ['vault-ops', 'vault-approvers'] });
      await recheck();
      expect((await sessionOf(s.session).expect(200)).body.user.roles).toEqual(['operator']);
      await nextPass();
      expect((await sessionOf(s.session).expect(200)).body.user.roles).toEqual(['operator', 'approver']);
      expect(await lastAudit('user.roles_synced')).toMatchObject({ subject_id: frank.id, details: { before: ['operator'], after: ['operator', 'approver'], when: 'recheck' } });
      await idp.setUser('frank', { groups: ['marketing'] });
      await nextPass();
      await sessionOf(s.session).expect(401);
      expect((await userRow('frank')).roles).toEqual([]);
      expect(await lastAudit('auth.access_removed')).toMatchObject({ subject_id: frank.id, details: { provider: 'corp', reason: 'no_roles', sessionsEnded: true } });
      // ended sessions keep no provider credential
      const kept2 = await vault.db.query('SELECT id FROM access_tokens WHERE user_id = $1 AND oidc_refresh IS NOT NULL', [frank.id]);
      expect(kept2).toEqual([]);
    });

    it("asks the provider once per user, however many sessions they hold: one user's pile of sessions does not delay another's removal", async () => {
      await idp.setUser('ivan', { groups: ['vault-ops'] });
      for (let i = 0; i < 3; i++) await Promise.all(Array.from({ length: 20 }, () => oidcBrowserSignIn(vault, idp, 'corp', 'ivan')));
      await idp.setUser('judy', { groups: ['vault-ops'] });
      const judy = await oidcBrowserSignIn(vault, idp, 'corp', 'judy');
      await idp.setUser('judy', { groups: [] });
      const before = Number((await vault.db.query<{ n: string }>("SELECT count(*) AS n FROM audit_events WHERE type = 'auth.session_ended'"))[0].n);
      vault.clock.advance(301_000);
      const checked = await recheck();
      expect(checked).toBeGreaterThanOrEqual(61);
      await sessionOf(judy.session).expect(401);
      // ivan's 60 sessions were all checked (claimed) with one answer of the provider: none ended, none is due now
      expect(Number((await vault.db.query<{ n: string }>("SELECT count(*) AS n FROM audit_events WHERE type = 'auth.session_ended'"))[0].n)).toBe(before);
      expect(await recheck()).toBe(0);
    });

    it('the provider refuses the refresh (the person was disabled there): that session ends; a device token is re-checked too', async () => {
      await idp.setUser('gina', { groups: ['vault-ops'] });
      const s = await oidcBrowserSignIn(vault, idp, 'corp', 'gina');
      const device = await vault.http().post('/v1/auth/oidc/corp/device').expect(200);
      await idp.completeDevice(device.body.verificationUriComplete, 'gina');
      vault.clock.advance(6_000);
      const token = await vault.http().post('/v1/auth/oidc/device/token').send({ deviceCode: device.body.deviceCode }).expect(200);
      const bearer = `Bearer ${token.body.accessToken}`;
      await vault.http().get('/v1/me').set('Authorization', bearer).expect(200);
      await idp.setUser('gina', { disabled: true });
      await nextPass();
      await sessionOf(s.session).expect(401);
      await vault.http().get('/v1/me').set('Authorization', bearer).expect(401);
      expect(await lastAudit('auth.session_ended')).toMatchObject({ details: { provider: 'corp', reason: expect.stringContaining('refused the refresh') } });
      const gina = await userRow('gina');
      expect(await vault.db.query('SELECT id FROM access_tokens WHERE user_id = $1 AND oidc_refresh IS NOT NULL', [gina.id])).toEqual([]);
      // a session signed out (or idle past its timeout) is never refreshed again: its refresh token goes at the next pass
      await idp.setUser('gina', { disabled: false });
      const out = await oidcBrowserSignIn(vault, idp, 'corp', 'gina');
      const csrf = (await sessionOf(out.session).expect(200)).body.csrfToken as string;
      await vault.http().delete('/v1/auth/session').set('Cookie', out.session!).set('X-CSRF-Token', csrf).expect(204);
      await recheck();
      expect(await vault.db.query('SELECT id FROM access_tokens WHERE user_id = $1 AND oidc_refresh IS NOT NULL', [gina.id])).toEqual([]);
    });
  });

  describe('password sign-in off', () => {
    it('per user: refused like a wrong password (audited password_login_disabled), back on when turned on', async () => {
      const admin = await vault.admin();
      const user = await vault.createUser(['operator']);
      const patched = await actingAs(vault, admin).patch(`/v1/users/${user.id}`, { passwordLogin: false }, true).expect(200);
      expect(patched.body).toMatchObject({ passwordLogin: false, breakGlass: false, oidcProvider: null });
      const refused = await vault.http().post('/v1/auth/login').send({ username: user.username, password: user.password, code: await user.code() }).expect(401);
      const wrong = await vault.http().post('/v1/auth/login').send({ username: user.username, password: 'wrong-password-here' }).expect(401);
      expect(refused.body).toEqual({ ...wrong.body });
      expect(await lastAudit('auth.login')).toMatchObject({ outcome: 'failure' });
      const [disabled] = await vault.db.query<{ details: Record<string, unknown> }>(
        "SELECT details FROM audit_events WHERE type = 'auth.login' AND subject_id = $1 AND details->>'reason' = 'password_login_disabled'",
        [user.id],
      );
      expect(disabled.details).toMatchObject({ scope: 'user' });
      await vault.http().post('/v1/auth/session').send({ username: user.username, password: user.password }).expect(401);
      await actingAs(vault, admin).patch(`/v1/users/${user.id}`, { passwordLogin: true }, true).expect(200);
      await vault.http().post('/v1/auth/login').send({ username: user.username, password: user.password, code: await user.code() }).expect(200);
      expect((await actingAs(vault, admin).get(`/v1/users/${admin.id}`).expect(200)).body).toMatchObject({ breakGlass: true, passwordLogin: true });
      // the break-glass user stays an enabled admin who may sign in with a password
      for (const change of [{ passwordLogin: false }, { disabled: true }, { roles: ['auditor'] }]) {
        const res = await actingAs(vault, admin).patch(`/v1/users/${admin.id}`, change, true);
        expect({ change, status: res.status, code: res.body.code }).toEqual({ change, status: 409, code: 'BREAK_GLASS_USER' });
      }
      await actingAs(vault, admin).patch(`/v1/users/${admin.id}`, { roles: ['admin', 'auditor'] }, true).expect(200);
      await actingAs(vault, admin).patch(`/v1/users/${admin.id}`, { roles: ['admin'] }, true).expect(200);
    });
  });
});

describe('password sign-in off for everyone (VAULT_PASSWORD_LOGIN=disabled)', () => {
  let vault: TestVault;
  beforeAll(async () => {
    vault = await startTestVault({ env: { VAULT_PUBLIC_URL: OIDC_PUBLIC_URL, VAULT_PASSWORD_LOGIN: 'disabled', VAULT_OIDC_STARTS_PER_MINUTE: '5' } });
  });
  afterAll(() => vault?.close());

  it('refuses every password sign-in but the break-glass admin, whose each sign-in is audited auth.break_glass and alerted', async () => {
    const admin = await vault.admin(); // logs in (password) and enrols: the break-glass path
    const events = await vault.db.query<{ details: Record<string, unknown> }>("SELECT details FROM audit_events WHERE type = 'auth.break_glass'");
    expect(events.length).toBeGreaterThanOrEqual(1);
    expect(events[0].details).toMatchObject({ username: 'admin' });
    const alerts = await vault.db.query<{ payload: { facts: { summary: string } } }>("SELECT payload FROM notification_events WHERE type = 'alert.break_glass_login'");
    expect(alerts.length).toBe(events.length);
    expect(JSON.stringify(alerts[0].payload)).toContain('Break-glass password sign-in by admin');
    expect(JSON.stringify(alerts)).not.toContain(ADMIN_PASSWORD);

    const created = await actingAs(vault, admin).post('/v1/users', { username: 'localop', password: 'local-operator-password', roles: ['operator'] }, true).expect(201);
    const refused = await vault.http().post('/v1/auth/login').send({ username: 'localop', password: 'local-operator-password' }).expect(401);
    expect(refused.body.code).toBe('UNAUTHENTICATED');
    const [why] = await vault.db.query<{ details: Record<string, unknown> }>("SELECT details FROM audit_events WHERE type = 'auth.login' AND subject_id = $1 AND outcome = 'failure'", [created.body.id]);
    expect(why.details).toMatchObject({ reason: 'password_login_disabled', scope: 'global' });

    // a wrong break-glass password is a plain failure: no break-glass event, no alert
    const count = events.length;
    await vault.http().post('/v1/auth/login').send({ username: 'admin', password: 'not-the-admin-password' }).expect(401);
    expect((await vault.db.query("SELECT 1 FROM audit_events WHERE type = 'auth.break_glass'")).length).toBe(count);
    // the right one again: one more event and one more alert (the second factor follows as usual)
    await vault.http().post('/v1/auth/login').send({ username: 'admin', password: ADMIN_PASSWORD, code: await admin.code() }).expect(200);
    expect((await vault.db.query("SELECT 1 FROM audit_events WHERE type = 'auth.break_glass'")).length).toBe(count + 1);
    expect((await vault.db.query("SELECT 1 FROM notification_events WHERE type = 'alert.break_glass_login'")).length).toBe(count + 1);
  });

  it('limits anonymous sign-in starts per address (VAULT_OIDC_STARTS_PER_MINUTE): then THROTTLED, browser and device', async () => {
    const admin = await vault.admin();
    // a provider whose issuer does not answer: each start costs a row or a call, which is what the limit is about
    await actingAs(vault, admin).put('/v1/oidc-providers/offline', { displayName: 'Offline', issuer: 'http://127.0.0.1:9', clientId: 'vault', groupRoles: {} }, true).expect(200);
    const browser = [];
    for (let i = 0; i < 5; i++) browser.push((await vault.http().get('/v1/auth/oidc/offline/start').expect(302)).headers.location);
    expect(browser).toEqual(Array(5).fill('/portal/sign-in?error=OIDC_PROVIDER_UNAVAILABLE'));
    expect((await vault.http().get('/v1/auth/oidc/offline/start').expect(302)).headers.location).toBe('/portal/sign-in?error=THROTTLED');
    const device = await vault.http().post('/v1/auth/oidc/offline/device').expect(429);
    expect(device.body).toMatchObject({ code: 'THROTTLED', retryAfterSeconds: expect.any(Number) });
  });
});

import type { Browser, Page } from 'playwright-core';
import { DESKTOP, expectAccessible, expectNoSecretsInBrowser, launchChromium, newPerson, PortalVault, screenshot, watchPage } from '../support/browser';
import { startTestIdp, type TestIdp } from '../support/oidc-idp';
import { addVirtualAuthenticator } from '../support/virtual-authenticator';
import type { TestUser } from '../support/vault';
import { enrolSecurityKey, freePort, startLocalhostVault } from './identity-ui';
import { go, signIn, stepUp } from './portal-ui';

/**
 * Single sign-on through the portal in real Chromium against a real OpenID Connect provider (oidc-provider in its own
 * process, test/support/oidc-idp.ts): an administrator adds the provider on the portal's page (the client secret is
 * write-only: never shown again), the sign-in page offers it, a person signs in at the provider's own login page and
 * lands in the portal with the roles their groups map to (visible on the Me page); a group change at the provider
 * changes the roles at the next sign-in; with no mapped group, or a forged ID token, the portal's sign-in page says
 * why in words, with the stable code, and nobody is signed in.
 */
describe('single sign-on through the portal: provider page, sign-in at the IdP, groups → roles, refusals in words (browser e2e)', () => {
  let vault: PortalVault;
  let browser: Browser;
  let idp: TestIdp;
  let admin: TestUser;
  const alice = { username: 'alice', password: 'alice-idp-password' };

  beforeAll(async () => {
    const port = await freePort();
    [idp, browser] = await Promise.all([
      startTestIdp({
        redirectUris: [`http://localhost:${port}/v1/auth/oidc/callback`],
        users: { alice: { password: alice.password, groups: ['vault-operators', 'staff'] } },
      }),
      launchChromium(),
    ]);
    vault = await startLocalhostVault(port);
    admin = await vault.admin();
  });

  afterAll(async () => {
    await browser?.close();
    await idp?.stop();
    await vault?.close();
  });

  /**
   * Signs in with the provider in a fresh browser context (the IdP remembers no one): the sign-in page's button, the
   * IdP's own login page, back to the portal — a portal page, or the sign-in page with `?error=` when `refused`.
   * `from`: a portal page opened first (signed out, it leads to the sign-in page, which sends the person back there).
   */
  async function signInWithProvider(who: { username: string; password: string }, refused = false, from = '/portal/sign-in'): Promise<Page> {
    const page = await (await newPerson(browser, vault.origin, DESKTOP)).newPage();
    await page.goto(from);
    await page.waitForURL(/\/portal\/sign-in/);
    await page.getByRole('navigation', { name: 'Single sign-on' }).getByRole('link', { name: 'Sign in with Example Corp IdP' }).click();
    await page.getByRole('heading', { name: 'Sign in to the test IdP' }).waitFor();
    expect(new URL(page.url()).origin).toBe(idp.issuer);
    await page.getByLabel('Username').fill(who.username);
    await page.getByLabel('Password').fill(who.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL((url) => url.origin === vault.origin && url.pathname.startsWith('/portal/') && (url.pathname === '/portal/sign-in') === refused);
    if (refused) expect(new URL(page.url()).searchParams.get('error')).toMatch(/^OIDC_/);
    return page;
  }

  const rolesOf = async (page: Page) => {
    await page.goto('/portal/me');
    const facts = page.locator('dl.facts');
    await facts.waitFor();
    return (await facts.locator('dt:text-is("Roles") + dd').textContent())?.trim();
  };

  it('the administrator adds the provider on its page; the secret is never shown again', async () => {
    const page = await (await newPerson(browser, vault.origin, DESKTOP)).newPage();
    const problems = watchPage(page);
    await signIn(page, 'admin', admin.password, await admin.code());
    await go(page, 'Single sign-on');
    await page.getByRole('button', { name: 'Add a provider' }).click();
    await page.getByLabel('Name', { exact: true }).fill('example');
    await page.getByLabel('Shown as').fill('Example Corp IdP');
    await page.getByLabel('Issuer URL').fill(idp.issuer);
    await page.getByLabel('Client id').fill(idp.clientId);
    await page.getByLabel('Client secret').fill(idp.clientSecret);
    await page.getByLabel('Groups and their vault roles').fill('vault-operators = operator\nvault-approvers = approver');
    await expectAccessible(page, 'single sign-on providers (form)');
    await screenshot(page, 'oidc-providers-form');
    await stepUp(page, 'Save provider', await admin.code());
    const table = page.getByRole('table', { name: 'Single sign-on providers' });
    await table.getByRole('cell', { name: 'Example Corp IdP' }).waitFor();
    await table.getByRole('cell', { name: 'set', exact: true }).waitFor();
    expect(await page.content()).not.toContain(idp.clientSecret);
    await expectNoSecretsInBrowser(page, [idp.clientSecret, admin.password]);
    expect(problems).toEqual({ errors: [], csp: [] });
  }, 120_000);

  it('a person signs in at the IdP and gets the roles their groups map to; a group change applies at the next sign-in', async () => {
    const signInPage = await (await newPerson(browser, vault.origin, DESKTOP)).newPage();
    await signInPage.goto('/portal/sign-in');
    await signInPage.getByRole('link', { name: 'Sign in with Example Corp IdP' }).waitFor();
    await expectAccessible(signInPage, 'sign-in (with a single sign-on provider)');
    await screenshot(signInPage, 'sign-in-sso');

    const page = await signInWithProvider(alice);
    const problems = watchPage(page);
    // no vault factor yet: the portal asks for one (a security key here) before anything else
    await page.waitForURL(/\/portal\/enrol$/);
    await addVirtualAuthenticator(page);
    await enrolSecurityKey(page, 'Laptop passkey');
    expect(await rolesOf(page)).toBe('operator');
    const [created] = await vault.db.query<{ oidc_provider: string; oidc_subject: string; password_login: boolean }>(
      'SELECT oidc_provider, oidc_subject, password_login FROM users WHERE username = $1',
      [alice.username],
    );
    expect(created).toEqual({ oidc_provider: 'example', oidc_subject: 'sub-alice', password_login: false });
    await expectNoSecretsInBrowser(page, [alice.password, idp.clientSecret]);
    expect(problems).toEqual({ errors: [], csp: [] });

    // the IdP moves alice to the approvers: at her next sign-in the vault's roles follow
    await idp.setUser('alice', { groups: ['vault-approvers'] });
    // enrolled now: the IdP's sign-in is the whole sign-in (step-ups still ask for the key)
    // (she follows a link to the checkouts list: the portal sends her back there through the provider's round trip)
    const again = await signInWithProvider(alice, false, '/portal/checkouts');
    await again.getByRole('heading', { level: 1, name: 'Checkouts' }).waitFor();
    expect(new URL(again.url()).pathname).toBe('/portal/checkouts');
    expect(await rolesOf(again)).toBe('approver');

    // the administrator's user page says where she signs in and that her roles are the provider's to change
    const adm = await (await newPerson(browser, vault.origin, DESKTOP)).newPage();
    await signIn(adm, 'admin', admin.password, await admin.code());
    await go(adm, 'Users');
    const row = adm.getByRole('row').filter({ has: adm.getByRole('link', { name: alice.username, exact: true }) });
    await row.getByText('single sign-on (example)').waitFor();
    await row.getByRole('link', { name: alice.username, exact: true }).click();
    await adm.getByText('single sign-on (example)').waitFor();
    await adm.getByText('Roles come from the identity provider', { exact: false }).waitFor();
    expect(await adm.getByRole('button', { name: 'Save roles' }).count()).toBe(0);
    await expectAccessible(adm, 'user (signs in with single sign-on)');
  }, 120_000);

  it('no mapped group, or a forged ID token: the sign-in page says why, and nobody is signed in', async () => {
    await idp.setUser('alice', { groups: ['staff'] });
    const page = await signInWithProvider(alice, true);
    await page.getByRole('alert').getByText('OIDC_NO_ROLES').waitFor();
    await page.getByRole('alert').getByText('no group that has access', { exact: false }).waitFor();
    await expectAccessible(page, 'sign-in (single sign-on refused)');
    const [roles] = await vault.db.query<{ roles: string[] }>('SELECT roles FROM users WHERE username = $1', [alice.username]);
    expect(roles.roles).toEqual([]);

    await idp.setUser('alice', { groups: ['vault-operators'] });
    await idp.tamperNext('audience');
    const forged = await signInWithProvider(alice, true);
    await forged.getByRole('alert').getByText('OIDC_TOKEN_INVALID').waitFor();
    expect((await forged.context().request.get('/v1/auth/session')).status()).toBe(401);
  }, 120_000);
});

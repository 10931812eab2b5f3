import { randomBytes } from 'node:crypto';
import type { Browser, Page } from 'playwright-core';
import { DESKTOP, expectAccessible, launchChromium, newPerson, PHONE, PortalVault, screenshot, startPortalVault, watchPage } from '../support/browser';
import { REAL_TARGETS, RealTarget } from '../support/targets/real';
import type { TestUser } from '../support/vault';
import { signIn } from './portal-ui';

/**
 * axe-core on every page of the portal, at laptop and at phone width, as the role that uses it: no serious or
 * critical violation. (The flows in the other browser suites scan the pages in the states they reach: a pending and an
 * active checkout, the approvals inbox with a request, the enrolment, a claimed one-time account, a verified target.)
 * Also writes the README's screenshots of the pages those flows do not reach.
 */

/** A page of the portal (path under /portal), what its h1 says, and who looks at it. */
interface PortalPage {
  path: string;
  heading: string | RegExp;
  as: 'admin' | 'operator' | 'approver' | 'vendor' | 'auditor';
  screenshot?: string;
}

describe('accessibility of every portal page (browser e2e)', () => {
  let vault: PortalVault;
  let browser: Browser;
  let real: RealTarget;
  const people = {} as Record<PortalPage['as'], TestUser>;
  const pages: PortalPage[] = [];

  beforeAll(async () => {
    [vault, browser, real] = await Promise.all([startPortalVault(), launchChromium(), REAL_TARGETS.postgres()]);
    people.admin = await vault.admin();
    for (const role of ['operator', 'approver', 'vendor', 'auditor'] as const) people[role] = await vault.createUser([role]);
    const { admin, operator, vendor } = people;
    const asAdmin = async (path: string, body: object) => (await vault.http().post(path).set('Authorization', admin.auth).set('X-MFA-Code', await admin.code()).send(body).expect(201)).body;
    const target = await asAdmin('/v1/targets', { name: 'billing-db', ...real.body });
    await real.createAccount('billing_owner', `Orig-${randomBytes(10).toString('hex')}`);
    const account = await asAdmin('/v1/accounts', { targetId: target.id, username: 'billing_owner', policy: { approvalsRequired: 1 } });
    const checkout = (await vault.http().post('/v1/checkouts').set('Authorization', operator.auth).set('X-MFA-Code', await operator.code()).send({ accountId: account.id, justification: 'INC-4711: reindex the invoices table' }).expect(201)).body;
    const oneTime = (await vault.http().post('/v1/ephemeral-accounts').set('Authorization', operator.auth).send({ targetId: target.id, vendorUserId: vendor.id, ttlSeconds: 3600, justification: 'ACME fixes the slow index, TICKET-77' }).expect(201)).body;
    const channel = await asAdmin('/v1/notification-channels', { name: 'security team', kind: 'email', config: { to: ['security@example.com'] } });
    const [event] = (await vault.http().get('/v1/audit-events?limit=1').set('Authorization', admin.auth).expect(200)).body.items as Array<{ id: string }>;
    pages.push(
      { path: '/', heading: /./, as: 'admin', screenshot: 'home-admin' },
      { path: '/', heading: /./, as: 'approver', screenshot: 'home-approver' },
      { path: '/', heading: /./, as: 'vendor' },
      { path: '/', heading: /./, as: 'auditor' },
      { path: '/accounts', heading: 'Accounts', as: 'admin' },
      { path: `/accounts/${account.id}`, heading: 'Account billing_owner', as: 'operator' },
      { path: '/checkouts', heading: /Checkouts/, as: 'approver', screenshot: 'checkouts' },
      { path: `/checkouts/${checkout.id}`, heading: 'Checkout', as: 'approver', screenshot: 'checkout-approver' },
      { path: '/approvals', heading: 'Approvals', as: 'approver' },
      { path: '/one-time-accounts', heading: /One-time accounts/, as: 'operator', screenshot: 'one-time-accounts-operator' },
      { path: `/one-time-accounts/${oneTime.id}`, heading: 'One-time account', as: 'approver' },
      { path: '/me', heading: /./, as: 'operator', screenshot: 'me' },
      { path: '/targets', heading: 'Targets', as: 'admin', screenshot: 'targets' },
      { path: `/targets/${target.id}`, heading: 'Target billing-db', as: 'admin' },
      { path: '/admin/accounts', heading: /./, as: 'admin', screenshot: 'accounts-admin' },
      { path: `/admin/accounts/${account.id}`, heading: /./, as: 'admin' },
      { path: '/policies', heading: /./, as: 'admin' },
      { path: '/users', heading: 'Users', as: 'admin', screenshot: 'users' },
      { path: `/users/${operator.id}`, heading: /./, as: 'admin' },
      { path: '/tokens', heading: /./, as: 'admin' },
      { path: '/oidc-providers', heading: 'Single sign-on providers', as: 'admin' },
      { path: '/audit', heading: /./, as: 'auditor' },
      { path: `/audit/${event.id}`, heading: /./, as: 'auditor' },
      { path: '/audit/verify', heading: 'Verify the audit chain', as: 'auditor' },
      { path: '/break-glass', heading: 'Break-glass review', as: 'auditor' },
      { path: '/notifications', heading: /./, as: 'admin', screenshot: 'notifications' },
      { path: `/notifications/${channel.id}`, heading: /./, as: 'admin' },
      { path: '/no/such/page', heading: /./, as: 'operator' },
    );
  });

  afterAll(async () => {
    await browser?.close();
    await real?.stop();
    await vault?.close();
  });

  it.each([
    ['desktop', DESKTOP],
    ['phone', PHONE],
  ] as const)('no serious or critical violation on any page (%s)', async (size, viewport) => {
    // the sign-in page, signed out
    const anonymous = await (await newPerson(browser, vault.origin, viewport)).newPage();
    await anonymous.goto('/portal/sign-in');
    await anonymous.getByRole('heading', { name: 'Sign in to the PAM vault' }).waitFor();
    await expectAccessible(anonymous, `sign-in (${size})`);
    if (size === 'desktop') await screenshot(anonymous, 'sign-in');

    const signedIn = new Map<PortalPage['as'], Page>();
    const problems = [];
    for (const p of pages) {
      let page = signedIn.get(p.as);
      if (!page) {
        page = await (await newPerson(browser, vault.origin, viewport)).newPage();
        problems.push(watchPage(page));
        await signIn(page, people[p.as].username, people[p.as].password, await people[p.as].code());
        signedIn.set(p.as, page);
      }
      // in the page, as a link would (the router follows the history), not a reload: the bundle and axe stay loaded
      await page.evaluate(`history.pushState(null, '', ${JSON.stringify(`/portal${p.path}`)}); dispatchEvent(new PopStateEvent('popstate'))`);
      await page.getByRole('heading', { level: 1, name: p.heading }).waitFor();
      // the page's data has arrived: nothing says it is still loading
      await page.getByText(/^Loading/).first().waitFor({ state: 'detached' });
      await expectAccessible(page, `${p.path} as ${p.as} (${size})`);
      if (p.screenshot && size === 'desktop') await screenshot(page, p.screenshot);
    }
    expect(problems.flatMap((pr) => [...pr.errors, ...pr.csp])).toEqual([]);
  }, 600_000);

  it('keyboard only: an approver signs in, finds the request and approves it, seeing where the focus is', async () => {
    const approver = people.approver;
    const page = await (await newPerson(browser, vault.origin)).newPage();
    await page.goto('/portal/sign-in');
    await page.getByRole('heading', { name: 'Sign in to the PAM vault' }).waitFor();
    // the username field has the focus; Tab moves on; Enter submits
    await page.keyboard.type(approver.username);
    await page.keyboard.press('Tab');
    await page.keyboard.type(approver.password);
    await page.keyboard.press('Tab');
    await page.keyboard.type(await approver.code());
    await page.keyboard.press('Enter');
    await page.waitForURL((url) => !url.pathname.endsWith('/sign-in'));
    await page.getByRole('heading', { level: 1 }).waitFor();

    await tabTo(page, 'Approvals');
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { level: 1, name: 'Approvals' }).waitFor();
    await tabTo(page, 'Approve');
    await page.keyboard.press('Enter');
    // the code prompt takes the focus; Enter confirms
    await page.keyboard.type(await approver.code());
    await page.keyboard.press('Enter');
    await page.getByText('Nothing to decide.').first().waitFor();
    const [checkout] = (await vault.http().get('/v1/checkouts?status=active').set('Authorization', people.admin.auth).expect(200)).body.items as Array<{ approvals: Array<{ approverId: string }> }>;
    expect(checkout.approvals.map((a) => a.approverId)).toEqual([approver.id]);
  }, 120_000);
});

/**
 * Presses Tab until the focused element's text (or label) is `name`, checking on the way that every focused element
 * shows it has the focus (an outline or a box shadow that differs from its look unfocused is drawn).
 */
async function tabTo(page: Page, name: string): Promise<void> {
  for (let presses = 0; presses < 80; presses++) {
    await page.keyboard.press('Tab');
    const focused = (await page.evaluate(`(() => {
      const el = document.activeElement;
      const style = getComputedStyle(el);
      if (!el || el === document.body) return { name: '', visible: true };
      return {
        name: (el.getAttribute('aria-label') || el.textContent || '').trim(),
        visible: (style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0) || style.boxShadow !== 'none',
      };
    })()`)) as { name: string; visible: boolean };
    if (!focused.visible) throw new Error(`the focused element "${focused.name}" shows no focus indicator`);
    if (focused.name === name) return;
  }
  throw new Error(`"${name}" was not reached with the Tab key`);
}

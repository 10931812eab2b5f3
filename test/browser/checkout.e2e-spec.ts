import { randomBytes } from 'node:crypto';
import type { Browser, Page } from 'playwright-core';
import { DESKTOP, expectAccessible, expectNoSecretsInBrowser, launchChromium, newPerson, PHONE, PortalVault, screenshot, startPortalVault, watchPage } from '../support/browser';
import { REAL_TARGETS, RealTarget } from '../support/targets/real';
import type { TestUser } from '../support/vault';
import { go, signIn, stepUp } from './portal-ui';

/**
 * The first proof, in real Chromium against the real vault and a real scram-sha-256 PostgreSQL target: an
 * operator finds an account and requests a checkout; an approver, in a second browser context at phone size (390×844),
 * sees the request with its context and approves it; the operator's page turns active without a reload; the operator
 * reveals the password with a fresh code, and it logs in to the target; the password leaves the page after the reveal
 * time; check-in rotates it and the old password is refused. No secret is left in any browser storage.
 */
describe('checkout through the portal: request, approve at phone width, reveal, check in (browser e2e)', () => {
  let vault: PortalVault;
  let browser: Browser;
  let real: RealTarget;
  let operator: TestUser;
  let approver: TestUser;
  const account = { username: 'billing_owner', password: `Orig-${randomBytes(10).toString('hex')}` };

  beforeAll(async () => {
    [vault, browser, real] = await Promise.all([startPortalVault(), launchChromium(), REAL_TARGETS.postgres()]);
    const admin = await vault.admin();
    operator = await vault.createUser(['operator']);
    approver = await vault.createUser(['approver']);
    const target = await vault.http().post('/v1/targets').set('Authorization', admin.auth).set('X-MFA-Code', await admin.code()).send({ name: 'billing-db', ...real.body }).expect(201);
    await real.createAccount(account.username, account.password);
    await vault
      .http()
      .post('/v1/accounts')
      .set('Authorization', admin.auth)
      .set('X-MFA-Code', await admin.code())
      .send({ targetId: target.body.id, ...account, policy: { approvalsRequired: 1, maxCheckoutTtlSeconds: 14400 } })
      .expect(201);
  });

  afterAll(async () => {
    await browser?.close();
    await real?.stop();
    await vault?.close();
  });

  it('operator requests, approver approves from a phone, operator reveals (it logs in), the password hides, check-in rotates it', async () => {
    const op = await (await newPerson(browser, vault.origin, DESKTOP)).newPage();
    const opProblems = watchPage(op);
    await signIn(op, operator.username, operator.password, await operator.code());
    await op.getByRole('heading', { level: 1 }).waitFor();
    await expectAccessible(op, 'home (operator)');
    await screenshot(op, 'home-operator');

    // find the account by target and username
    await go(op, 'Accounts');
    await op.getByRole('searchbox', { name: 'Search target or username' }).fill('billing-db billing_owner');
    await op.getByRole('link', { name: 'Request checkout of billing_owner' }).waitFor();
    await expectAccessible(op, 'accounts');
    await screenshot(op, 'accounts');
    await op.getByRole('link', { name: 'Request checkout of billing_owner' }).click();
    const request = op.getByRole('form', { name: 'Request a checkout' });
    await request.getByLabel('Why do you need it?').fill('INC-4711: reindex the invoices table');
    await request.getByLabel('For how long').selectOption({ label: '2 h' });
    await expectAccessible(op, 'account (request form)');
    await screenshot(op, 'account-request');
    await request.getByLabel('Authenticator code').fill(await operator.code());
    await request.getByRole('button', { name: 'Request checkout' }).click();
    await op.waitForURL(/\/portal\/checkouts\/[0-9a-f-]{36}$/);
    const checkoutId = op.url().split('/').pop()!;
    await statusIs(op, 'pending approval');
    await expectAccessible(op, 'checkout (pending)');
    await screenshot(op, 'checkout-pending');
    // from here on the operator's page must change by itself: count its navigations
    let navigations = 0;
    op.on('framenavigated', (f) => f === op.mainFrame() && navigations++);

    // the approver, on a phone
    const ap = await (await newPerson(browser, vault.origin, PHONE)).newPage();
    const apProblems = watchPage(ap);
    await signIn(ap, approver.username, approver.password, await approver.code());
    await go(ap, 'Approvals');
    const card = ap.getByRole('article', { name: `Checkout request ${checkoutId.slice(0, 8)}` });
    await card.waitFor();
    // who asks, for what target and account, why, for how long, the policy, the requester's recent history
    await card.getByText('INC-4711: reindex the invoices table').waitFor();
    const context = [operator.username, 'billing_owner', 'billing-db', 'INC-4711: reindex the invoices table', '2 h', '1 approval'];
    // checked at the end, so that the rest of the flow still runs when one is missing
    const missingContext = [];
    for (const text of context) if ((await card.getByText(text, { exact: false }).count()) === 0) missingContext.push(text);
    await card.getByRole('heading', { name: /recent/i }).waitFor();
    expect(await ap.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(PHONE.width);
    await expectAccessible(ap, 'approvals (390 px)');
    await screenshot(ap, 'approvals-phone');
    await stepUp(card, 'Approve', await approver.code());
    await card.waitFor({ state: 'detached' });

    // live: the operator's page turns active on its own
    await statusIs(op, 'active');
    expect(navigations).toBe(0);

    // reveal with a fresh code: the password logs in to the target
    await stepUp(op, 'Reveal password', await operator.code(), 'Reveal');
    const shown = (await op.getByTestId('credential-password').textContent())?.trim() ?? '';
    expect(shown).toBe(account.password);
    expect(await real.canLogin(account.username, shown)).toBe(true);
    await op.getByRole('button', { name: 'Copy password' }).click();
    expect(await op.evaluate('navigator.clipboard.readText()')).toBe(shown);
    const secrets = [shown, operator.password, operator.secret, approver.password, approver.secret];
    await expectNoSecretsInBrowser(op, secrets);
    await expectAccessible(op, 'checkout (active, password shown)');

    // hidden again after REVEAL_SECONDS (30 s): gone from the DOM, not only from view
    await op.getByTestId('credential-password').waitFor({ state: 'detached', timeout: 35_000 });
    expect(await op.content()).not.toContain(shown);
    await screenshot(op, 'checkout-active');

    // check in: the password is rotated on the target, the one the operator saw is refused
    await op.getByRole('button', { name: 'Check in' }).click();
    await op.getByRole('status').getByText(/^Checked in/).waitFor();
    await statusIs(op, 'returned');
    expect(await real.canLogin(account.username, shown)).toBe(false);
    for (const page of [op, ap]) await expectNoSecretsInBrowser(page, secrets);
    expect([opProblems, apProblems]).toEqual([{ errors: [], csp: [] }, { errors: [], csp: [] }]);
    expect({ missingContext }).toEqual({ missingContext: [] });
  }, 180_000);
});

/** Waits until the checkout page's status badge reads `status`. */
async function statusIs(page: Page, status: string): Promise<void> {
  await page.locator('.status-line .badge').getByText(status, { exact: true }).waitFor();
}

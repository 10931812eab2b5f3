import { randomBytes } from 'node:crypto';
import type { Browser } from 'playwright-core';
import { expectAccessible, expectNoSecretsInBrowser, launchChromium, newPerson, PortalVault, screenshot, startPortalVault, watchPage } from '../support/browser';
import { REAL_TARGETS, RealTarget } from '../support/targets/real';
import type { TestUser } from '../support/vault';
import { go, signIn, stepUp } from './portal-ui';

/**
 * The administrator and auditor proofs, in real Chromium against the real vault and a real sshd: the admin
 * registers an SSH target in the portal with its least-privilege admin, verifies it — the first verify shows the host
 * key the server presents, which is the sshd's own, and pinning it verifies every capability; the auditor runs the
 * audit chain verify and reviews a break-glass checkout. No secret is left in browser storage.
 */
describe('admin registers and verifies a target; auditor verifies the chain and reviews break-glass (browser e2e)', () => {
  let vault: PortalVault;
  let browser: Browser;
  let real: RealTarget;
  let admin: TestUser;
  let auditor: TestUser;

  beforeAll(async () => {
    [vault, browser, real] = await Promise.all([startPortalVault(), launchChromium(), REAL_TARGETS.ssh()]);
    admin = await vault.admin();
    auditor = await vault.createUser(['auditor']);
  });

  afterAll(async () => {
    await browser?.close();
    await real?.stop();
    await vault?.close();
  });

  it('admin registers an SSH target, pins the host key the server presents, and every capability verifies', async () => {
    const page = await (await newPerson(browser, vault.origin)).newPage();
    const problems = watchPage(page);
    const { host, port, admin: targetAdmin, options } = real.body as { host: string; port: number; admin: { username: string; password: string }; options: { hostKeySha256: string } };
    await signIn(page, admin.username, admin.password, await admin.code());
    await go(page, 'Targets');
    await page.getByRole('button', { name: 'Register a target' }).click();
    await page.getByLabel('Type').first().selectOption('ssh');
    await page.getByLabel('Target name').fill('web-1');
    await page.getByLabel('Host', { exact: true }).fill(host);
    await page.getByLabel('Port').fill(String(port));
    await page.getByLabel('Admin username').fill(targetAdmin.username);
    await page.getByLabel('Admin password').fill(targetAdmin.password);
    await expectAccessible(page, 'targets (register form)');
    await screenshot(page, 'targets-register');
    await stepUp(page, 'Register target', await admin.code());
    await page.getByRole('heading', { level: 1, name: 'Target web-1' }).waitFor();

    // first verify: nothing is sent to an unpinned server; the page shows the key it presents
    await stepUp(page, 'Verify target', await admin.code());
    await page.getByText('No host key is pinned yet.').waitFor();
    await page.getByText(`SHA256:${options.hostKeySha256}`, { exact: true }).waitFor();
    await stepUp(page, 'Pin this host key', await admin.code());
    await page.getByText('Verified: every capability is present').waitFor();
    await page.getByRole('table', { name: 'Capabilities' }).getByText('SSH_USER_MANAGEMENT').waitFor();
    await expectAccessible(page, 'target (verified)');
    await screenshot(page, 'target-verified');
    const [target] = (await vault.http().get('/v1/targets').set('Authorization', admin.auth).expect(200)).body.items as Array<{ options: { hostKeySha256?: string } }>;
    expect(target.options.hostKeySha256).toBe(options.hostKeySha256);
    await expectNoSecretsInBrowser(page, [targetAdmin.password, admin.password, admin.secret]);
    expect(problems).toEqual({ errors: [], csp: [] });
  }, 120_000);

  it('auditor runs the chain verify and reviews a break-glass checkout', async () => {
    // a break-glass checkout, used and checked in (reviewable once it has ended)
    const operator = await vault.createUser(['operator']);
    const [target] = (await vault.http().get('/v1/targets').set('Authorization', admin.auth).expect(200)).body.items as Array<{ id: string }>;
    const username = `bg_${randomBytes(3).toString('hex')}`;
    const password = `Orig-${randomBytes(10).toString('hex')}`;
    await real.createAccount(username, password);
    const account = await vault
      .http()
      .post('/v1/accounts')
      .set('Authorization', admin.auth)
      .set('X-MFA-Code', await admin.code())
      .send({ targetId: target.id, username, password, policy: { approvalsRequired: 1, breakGlassAllowed: true } })
      .expect(201);
    const checkout = await vault
      .http()
      .post('/v1/checkouts')
      .set('Authorization', operator.auth)
      .set('X-MFA-Code', await operator.code())
      .send({ accountId: account.body.id, justification: 'P1: payment API down, on-call fix', breakGlass: true })
      .expect(201);
    expect(checkout.body).toMatchObject({ status: 'active', breakGlass: true });
    await vault.http().post(`/v1/checkouts/${checkout.body.id}/checkin`).set('Authorization', operator.auth).expect(200);

    const page = await (await newPerson(browser, vault.origin)).newPage();
    const problems = watchPage(page);
    await signIn(page, auditor.username, auditor.password, await auditor.code());
    await go(page, 'Audit log');
    await page.getByText('checkout.activated').first().waitFor();
    await expectAccessible(page, 'audit log');
    await screenshot(page, 'audit-log');

    await page.goto('/portal/audit/verify');
    await page.getByRole('form', { name: 'Verify the audit chain' }).getByRole('button', { name: 'Run verify' }).click();
    await page.getByText('Chain intact').waitFor();
    await expectAccessible(page, 'audit verify');
    await screenshot(page, 'audit-verify');

    await go(page, 'Break-glass');
    const card = page.getByRole('article', { name: `Break-glass checkout ${checkout.body.id}` });
    await card.getByText('P1: payment API down, on-call fix').waitFor();
    await expectAccessible(page, 'break-glass queue');
    await screenshot(page, 'break-glass');
    await card.getByRole('button', { name: 'Review', exact: true }).click();
    await card.getByLabel('Review comment').fill('Checked the session log: only the payment service restart. OK.');
    await card.getByLabel('Authenticator code').fill(await auditor.code());
    await card.getByRole('button', { name: 'Record review' }).click();
    await card.getByText('Reviewed.').waitFor();
    const reviewed = (await vault.http().get(`/v1/checkouts/${checkout.body.id}`).set('Authorization', admin.auth).expect(200)).body;
    expect(reviewed.review).toMatchObject({ reviewedBy: auditor.id, comment: 'Checked the session log: only the payment service restart. OK.' });
    await expectNoSecretsInBrowser(page, [auditor.password, auditor.secret, password]);
    expect(problems).toEqual({ errors: [], csp: [] });
  }, 120_000);
});

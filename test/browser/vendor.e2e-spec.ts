import type { Browser } from 'playwright-core';
import { expectAccessible, expectNoSecretsInBrowser, freshCode, launchChromium, newPerson, PortalVault, screenshot, startPortalVault, watchPage } from '../support/browser';
import { REAL_TARGETS, RealTarget } from '../support/targets/real';
import type { TestUser } from '../support/vault';
import { confirmEnrolment, go, readEnrolment, signIn, stepUp } from './portal-ui';

/**
 * The vendor proof, in real Chromium against the real vault and a real scram-sha-256 PostgreSQL target: an
 * outside vendor signs in for the first time and enrols TOTP by reading the QR code on the page (decoded from its
 * pixels, as an authenticator app would), finds the one-time account asked for them, claims it with a code — the
 * credential is shown once with a ready-to-paste connection hint without the password, and it logs in to the target —
 * then revokes it, and the account no longer logs in. Nothing is left in browser storage.
 */
describe('vendor: first sign-in enrols from the QR code, claims, revokes (browser e2e)', () => {
  let vault: PortalVault;
  let browser: Browser;
  let real: RealTarget;
  let vendor: TestUser;
  let requestId: string;

  beforeAll(async () => {
    [vault, browser, real] = await Promise.all([startPortalVault(), launchChromium(), REAL_TARGETS.postgres()]);
    const admin = await vault.admin();
    const operator = await vault.createUser(['operator']);
    const approver = await vault.createUser(['approver']);
    vendor = await vault.createUser(['vendor'], { enroll: false });
    // the default one-time account policy: one approval, login only
    const target = await vault.http().post('/v1/targets').set('Authorization', admin.auth).set('X-MFA-Code', await admin.code()).send({ name: 'warehouse-db', ...real.body }).expect(201);
    const request = await vault
      .http()
      .post('/v1/ephemeral-accounts')
      .set('Authorization', operator.auth)
      .send({ targetId: target.body.id, vendorUserId: vendor.id, ttlSeconds: 7200, justification: 'ACME fixes the slow index, TICKET-77' })
      .expect(201);
    requestId = request.body.id;
    await vault
      .http()
      .post(`/v1/ephemeral-accounts/${requestId}/approve`)
      .set('Authorization', approver.auth)
      .set('X-MFA-Code', await approver.code())
      .send({ requestDigest: request.body.requestDigest })
      .expect(200);
  });

  afterAll(async () => {
    await browser?.close();
    await real?.stop();
    await vault?.close();
  });

  it('enrols from the QR code, claims (the credential logs in, the hint holds no password), revokes (it no longer does)', async () => {
    const page = await (await newPerson(browser, vault.origin)).newPage();
    const problems = watchPage(page);
    await signIn(page, vendor.username, vendor.password);
    const enrolment = await readEnrolment(page);
    expect(enrolment.otpauthUri).toMatch(new RegExp(`^otpauth://totp/[^?]*${vendor.username}\\?`));
    await expectAccessible(page, 'enrol');
    await screenshot(page, 'enrol');
    await confirmEnrolment(page, freshCode(vault, enrolment.secret));
    // enrolled: the next sign-in needs a code of that authenticator
    expect((await vault.db.query<{ e: boolean }>('SELECT mfa_enrolled_at IS NOT NULL AS e FROM users WHERE id = $1', [vendor.id]))[0].e).toBe(true);

    await go(page, 'One-time accounts');
    await expectAccessible(page, 'one-time accounts (vendor)');
    await screenshot(page, 'one-time-accounts-vendor');
    await page.locator(`a[href="/portal/one-time-accounts/${requestId}"]`).first().click();
    await page.getByText('ACME fixes the slow index, TICKET-77').waitFor();
    await expectAccessible(page, 'one-time account (approved)');
    await screenshot(page, 'one-time-account');

    await stepUp(page, 'Claim', freshCode(vault, enrolment.secret), 'Claim now');
    const panel = page.getByRole('region', { name: 'Your one-time account' });
    await panel.waitFor();
    const username = (await panel.getByTestId('credential-username').textContent())?.trim() ?? '';
    const password = (await panel.getByTestId('credential-password').textContent())?.trim() ?? '';
    expect(username).toMatch(/^v[a-z0-9]*_[0-9a-f]{10}$/);
    expect(await real.canLogin(username, password)).toBe(true);
    // a ready-to-paste hint: psql URI with user, host and port, never the password
    const hints = await panel.getByRole('listitem').allTextContents();
    expect(hints.join('\n')).toContain(`postgresql://${username}@${String(real.body.host)}:${String(real.body.port)}`);
    expect(hints.join('\n')).not.toContain(password);
    await expectAccessible(page, 'one-time account (claimed)');
    const secrets = [password, vendor.password, enrolment.secret];
    await expectNoSecretsInBrowser(page, secrets);

    await page.getByRole('button', { name: 'Revoke' }).click();
    await page.getByRole('status').getByText(/^Revoked/).waitFor();
    await page.locator('.status-line .badge').getByText('revoked', { exact: true }).waitFor();
    expect(await page.content()).not.toContain(password);
    expect(await real.canLogin(username, password)).toBe(false);
    expect(await real.accountExists(username)).toBe(false);
    await expectNoSecretsInBrowser(page, secrets);
    expect(problems).toEqual({ errors: [], csp: [] });
  }, 120_000);
});

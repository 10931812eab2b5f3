import { randomBytes } from 'node:crypto';
import type { Browser, Page } from 'playwright-core';
import { DESKTOP, expectAccessible, expectNoSecretsInBrowser, launchChromium, newPerson, freshCode, PHONE, PortalVault, screenshot, watchPage } from '../support/browser';
import { REAL_TARGETS, RealTarget } from '../support/targets/real';
import { addVirtualAuthenticator, cloneInto, type VirtualAuthenticator } from '../support/virtual-authenticator';
import type { TestUser } from '../support/vault';
import { addAccount, addRealTarget, enrolSecurityKey, openMe, freePort, signInWithKey, startLocalhostVault, stepUpForm, stepUpWithKey } from './identity-ui';
import { go, signIn, stepUp } from './portal-ui';

/**
 * Security keys in real Chromium (its DevTools virtual authenticator: CTAP2, user verification, resident keys) against
 * the real vault at http://localhost:<port>: an operator and an approver who have never signed in each enrol a
 * security key as their first factor in the portal, sign in again with password + key, and every step-up of the
 * checkout runs on the key (request, approve at phone width, reveal: the password logs in to a real PostgreSQL).
 * The approver adds an authenticator app from the Me page (a key step-up first). Then the operator's key is cloned
 * with a lower signature counter: the clone's step-up is refused, the key is flagged (the audit has
 * webauthn.clone_suspected, admins are alerted), the operator's sessions end and the key is refused at sign-in; an
 * administrator sees the suspected copy on the user's page and removes it, and the operator enrols a new key.
 */
describe('security keys in the portal: enrol, sign in, step up a checkout and an approval, a clone refused (browser e2e)', () => {
  let vault: PortalVault;
  let browser: Browser;
  let real: RealTarget;
  let operator: TestUser;
  let approver: TestUser;
  let accountId: string;
  let targetId: string;
  const account = { username: 'ledger_owner', password: `Orig-${randomBytes(10).toString('hex')}` };

  beforeAll(async () => {
    const port = await freePort();
    [vault, browser, real] = await Promise.all([startLocalhostVault(port), launchChromium(), REAL_TARGETS.postgres()]);
    // password only: their first sign-in in the portal asks them to enrol
    operator = await vault.createUser(['operator'], { enroll: false });
    approver = await vault.createUser(['approver'], { enroll: false });
    targetId = await addRealTarget(vault, real, 'ledger-db');
    accountId = await addAccount(vault, real, targetId, account, { approvalsRequired: 1, maxCheckoutTtlSeconds: 14400 });
  });

  afterAll(async () => {
    await browser?.close();
    await real?.stop();
    await vault?.close();
  });

  const audit = (type: string, actorId: string) =>
    vault.db.query<{ details: Record<string, unknown>; outcome: string }>('SELECT details, outcome FROM audit_events WHERE type = $1 AND actor_id = $2 ORDER BY seq', [type, actorId]);

  /** A person's page with a security key plugged in, signed in for the first time and enrolled with that key. */
  async function enrolled(user: TestUser, keyName: string, viewport: { width: number; height: number } = DESKTOP): Promise<{ page: Page; key: VirtualAuthenticator }> {
    const page = await (await newPerson(browser, vault.origin, viewport)).newPage();
    const key = await addVirtualAuthenticator(page);
    await signIn(page, user.username, user.password);
    await enrolSecurityKey(page, keyName);
    await page.getByRole('heading', { level: 1 }).waitFor();
    return { page, key };
  }

  it('enrols a key as the first factor, signs in with it, and steps up a checkout request, an approval and a reveal with it', async () => {
    // the operator: first sign-in, then the enrolment page's choice
    const op = await (await newPerson(browser, vault.origin, DESKTOP)).newPage();
    const opProblems = watchPage(op);
    const opKey = await addVirtualAuthenticator(op);
    await signIn(op, operator.username, operator.password);
    await op.getByRole('heading', { name: 'Set up your authenticator' }).waitFor();
    await op.getByRole('radio', { name: /Security key or passkey/ }).check();
    await op.getByRole('form', { name: 'Add your security key' }).waitFor();
    await expectAccessible(op, 'enrolment (security key chosen)');
    await screenshot(op, 'enrol-security-key');
    await enrolSecurityKey(op, 'YubiKey 5C');
    expect(await opKey.credentials()).toHaveLength(1);
    // the password-only session ended with the enrolment: the page carries on with the fresh one
    await openMe(op, operator.username);
    const keys = op.getByRole('table', { name: 'Your security keys' });
    await keys.getByRole('cell', { name: 'YubiKey 5C', exact: true }).waitFor();
    await keys.getByText('in use', { exact: false }).waitFor();
    await expectAccessible(op, 'me (security keys)');
    await screenshot(op, 'me-security-keys');

    // sign out, sign in again: the password, then the key (the login challenge comes only after the right password)
    await op.getByRole('button', { name: 'Sign out' }).first().click();
    await op.waitForURL(/\/sign-in$/);
    await signInWithKey(op, operator.username, operator.password, () => expectAccessible(op, 'sign-in (security key step)'));
    const logins = await audit('auth.login', operator.id);
    expect(logins.at(-1)).toMatchObject({ outcome: 'success', details: { mfa: 'webauthn' } });

    // the checkout request, stepped up with the key (no code field: the operator has no authenticator app)
    await op.goto(`/portal/accounts/${accountId}`);
    const request = op.getByRole('form', { name: 'Request a checkout' });
    await request.getByLabel('Why do you need it?').fill('CHG-0042: close the ledger month');
    expect(await request.getByLabel('Authenticator code').count()).toBe(0);
    await request.getByRole('button', { name: 'Request checkout with security key' }).click();
    await op.waitForURL(/\/portal\/checkouts\/[0-9a-f-]{36}$/);
    const checkoutId = op.url().split('/').pop()!;
    await statusIs(op, 'pending approval');

    // the approver enrols a key on a phone and approves with it
    const { page: ap, key: apKey } = await enrolled(approver, 'Phone passkey', PHONE);
    const apProblems = watchPage(ap);
    await go(ap, 'Approvals');
    const card = ap.getByRole('article', { name: `Checkout request ${checkoutId.slice(0, 8)}` });
    await card.waitFor();
    await card.getByRole('button', { name: 'Approve', exact: true }).click();
    await stepUpForm(card).getByRole('button', { name: /security key/ }).waitFor();
    await expectAccessible(ap, 'approvals (security key step-up, 390 px)');
    await stepUpForm(card).getByRole('button', { name: /security key/ }).click();
    await card.waitFor({ state: 'detached' });
    await statusIs(op, 'active');

    // reveal with the key: the password logs in to the target
    await stepUpWithKey(op, 'Reveal password');
    const shown = (await op.getByTestId('credential-password').textContent())?.trim() ?? '';
    expect(shown).toBe(account.password);
    expect(await real.canLogin(account.username, shown)).toBe(true);

    // every step-up was the key's: verified with method webauthn, none with a code
    const verified = [...(await audit('mfa.verified', operator.id)), ...(await audit('mfa.verified', approver.id))];
    expect(verified.length).toBeGreaterThanOrEqual(3);
    expect(verified.map((v) => v.details.method)).toEqual(verified.map(() => 'webauthn'));

    // the approver adds an authenticator app as a second way in: a step-up with the key first, then its QR code
    await ap.goto('/portal/me');
    await stepUpWithKey(ap, 'Set up an authenticator app');
    const appSecret = ((await ap.locator('code.secret').textContent()) ?? '').replace(/\s+/g, '');
    const confirm = ap.getByRole('form', { name: 'Confirm your authenticator' });
    await confirm.getByLabel('Code from your authenticator').fill(freshCode(vault, appSecret));
    await confirm.getByRole('button', { name: 'Confirm' }).click();
    await ap.getByRole('status').getByText('Authenticator app added', { exact: false }).waitFor();
    await ap.locator('dl.facts dt:text-is("Authenticator app") + dd').getByText('set up', { exact: true }).waitFor();
    const [totp] = await vault.db.query<{ set: boolean }>('SELECT mfa_secret IS NOT NULL AS set FROM users WHERE id = $1', [approver.id]);
    expect(totp.set).toBe(true);

    // a new phone: the old passkey removed (confirmed with it one last time), then the new one added on the Me page —
    // with no usable key left, the app's code confirms it (the new passkey is another authenticator)
    const apKeys = ap.getByRole('table', { name: 'Your security keys' });
    await stepUpWithKey(ap, 'Remove Phone passkey');
    // (at phone width the rows are stacked cards: a cell's accessible name starts with its column's label)
    await apKeys.getByText('Phone passkey', { exact: true }).waitFor({ state: 'detached' });
    await apKey.remove();
    await addVirtualAuthenticator(ap);
    await ap.getByLabel('Name of the new key').fill('Backup key');
    await stepUp(ap, 'Add security key', freshCode(vault, appSecret), 'Continue');
    await apKeys.getByText('Backup key', { exact: true }).waitFor();
    expect(await vault.db.query('SELECT name FROM webauthn_credentials WHERE user_id = $1', [approver.id])).toEqual([{ name: 'Backup key' }]);
    for (const page of [op, ap]) await expectNoSecretsInBrowser(page, [shown, operator.password, approver.password, appSecret]);
    expect([opProblems.errors, apProblems.errors, opProblems.csp, apProblems.csp]).toEqual([[], [], [], []]);

    // a copy of the operator's key made before its last uses (a lower signature counter) is refused and flagged
    const [original] = await opKey.credentials();
    expect(original.signCount).toBeGreaterThan(1);
    await cloneInto(op, opKey, 1);
    await op.getByRole('button', { name: 'Extend', exact: true }).click();
    await stepUpForm(op).getByRole('button', { name: /security key/ }).click();
    await stepUpForm(op).getByRole('alert').getByText('MFA_INVALID').waitFor();
    const [flagged] = await vault.db.query<{ flagged_at: Date | null }>('SELECT flagged_at FROM webauthn_credentials WHERE user_id = $1', [operator.id]);
    expect(flagged.flagged_at).not.toBeNull();
    expect(await vault.db.query('SELECT 1 FROM audit_events WHERE type = $1 AND subject_id = $2', ['webauthn.clone_suspected', operator.id])).toHaveLength(1);
    // administrators (and auditors) are told
    const alerts = await vault.db.query('SELECT 1 FROM notification_events WHERE type = $1 AND subject_id = $2', ['alert.webauthn_clone_suspected', operator.id]);
    expect(alerts).toHaveLength(1);
    // nothing was extended: the refused step-up did not act
    expect((await audit('checkout.extended', operator.id)).length).toBe(0);

    // a suspected clone ends every session of the user: the checkout page's next read (it polls an active checkout)
    // finds its session gone and the portal goes to the sign-in page
    await op.waitForURL(/\/portal\/sign-in$/);
    await op.getByText('Your session has ended', { exact: false }).waitFor();

    // and the key is refused at sign-in: the vault offers no challenge for a flagged key, nothing to sign, no code to ask
    const form = op.getByRole('form', { name: 'Sign in' });
    await form.getByLabel('Username').fill(operator.username);
    await form.getByLabel('Password', { exact: true }).fill(operator.password);
    await form.getByRole('button', { name: 'Sign in' }).click();
    await form.getByRole('alert').getByText('SECURITY_KEY_UNUSABLE').waitFor();
    expect(await form.getByRole('button', { name: 'Use security key' }).count()).toBe(0);
    expect(await form.getByLabel('Authenticator code').count()).toBe(0);
    await expectAccessible(op, 'sign-in (no usable security key)');

    // recovery: an administrator sees the suspected copy on the user's page and removes it; the operator enrols anew
    const adm = await (await newPerson(browser, vault.origin, DESKTOP)).newPage();
    const admin = await vault.admin();
    await signIn(adm, 'admin', admin.password, await admin.code());
    await adm.goto(`/portal/users/${operator.id}`);
    const userKeys = adm.getByRole('table', { name: "The user's security keys" });
    await userKeys.getByText('suspected copy', { exact: false }).waitFor();
    await expectAccessible(adm, 'user (a flagged security key)');
    await stepUp(adm, 'Remove YubiKey 5C', await admin.code(), 'Remove');
    await adm.getByText('No security keys.').waitFor();
    await signIn(op, operator.username, operator.password);
    await enrolSecurityKey(op, 'Replacement key');
    await op.getByRole('heading', { level: 1 }).waitFor();
    expect(await vault.db.query('SELECT name FROM webauthn_credentials WHERE user_id = $1', [operator.id])).toEqual([{ name: 'Replacement key' }]);
    // the only way left to confirm cannot be removed
    await openMe(op, operator.username);
    await op.getByRole('button', { name: 'Remove Replacement key', exact: true }).click();
    await stepUpForm(op).getByRole('button', { name: /security key/ }).click();
    await stepUpForm(op).getByRole('alert').getByText('LAST_FACTOR').waitFor();
    await stepUpForm(op).getByRole('alert').getByText('only way to confirm', { exact: false }).waitFor();
  }, 240_000);

  it('a user with an authenticator app adds a key on the Me page; an account that requires a key refuses the code in words, the key works', async () => {
    const both = await vault.createUser(['operator']);
    const strict = { username: 'payroll_owner', password: `Orig-${randomBytes(10).toString('hex')}` };
    const strictId = await addAccount(vault, real, targetId, strict, { approvalsRequired: 0, requireWebauthn: true });
    const page = await (await newPerson(browser, vault.origin, DESKTOP)).newPage();
    const problems = watchPage(page);
    await addVirtualAuthenticator(page);
    await signIn(page, both.username, both.password, await both.code());
    await openMe(page, both.username);
    await page.getByLabel('Name of the new key').fill('Desk key');
    await stepUp(page, 'Add security key', await both.code(), 'Continue');
    await page.getByRole('table', { name: 'Your security keys' }).getByRole('cell', { name: 'Desk key', exact: true }).waitFor();

    // both ways are offered; the account's policy takes only the key
    await page.goto(`/portal/accounts/${strictId}`);
    const request = page.getByRole('form', { name: 'Request a checkout' });
    await request.getByLabel('Why do you need it?').fill('CHG-0043: payroll run');
    await request.getByLabel('Authenticator code').fill(await both.code());
    await request.getByRole('button', { name: 'Request checkout', exact: true }).click();
    await request.getByRole('alert').getByText('WEBAUTHN_REQUIRED').waitFor();
    await request.getByRole('alert').getByText('needs your security key', { exact: false }).waitFor();
    await expectAccessible(page, 'account (code refused: a key is required)');
    await request.getByRole('button', { name: 'Request checkout with security key' }).click();
    await page.waitForURL(/\/portal\/checkouts\/[0-9a-f-]{36}$/);
    await statusIs(page, 'active');
    expect((await audit('mfa.verified', both.id)).at(-1)?.details.method).toBe('webauthn');
    expect(problems).toEqual({ errors: [], csp: [] });
  }, 120_000);

  it("an assertion Chromium made for one action is refused for another, accepted once, refused when replayed, and never answers another challenge", async () => {
    const user = await vault.createUser(['operator'], { enroll: false });
    const { page } = await enrolled(user, 'Bound key');
    const [key] = await vault.db.query<{ id: string }>('SELECT id FROM webauthn_credentials WHERE user_id = $1', [user.id]);
    await page.evaluate(PAGE_STEP_UP);
    const mute = (kind: string) => ({ method: 'PATCH', path: '/v1/me', body: { mutedNotifications: [kind] } });
    const x = mute('request.denied');
    const call = <T>(fn: string, ...args: unknown[]) => page.evaluate(`__stepUp.${fn}(${args.map((a) => JSON.stringify(a)).join(', ')})`) as Promise<T>;
    type Answer = { status: number; body: { code?: string; mutedNotifications?: string[] } | null };
    const muted = async () => (await vault.db.query<{ muted: string[] }>('SELECT muted_notifications AS muted FROM users WHERE id = $1', [user.id]))[0].muted;

    // (a) the key signs a challenge bound to X (mute request.denied); sent with another body or another action: refused,
    // nothing changed
    const forX = await call<{ options: unknown }>('challenge', x);
    const assertion = await call<Record<string, unknown>>('sign', forX.options);
    const otherBody = await call<Answer>('send', mute('request.approved'), assertion);
    expect([otherBody.status, otherBody.body?.code]).toEqual([401, 'MFA_INVALID']);
    const otherAction = await call<Answer>('send', { method: 'DELETE', path: `/v1/me/webauthn/credentials/${key.id}` }, assertion);
    expect([otherAction.status, otherAction.body?.code]).toEqual([401, 'MFA_INVALID']);
    expect(await muted()).toEqual([]);
    expect(await vault.db.query('SELECT 1 FROM webauthn_credentials WHERE id = $1', [key.id])).toHaveLength(1);

    // (b) with X itself: accepted once; the same assertion again: refused as a replay
    const once = await call<Answer>('send', x, assertion);
    expect([once.status, once.body?.mutedNotifications]).toEqual([200, ['request.denied']]);
    const replay = await call<Answer>('send', x, assertion);
    expect([replay.status, replay.body?.code]).toEqual([401, 'MFA_REPLAYED']);

    // (c) two challenges for Y; the answer to the first, presented as the second's (its clientDataJSON naming challenge
    // 2, the signature over challenge 1): refused, and challenge 2 is still good for its own answer
    const y = mute('request.lapsed');
    const first = await call<{ options: unknown }>('challenge', y);
    const second = await call<{ options: { challenge: string } }>('challenge', y);
    const answerToFirst = await call<Record<string, unknown>>('sign', first.options);
    const posing = await call<Record<string, unknown>>('renamed', answerToFirst, second.options.challenge);
    const refused = await call<Answer>('send', y, posing);
    expect([refused.status, refused.body?.code]).toEqual([401, 'MFA_INVALID']);
    expect(await muted()).toEqual(['request.denied']);
    const answerToSecond = await call<Answer>('send', y, await call<Record<string, unknown>>('sign', second.options));
    expect([answerToSecond.status, answerToSecond.body?.mutedNotifications]).toEqual([200, ['request.lapsed']]);
    // every refusal audited as a failed step-up of this user, with the method
    const failed = await audit('mfa.failed', user.id);
    expect(failed.length).toBeGreaterThanOrEqual(4);
    expect(failed.map((f) => f.details.method)).toEqual(failed.map(() => 'webauthn'));
  }, 120_000);
});

/**
 * In the page, with the session cookie and its CSRF token, as any script of the portal's origin could: a step-up
 * challenge for an action, the page's authenticator signing it (navigator.credentials.get), and the action sent with
 * `X-MFA-Assertion`; `renamed` swaps the challenge its clientDataJSON names (the signature stays the original's).
 */
const PAGE_STEP_UP = `window.__stepUp = (() => {
  const b64u = (bytes) => { let s = ''; for (const b of bytes) s += String.fromCharCode(b); return btoa(s).replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, ''); };
  const unb64u = (text) => Uint8Array.from(atob(text.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
  let csrf;
  const headers = async (extra) => {
    csrf ??= (await (await fetch('/v1/auth/session')).json()).csrfToken;
    return { 'content-type': 'application/json', 'x-csrf-token': csrf, ...extra };
  };
  return {
    async challenge(action) {
      const r = await fetch('/v1/me/webauthn/step-up', { method: 'POST', headers: await headers({}), body: JSON.stringify(action) });
      if (r.status !== 200) throw new Error('step-up challenge: ' + r.status + ' ' + (await r.text()));
      return r.json();
    },
    async sign(options) {
      const credential = await navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options) });
      return credential.toJSON();
    },
    renamed(assertion, challenge) {
      const client = JSON.parse(new TextDecoder().decode(unb64u(assertion.response.clientDataJSON)));
      client.challenge = challenge;
      return { ...assertion, response: { ...assertion.response, clientDataJSON: b64u(new TextEncoder().encode(JSON.stringify(client))) } };
    },
    async send(action, assertion) {
      const r = await fetch(action.path, { method: action.method, headers: await headers({ 'x-mfa-assertion': b64u(new TextEncoder().encode(JSON.stringify(assertion))) }), body: action.body ? JSON.stringify(action.body) : undefined });
      return { status: r.status, body: await r.json().catch(() => null) };
    },
  };
})()`;

/** Waits until the checkout page's status badge reads `status`. */
async function statusIs(page: Page, status: string): Promise<void> {
  await page.locator('.status-line .badge').getByText(status, { exact: true }).waitFor();
}

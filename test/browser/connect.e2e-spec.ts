import { randomBytes } from 'node:crypto';
import type { Browser } from 'playwright-core';
import { expectAccessible, expectNoSecretsInBrowser, launchChromium, newPerson, PortalVault, startPortalVault, watchPage } from '../support/browser';
import { execThrough, gatewayConnect, sshTargetFor } from '../support/gateway-client';
import { actingAs } from '../support/http';
import type { SshdHandle } from '../support/targets/sshd';
import type { TestUser } from '../support/vault';
import { signIn, stepUp } from './portal-ui';

/**
 * The Connect panel in real Chromium against the real vault with its SSH gateway and a real sshd: for a brokered-only
 * checkout the operator sees no reveal, asks for a gateway ticket with a fresh code, and the ticket the page shows
 * logs in through the gateway as the account; the account's password never reaches the browser, and the ticket
 * leaves the page when it is hidden.
 */
describe('connect through the SSH gateway from the portal (browser e2e)', () => {
  let vault: PortalVault;
  let browser: Browser;
  let sshd: SshdHandle;
  let operator: TestUser;
  const account = { username: `vb${randomBytes(4).toString('hex')}`, password: `Pw-${randomBytes(12).toString('hex')}` };
  let checkoutId: string;

  beforeAll(async () => {
    [vault, browser] = await Promise.all([startPortalVault({ gateway: true }), launchChromium()]);
    const admin = await vault.admin();
    operator = await vault.createUser(['operator']);
    let targetId: string;
    ({ sshd, targetId } = await sshTargetFor(vault, admin, 'gw-portal'));
    await sshd.createUser(account.username, account.password);
    const created = await actingAs(vault, admin).post('/v1/accounts', { targetId, ...account, policy: { brokeredOnly: true } }, true).expect(201);
    checkoutId = (await actingAs(vault, operator).post('/v1/checkouts', { accountId: created.body.id, justification: 'portal gateway e2e' }, true).expect(201)).body.id;
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await vault?.close();
    await sshd?.stop();
  });

  it('brokered only: no reveal; a ticket from the Connect panel logs in through the gateway; nothing secret stays in the browser', async () => {
    const page = await (await newPerson(browser, vault.origin)).newPage();
    const problems = watchPage(page);
    await signIn(page, operator.username, operator.password, await operator.code());
    await page.goto(`/portal/checkouts/${checkoutId}`);
    const panel = page.getByRole('region', { name: 'Connect through the SSH gateway' });
    await panel.waitFor();
    expect(await page.getByRole('button', { name: 'Reveal password' }).count()).toBe(0);
    await panel.getByText(vault.gateway!.hostKeySha256).waitFor();
    await stepUp(panel, 'Get a connection ticket', await operator.code(), 'Get ticket');
    const shown = (await panel.getByTestId('gateway-ticket').textContent()) ?? '';
    expect(shown).toMatch(/^vgt_[\w-]{43}$/);
    expect(await panel.getByTestId('gateway-command').textContent()).toBe(`ssh -p ${vault.gateway!.port} ${account.username}@127.0.0.1`);
    await expectAccessible(page, 'checkout (connect ticket)');

    const c = await gatewayConnect(vault.gateway!, { username: account.username, password: shown });
    try {
      expect((await execThrough(c, 'id -un')).stdout).toBe(`${account.username}\n`);
    } finally {
      c.end();
    }
    await panel.getByRole('button', { name: 'Hide now' }).click();
    await panel.getByTestId('gateway-ticket').waitFor({ state: 'detached' });
    await expectNoSecretsInBrowser(page, [account.password, shown]);
    expect(problems).toEqual({ errors: [], csp: [] });
  });
});

import { createServer } from 'node:net';
import type { Locator, Page } from 'playwright-core';
import { startPortalVault, type PortalVault } from '../support/browser';
import type { RealTarget } from '../support/targets/real';

/**
 * What the identity browser tests (identity-*.e2e-spec.ts) share: a vault the browser reaches as `http://localhost:<port>`
 * and what a person does with a security key or a single sign-on provider in the portal.
 */

/** A free loopback TCP port (listened on and closed: the vault takes it next). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * The portal vault at `http://localhost:<port>`: WebAuthn takes a domain as its relying party id (an IP address such as
 * 127.0.0.1 is refused by the browser), and a secure context (http is one only for localhost). The port is chosen
 * first so that the vault's configured origin (VAULT_WEBAUTHN_ORIGIN, VAULT_PUBLIC_URL: the OIDC callback) is the one
 * the browser reports.
 */
export async function startLocalhostVault(port: number, env: Record<string, string> = {}): Promise<PortalVault> {
  const origin = `http://localhost:${port}`;
  const vault = await startPortalVault({ env: { VAULT_PUBLIC_URL: origin, VAULT_WEBAUTHN_ORIGIN: origin, VAULT_WEBAUTHN_RP_ID: 'localhost', ...env } }, port);
  return Object.assign(vault, { origin });
}

/** An account on a registered target (made on the real target first, as its administrator would); answers its id. */
export async function addAccount(vault: PortalVault, real: RealTarget, targetId: string, account: { username: string; password: string }, policy: object): Promise<string> {
  await real.createAccount(account.username, account.password);
  return (await asAdmin(vault, '/v1/accounts', { targetId, ...account, policy })).id;
}

/** Registers the real target as `targetName`; answers its id. */
export async function addRealTarget(vault: PortalVault, real: RealTarget, targetName: string): Promise<string> {
  return (await asAdmin(vault, '/v1/targets', { name: targetName, ...real.body })).id;
}

async function asAdmin(vault: PortalVault, path: string, body: object): Promise<{ id: string }> {
  const admin = await vault.admin();
  return (await vault.http().post(path).set('Authorization', admin.auth).set('X-MFA-Code', await admin.code()).send(body).expect(201)).body as { id: string };
}

/** On the enrolment page: chooses a security key, names it, and adds it (the page's authenticator answers). */
export async function enrolSecurityKey(page: Page, name: string): Promise<void> {
  await page.getByRole('heading', { name: 'Set up your authenticator' }).waitFor();
  await page.getByRole('radio', { name: /Security key or passkey/ }).check();
  const form = page.getByRole('form', { name: 'Add your security key' });
  await form.getByLabel('Name of the key').fill(name);
  await form.getByRole('button', { name: 'Add security key' }).click();
  await page.getByRole('heading', { name: 'Set up your authenticator' }).waitFor({ state: 'detached' });
}

/** Signs in with the password, then, at the second step (`atKeyStep` runs there first), with the security key. */
export async function signInWithKey(page: Page, username: string, password: string, atKeyStep?: () => Promise<unknown>): Promise<void> {
  await page.goto('/portal/sign-in');
  const form = page.getByRole('form', { name: 'Sign in' });
  await form.getByLabel('Username').fill(username);
  await form.getByLabel('Password', { exact: true }).fill(password);
  await form.getByRole('button', { name: 'Sign in' }).click();
  await form.getByRole('button', { name: 'Use security key' }).waitFor();
  await atKeyStep?.();
  await form.getByRole('button', { name: 'Use security key' }).click();
  await page.waitForURL((url) => !url.pathname.endsWith('/sign-in'));
}

/** Opens the Me page from the header's link (desktop width). */
export async function openMe(page: Page, username: string): Promise<void> {
  await page.getByRole('link', { name: `Me (${username})`, exact: true }).click();
  await page.getByRole('heading', { level: 1, name: 'Me' }).waitFor();
}

/** The step-up form a button opened ("<label>: confirm with your authenticator"). */
export function stepUpForm(within: Page | Locator): Locator {
  return within.getByRole('form', { name: /confirm with your authenticator/ });
}

/** Presses a step-up button and confirms with the security key instead of a code; waits until the prompt closes. */
export async function stepUpWithKey(within: Page | Locator, label: string | RegExp): Promise<void> {
  await within.getByRole('button', { name: label, exact: typeof label === 'string' }).click();
  const form = stepUpForm(within);
  await form.getByRole('button', { name: /security key/ }).click();
  await form.waitFor({ state: 'detached' });
}

import { Locator, Page } from 'playwright-core';
import jsQR from 'jsqr';

/**
 * What a person does in the portal, by the accessible names the pages give (labels, button text, headings), the way
 * someone using a screen reader or the keyboard finds them. Shared by the browser tests and the demo test.
 */

/** Signs in on /portal/sign-in; `code` once the user is enrolled (left empty on a first sign-in). */
export async function signIn(page: Page, username: string, password: string, code?: string): Promise<void> {
  await page.goto('/portal/sign-in');
  const form = page.getByRole('form', { name: 'Sign in' });
  await form.getByLabel('Username').fill(username);
  await form.getByLabel('Password', { exact: true }).fill(password);
  if (code) await form.getByLabel('Authenticator code').fill(code);
  await form.getByRole('button', { name: 'Sign in' }).click();
  // signed in: the portal moves on (home, the page asked for, or the enrolment)
  await page.waitForURL((url) => !url.pathname.endsWith('/sign-in'));
}

/** The little of the DOM the page-side functions below use (the repository's tsconfig has no DOM library). */
interface ImageElement {
  naturalWidth: number;
  naturalHeight: number;
}
declare const document: {
  createElement(tag: 'canvas'): {
    width: number;
    height: number;
    getContext(kind: '2d'): { drawImage(img: ImageElement, x: number, y: number): void; getImageData(x: number, y: number, w: number, h: number): { data: ArrayLike<number> } };
  };
};

/** What the enrolment page showed, read as an authenticator app and a person would. */
export interface Enrolment {
  /** The otpauth URI decoded from the QR code on the page. */
  otpauthUri: string;
  /** Its `secret` parameter: what the authenticator app keeps. */
  secret: string;
}

/**
 * On /portal/enrol: decodes the QR code from the page's pixels (drawn to a canvas in the page, decoded here with jsQR)
 * as an authenticator app scanning the screen would, and checks the key shown for typing in is the same secret.
 */
export async function readEnrolment(page: Page): Promise<Enrolment> {
  await page.getByRole('heading', { name: 'Set up your authenticator' }).waitFor();
  const img = page.getByRole('img', { name: /QR code/ });
  await img.waitFor();
  const { width, height, rgba } = await img.evaluate((el: ImageElement) => {
    const canvas = document.createElement('canvas');
    canvas.width = el.naturalWidth;
    canvas.height = el.naturalHeight;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(el, 0, 0);
    return { width: canvas.width, height: canvas.height, rgba: Array.from(ctx.getImageData(0, 0, canvas.width, canvas.height).data) };
  });
  const decoded = jsQR(Uint8ClampedArray.from(rgba), width, height);
  if (!decoded) throw new Error(`no QR code could be decoded from the ${width}x${height} image on the enrolment page`);
  const uri = new URL(decoded.data);
  const secret = uri.searchParams.get('secret') ?? '';
  if (uri.protocol !== 'otpauth:' || uri.host !== 'totp' || !/^[A-Z2-7]{16,}=*$/.test(secret)) throw new Error('the QR code holds no TOTP otpauth URI with a base32 secret');
  const typedKey = ((await page.locator('code.secret').textContent()) ?? '').replace(/\s+/g, '');
  if (typedKey !== secret) throw new Error('the key shown for typing in is not the secret the QR code carries');
  return { otpauthUri: decoded.data, secret };
}

/** Confirms enrolment with a code from the authenticator. */
export async function confirmEnrolment(page: Page, code: string): Promise<void> {
  const form = page.getByRole('form', { name: 'Confirm your authenticator' });
  await form.getByLabel('Code from your authenticator').fill(code);
  await form.getByRole('button', { name: 'Confirm' }).click();
  await page.getByRole('heading', { name: 'Set up your authenticator' }).waitFor({ state: 'detached' });
}

/**
 * Presses a step-up button (an MFA action: approve, reveal, claim …) and answers its code
 * prompt: the inline form titled "<label>: confirm with your authenticator". `within` narrows where the button is.
 */
export async function stepUp(within: Page | Locator, label: string | RegExp, code: string, confirmLabel?: string | RegExp): Promise<void> {
  await within.getByRole('button', { name: label, exact: typeof label === 'string' }).click();
  const form = within.getByRole('form', { name: /confirm with your authenticator/ });
  await form.getByLabel('Authenticator code').fill(code);
  await form.getByRole('button', { name: confirmLabel ?? label, exact: typeof (confirmLabel ?? label) === 'string' }).click();
  await form.waitFor({ state: 'detached' });
}

/** Follows a link of the main navigation, opening the menu first where it is folded away (phone width). */
export async function go(page: Page, label: string): Promise<void> {
  await page.getByRole('navigation', { name: 'Main', includeHidden: true }).waitFor({ state: 'attached' });
  const menu = page.getByRole('button', { name: 'Menu' });
  if (await menu.isVisible()) await menu.click();
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: label, exact: true }).click();
  await page.getByRole('heading', { level: 1 }).waitFor();
}

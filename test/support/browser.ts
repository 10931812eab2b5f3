import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Browser, BrowserContext, chromium, Page } from 'playwright-core';
import { totpAt } from './totp';
import { startTestVault, TestVault } from './vault';

/**
 * Real Chromium for the portal's browser tests (test/browser/*.e2e-spec.ts): Debian's `chromium` package, which
 * scripts/ensure-chromium.sh installs when it is missing (the tests never skip), driven by playwright-core over CDP.
 * The vault under test is the real application on a real PostgreSQL ({@link startTestVault}), listening on a loopback
 * port so the browser loads the built portal (dist/portal) from the same origin as the API, as in production.
 */

export const CHROMIUM = '/usr/bin/chromium';
const REPO = join(__dirname, '../..');
export const PORTAL_INDEX = join(REPO, 'dist/portal/index.html');
export const SCREENSHOT_DIR = join(REPO, 'docs/screenshots');

/** Viewports: a laptop, and a phone (an approver deciding from a 390-px screen). */
export const DESKTOP = { width: 1280, height: 800 } as const;
export const PHONE = { width: 390, height: 844 } as const;

/** Launches headless Chromium with the flags a container without a GPU, a sandbox or network access needs. */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: the browser tests need Debian's chromium (run scripts/test.sh, which installs it through scripts/ensure-chromium.sh)`);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    // --headless: new headless mode (Chromium's own), as every recent release ships it
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

export interface PortalVault extends TestVault {
  /** `http://127.0.0.1:<port>`: the portal is `${origin}/portal/`. */
  origin: string;
  port: number;
}

/**
 * The test vault (TestClock, fresh database) listening on a loopback port (`port`, default a free one), serving the
 * built portal.
 */
export async function startPortalVault(opts: Parameters<typeof startTestVault>[0] = {}, port = 0): Promise<PortalVault> {
  if (!existsSync(PORTAL_INDEX)) throw new Error(`${PORTAL_INDEX} is missing: the browser tests load the built portal; run \`npm run build\` first (npm test does)`);
  const vault = await startTestVault(opts);
  try {
    await vault.app.listen(port, '127.0.0.1');
  } catch (e) {
    await vault.close();
    throw e;
  }
  const bound = (vault.app.getHttpServer().address() as { port: number }).port;
  return Object.assign(vault, { origin: `http://127.0.0.1:${bound}`, port: bound });
}

/** A browser context (its own cookies and storage: one person) at a viewport, with the portal's origin as base URL. */
export async function newPerson(browser: Browser, origin: string, viewport: { width: number; height: number } = DESKTOP): Promise<BrowserContext> {
  const phone = viewport.width <= PHONE.width;
  const context = await browser.newContext({ baseURL: origin, viewport, isMobile: phone, hasTouch: phone, locale: 'en-GB', timezoneId: 'UTC' });
  // clipboard access for the copy button
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
  // a step that cannot happen fails within seconds, naming what it waited for (not at jest's test timeout)
  context.setDefaultTimeout(15_000);
  return context;
}

/**
 * What went wrong in a page that a test would not otherwise see: uncaught errors and console errors (among them CSP
 * refusals: "Refused to execute inline script…"). Failed API answers the page handles (401, 403, 409) also log a
 * console error in Chromium, so a test reads {@link PageProblems.csp} for the CSP and {@link PageProblems.errors} for
 * the page's own exceptions.
 */
export interface PageProblems {
  errors: string[];
  csp: string[];
}

export function watchPage(page: Page): PageProblems {
  const problems: PageProblems = { errors: [], csp: [] };
  page.on('pageerror', (e) => problems.errors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) problems.csp.push(m.text());
  });
  return problems;
}

/**
 * A fresh TOTP code for a user whose authenticator holds `secret` (base32), one time step past everything burned
 * before: the test clock moves 30 s on (each step is accepted once per user; the vault reads time from the clock).
 */
export function freshCode(vault: TestVault, secret: string): string {
  vault.clock.advance(30_000);
  return totpAt(secret, vault.clock.now().getTime());
}

const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

/** One axe-core finding, reduced to what a failure message needs. */
export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  targets: string[];
}

/**
 * Runs axe-core in the page (injected over CDP, which the page's CSP does not govern) and fails on any serious or
 * critical violation, naming the page, the rule and the elements. Returns every violation (minor and moderate too).
 */
export async function expectAccessible(page: Page, what: string): Promise<AxeViolation[]> {
  if (!(await page.evaluate('typeof axe === "object"'))) await page.evaluate(AXE_SOURCE);
  const violations = (await page.evaluate(RUN_AXE)) as AxeViolation[];
  const serious = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  if (serious.length) throw new Error(`axe-core: ${serious.length} serious/critical violation(s) on ${what} (${page.url()}):\n${JSON.stringify(serious, null, 2)}`);
  return violations;
}

// Page-side code is source text: the repository's tsconfig has no DOM library (it type-checks the server).
const RUN_AXE = `(async () => {
  const result = await axe.run(document, { resultTypes: ['violations'] });
  return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, targets: v.nodes.map((n) => n.target.map(String).join(' ')) }));
})()`;

/** Everything a script in the page can read from browser storage, and where it is. */
export interface BrowserStorage {
  url: string;
  localStorage: Array<[string, string]>;
  sessionStorage: Array<[string, string]>;
  /** Every IndexedDB database with the records of each of its object stores. */
  indexedDb: Array<{ name: string; stores: Record<string, unknown[]> }>;
  cacheStorage: string[];
  /** `document.cookie`: the cookies a script can read (the session cookie is HttpOnly: never here). */
  cookie: string;
}

export async function readBrowserStorage(page: Page): Promise<BrowserStorage> {
  return (await page.evaluate(READ_STORAGE)) as BrowserStorage;
}

const READ_STORAGE = `(async () => {
  const entries = (s) => Array.from({ length: s.length }, (_, i) => [s.key(i), s.getItem(s.key(i))]);
  const req = (r) => new Promise((resolve, reject) => { r.onsuccess = () => resolve(r.result); r.onerror = () => reject(r.error); });
  const indexedDb = [];
  for (const { name } of await indexedDB.databases()) {
    if (!name) continue;
    const db = await req(indexedDB.open(name));
    const stores = {};
    for (const store of Array.from(db.objectStoreNames)) stores[store] = await req(db.transaction(store).objectStore(store).getAll());
    db.close();
    indexedDb.push({ name, stores });
  }
  return {
    url: location.href,
    localStorage: entries(localStorage),
    sessionStorage: entries(sessionStorage),
    indexedDb,
    cacheStorage: 'caches' in window ? await caches.keys() : [],
    cookie: document.cookie,
  };
})()`;

/** Bearer, service and browser-session tokens all carry a `pv?_` prefix (pvt_, pvs_, pvb_). */
const TOKEN_PATTERN = /\bpv[a-z]_[A-Za-z0-9_-]{8,}/;

/**
 * No secret where a script (or anyone with the disk) could read it: not in localStorage, sessionStorage, IndexedDB,
 * Cache Storage, script-readable cookies or the URL — neither the given secrets (passwords, TOTP seeds, codes, revealed
 * credentials) nor anything shaped like a vault token. Also: the session cookie is not readable by script.
 */
export async function expectNoSecretsInBrowser(page: Page, secrets: Array<string | undefined>): Promise<BrowserStorage> {
  const storage = await readBrowserStorage(page);
  const text = JSON.stringify(storage);
  const found = secrets.filter((s): s is string => !!s && s.length >= 6 && text.includes(s));
  if (found.length) throw new Error(`browser storage holds ${found.length} secret(s) (${found.map((s) => `${s.slice(0, 2)}…`).join(', ')}): ${Object.keys(storage).join(', ')} checked`);
  expect(text).not.toMatch(TOKEN_PATTERN);
  expect(storage.cookie).not.toContain('vault_session');
  return storage;
}

/**
 * Writes `docs/screenshots/<name>.png` (the README shows them) when `UPDATE_SCREENSHOTS=1` or when it does not exist
 * yet, so an ordinary test run leaves the committed pictures alone.
 */
export async function screenshot(page: Page, name: string): Promise<void> {
  const file = join(SCREENSHOT_DIR, `${name}.png`);
  if (process.env.UPDATE_SCREENSHOTS !== '1' && existsSync(file)) return;
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  await page.screenshot({ path: file, fullPage: true, animations: 'disabled', caret: 'hide' });
}

import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, Server } from 'node:http';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { expectNoSecretsInBrowser, launchChromium, newPerson, PORTAL_INDEX, PortalVault, startPortalVault, watchPage } from '../support/browser';
import { REAL_TARGETS, RealTarget } from '../support/targets/real';
import type { TestUser } from '../support/vault';
import { signIn } from './portal-ui';

/**
 * The portal's security proofs as the browser sees them (test/e2e/portal-*.e2e-spec.ts prove the same rules at the
 * HTTP level): the session cookie's flags, a cross-site (and a same-site, cross-origin) form post and a request
 * without the CSRF header are refused and change nothing, the CSP and the other headers on what the browser loads, no
 * inline script in the built page, the portal cannot be framed, sign-out and the idle timeout end the session.
 *
 * The victim is an operator with an active checkout: checking it in is a POST without step-up, what a forged request
 * would aim at.
 */
describe('portal security in the browser (browser e2e)', () => {
  let vault: PortalVault;
  let browser: Browser;
  let real: RealTarget;
  let operator: TestUser;
  let attacker: Server;
  let attackerPort: number;
  let context: BrowserContext;
  let page: Page;
  let checkoutId: string;

  /** The checkout's status, read through the API (not the browser). */
  const statusOf = async (id: string) => (await vault.http().get(`/v1/checkouts/${id}`).set('Authorization', operator.auth).expect(200)).body.status as string;

  beforeAll(async () => {
    [vault, browser, real] = await Promise.all([startPortalVault(), launchChromium(), REAL_TARGETS.postgres()]);
    const admin = await vault.admin();
    operator = await vault.createUser(['operator']);
    const target = await vault.http().post('/v1/targets').set('Authorization', admin.auth).set('X-MFA-Code', await admin.code()).send({ name: 'ledger-db', ...real.body }).expect(201);
    const password = `Orig-${randomBytes(10).toString('hex')}`;
    await real.createAccount('ledger_owner', password);
    const account = await vault.http().post('/v1/accounts').set('Authorization', admin.auth).set('X-MFA-Code', await admin.code()).send({ targetId: target.body.id, username: 'ledger_owner', password }).expect(201);
    const checkout = await vault.http().post('/v1/checkouts').set('Authorization', operator.auth).set('X-MFA-Code', await operator.code()).send({ accountId: account.body.id, justification: 'month-end close' }).expect(201);
    checkoutId = checkout.body.id;

    // another origin's pages: a form that posts to the vault, and a frame around the portal
    attacker = createServer((req, res) => {
      const victim = `${vault.origin}/v1/checkouts/${checkoutId}/checkin`;
      res.setHeader('Content-Type', 'text/html');
      res.end(
        req.url === '/frame'
          ? `<!doctype html><title>frame</title><iframe src="${vault.origin}/portal/" title="portal"></iframe>`
          : `<!doctype html><title>win a prize</title><form method="post" action="${victim}"><input name="status" value="returned"><button>Claim your prize</button></form>`,
      );
    });
    attackerPort = await new Promise<number>((resolve) => attacker.listen(0, '127.0.0.1', () => resolve((attacker.address() as { port: number }).port)));

    context = await newPerson(browser, vault.origin);
    page = await context.newPage();
    await signIn(page, operator.username, operator.password, await operator.code());
    await page.getByRole('heading', { level: 1 }).waitFor();
  });

  afterAll(async () => {
    await browser?.close();
    attacker?.closeAllConnections();
    await new Promise((resolve) => (attacker ? attacker.close(resolve) : resolve(undefined)));
    await real?.stop();
    await vault?.close();
  });

  it('the session cookie is HttpOnly, SameSite=Strict, Path=/, and no script can read it', async () => {
    const cookies = await context.cookies(vault.origin);
    expect(cookies.map((c) => c.name)).toEqual(['vault_session']);
    expect(cookies[0]).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/', secure: false }); // plain http: not Secure (HTTPS: see portal-sessions)
    expect(cookies[0].value).toMatch(/^pvb_/);
    expect(await page.evaluate('document.cookie')).toBe('');
    await expectNoSecretsInBrowser(page, [operator.password, operator.secret, cookies[0].value]);
  });

  it('a request from the portal page without the CSRF header, or with a wrong one, is refused and changes nothing', async () => {
    const post = (headers: Record<string, string>) =>
      page.evaluate(
        async ({ url, headers }) => {
          const res = await fetch(url, { method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json', ...headers }, body: '{}' });
          return { status: res.status, body: await res.json() };
        },
        { url: `/v1/checkouts/${checkoutId}/checkin`, headers },
      );
    for (const headers of [{}, { 'X-CSRF-Token': 'not-the-token' }] as Array<Record<string, string>>) {
      const answer = await post(headers);
      expect(answer).toMatchObject({ status: 403, body: { code: 'CSRF_FAILED' } });
    }
    expect(await statusOf(checkoutId)).toBe('active');
  });

  it('a form posted from another origin (same site or another site) is refused and changes nothing', async () => {
    // 127.0.0.1:<other port> is the same site (SameSite does not look at ports): the cookie goes along, the CSRF check refuses;
    // localhost:<port> is another site: SameSite=Strict keeps the cookie back
    for (const [origin, status, code] of [
      [`http://127.0.0.1:${attackerPort}`, 403, 'CSRF_FAILED'],
      [`http://localhost:${attackerPort}`, 401, 'UNAUTHENTICATED'],
    ] as const) {
      const evil = await context.newPage();
      await evil.goto(`${origin}/`);
      const answered = evil.waitForResponse((r) => r.url().endsWith(`/v1/checkouts/${checkoutId}/checkin`));
      await evil.getByRole('button', { name: 'Claim your prize' }).click();
      const res = await answered;
      expect({ origin, status: res.status(), code: ((await res.json()) as { code: string }).code }).toEqual({ origin, status, code });
      expect(res.request().headers()['content-type']).toBe('application/x-www-form-urlencoded');
      await evil.close();
    }
    expect(await statusOf(checkoutId)).toBe('active');
  });

  it('the portal and the API answer with a strict CSP and the other headers; the built page has no inline script or style', async () => {
    const assetAnswer = page.waitForResponse((r) => r.url().includes('/portal/assets/') && r.url().endsWith('.js'));
    const apiAnswer = page.waitForResponse((r) => new URL(r.url()).pathname === '/v1/auth/session');
    const index = await page.goto('/portal/checkouts');
    const [asset, api] = await Promise.all([assetAnswer, apiAnswer]);
    for (const res of [index!, asset, api]) {
      const h = res.headers();
      expect(h['content-security-policy']).toMatch(/default-src 'self'/);
      expect(h['content-security-policy']).toMatch(/script-src 'self'(;|$)/);
      expect(h['content-security-policy']).toMatch(/frame-ancestors 'none'/);
      expect(h['content-security-policy']).not.toMatch(/unsafe-inline|unsafe-eval/);
      expect(h).toMatchObject({ 'referrer-policy': 'no-referrer', 'x-content-type-options': 'nosniff', 'x-frame-options': 'DENY' });
    }
    expect(index!.headers()['cache-control']).toBe('no-store');
    expect(api.headers()['cache-control']).toBe('no-store');
    expect(asset.headers()['cache-control']).toMatch(/immutable/);

    // the built page: every script is a file of its own origin, no inline handler, no style element or attribute
    const html = readFileSync(PORTAL_INDEX, 'utf8');
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)];
    expect(scripts.length).toBeGreaterThan(0);
    for (const [, attrs, body] of scripts) {
      expect(attrs).toMatch(/\ssrc="\/portal\/assets\/[^"]+\.js"/);
      expect(body.trim()).toBe('');
    }
    expect(html).not.toMatch(/\son[a-z]+\s*=|<style\b|\sstyle\s*=|javascript:/i);
    // and the built scripts set no inline event handler attributes either
    const assets = join(PORTAL_INDEX, '../assets');
    for (const file of readdirSync(assets).filter((f) => f.endsWith('.js'))) expect(readFileSync(join(assets, file), 'utf8')).not.toMatch(/setAttribute\(\s*["']on[a-z]+["']/);
  });

  it('another site cannot frame the portal', async () => {
    const evil = await context.newPage();
    await evil.goto(`http://localhost:${attackerPort}/frame`);
    await evil.waitForLoadState('load'); // the page's load waits for its frame
    const frame = evil.frames().find((f) => f !== evil.mainFrame());
    expect(frame).toBeDefined();
    // Chromium refuses to render it (frame-ancestors 'none', X-Frame-Options DENY): an error page, no portal
    expect(await frame!.locator('#root').count()).toBe(0);
    expect(frame!.url()).toMatch(/^chrome-error:/);
    await evil.close();
  });

  it('sign-out ends the session on the server; an idle session ends and the portal asks to sign in again', async () => {
    const problems = watchPage(page);
    const [before] = await context.cookies(vault.origin);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in to the PAM vault' }).waitFor();
    expect(await context.cookies(vault.origin)).toEqual([]);
    // the old cookie, replayed, is refused
    await vault.http().get('/v1/auth/session').set('Cookie', `vault_session=${before.value}`).expect(401);

    // idle: no request for longer than VAULT_PORTAL_IDLE_SECONDS (900 s by default, on the vault's clock)
    await signIn(page, operator.username, operator.password, await operator.code());
    await page.getByRole('heading', { level: 1 }).waitFor();
    vault.clock.advance(901_000);
    // the home page's live list asks again within seconds, finds the session ended, and the portal says so
    await page.getByRole('heading', { name: 'Sign in to the PAM vault' }).waitFor();
    await page.getByText('Your session has ended').waitFor();
    expect(await statusOf(checkoutId)).toBe('active');
    await expectNoSecretsInBrowser(page, [operator.password, operator.secret, before.value]);
    expect(problems.csp).toEqual([]);
  });
});

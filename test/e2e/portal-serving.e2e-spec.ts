import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestDatabase, TestDatabase } from '../support/db';
import { startTestVault, TestVault } from '../support/vault';

/**
 * The web portal as the vault serves it (issue 15): a build directory of its own per test (VAULT_PORTAL_DIR), SPA
 * fallback for deep links, cache rules, no file outside the build, the security headers on every answer, and the
 * Swagger UI still working under its own CSP.
 */
const CSP =
  "default-src 'self';script-src 'self';style-src 'self';img-src 'self' data:;connect-src 'self';font-src 'self';object-src 'none';base-uri 'none';form-action 'self';frame-ancestors 'none'";
const INDEX = '<!doctype html><html lang="en"><head><script type="module" src="/portal/assets/index-abc123.js"></script></head><body><div id="root"></div></body></html>';

describe('serving the web portal (e2e, real PostgreSQL)', () => {
  let vault: TestVault;
  let db: TestDatabase;
  let outside: string;
  const build = mkdtempSync(join(tmpdir(), 'portal-build-'));

  beforeAll(async () => {
    mkdirSync(join(build, 'dist', 'portal', 'assets'), { recursive: true });
    const dir = join(build, 'dist', 'portal');
    writeFileSync(join(dir, 'index.html'), INDEX);
    writeFileSync(join(dir, 'assets', 'index-abc123.js'), 'console.log("portal");');
    writeFileSync(join(dir, 'assets', 'index-abc123.css'), 'body{margin:0}');
    writeFileSync(join(dir, 'favicon.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>');
    writeFileSync(join(dir, '.env'), 'HIDDEN=1');
    // beside the build: what a traversal would be after
    outside = join(build, 'dist', 'secret.txt');
    writeFileSync(outside, 'OUTSIDE-THE-BUILD');
    writeFileSync(join(build, 'package.json'), '{"name":"OUTSIDE-THE-BUILD"}');
    symlinkSync(outside, join(dir, 'assets', 'link.txt'));
    db = await createTestDatabase();
    vault = await startTestVault({ db, env: { VAULT_PORTAL_DIR: dir } });
  });
  afterAll(async () => {
    await vault.close();
    await db.drop();
    rmSync(build, { recursive: true, force: true });
  });

  it('/portal/ answers index.html, no-store, with the strict CSP and the other security headers', async () => {
    const res = await vault.http().get('/portal/').expect(200);
    expect(res.text).toBe(INDEX);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers['content-security-policy']).toBe(CSP);
    expect(res.headers['referrer-policy']).toBe('no-referrer');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['x-frame-options']).toBe('DENY');
    expect(res.headers.etag).toBeUndefined();
  });

  it.each(['/portal/checkouts/0b9e4c1a-3a57-4d43-9f0e-2f1d3c3b8a11', '/portal/one-time-accounts/x', '/portal/sign-in', '/portal/audit/verify', '/portal/checkouts/'])(
    'the app route %s falls back to index.html (no-store)',
    async (path) => {
      const res = await vault.http().get(path).expect(200);
      expect(res.text).toBe(INDEX);
      expect(res.headers['cache-control']).toBe('no-store');
    },
  );

  it('/ and /portal redirect to /portal/', async () => {
    expect((await vault.http().get('/').expect(302)).headers.location).toBe('/portal/');
    expect((await vault.http().get('/portal').expect(302)).headers.location).toBe('/portal/');
  });

  it('hashed assets are cached for a year (immutable); other files of the build are not', async () => {
    const js = await vault.http().get('/portal/assets/index-abc123.js').expect(200);
    expect(js.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(js.headers['content-type']).toMatch(/javascript/);
    expect(js.headers['content-security-policy']).toBe(CSP);
    const css = await vault.http().get('/portal/assets/index-abc123.css').expect(200);
    expect(css.headers['content-type']).toMatch(/^text\/css/);
    const icon = await vault.http().get('/portal/favicon.svg').expect(200);
    expect(icon.headers['cache-control']).toBe('no-store');
  });

  it('a missing file is 404 NOT_FOUND, not the app', async () => {
    const res = await vault.http().get('/portal/assets/missing-123.js').expect(404);
    expect(res.body.code).toBe('NOT_FOUND');
  });

  it.each([
    '/portal/..%2f..%2fpackage.json',
    '/portal/..%2F..%2Fpackage.json',
    '/portal/assets/..%2f..%2fsecret.txt',
    '/portal/%2e%2e/secret.txt',
    '/portal/%2e%2e%2fsecret.txt',
    '/portal/..%5c..%5cpackage.json',
    '/portal/assets/%2e%2e%2f%2e%2e%2fsecret.txt',
    '/portal/assets/link.txt',
    '/portal/.env',
    '/portal/%2eenv',
    '/portal/index.html%00.js',
    '/portal/%E0%A4%A.js',
    '/portal//etc/passwd',
  ])('%s never serves a file outside the build (nor a dotfile or a link out of it)', async (path) => {
    const res = await vault.http().get(path);
    expect(res.text).not.toContain('OUTSIDE-THE-BUILD');
    expect(res.text).not.toContain('HIDDEN=1');
    expect(res.text).not.toContain('root:');
    expect([200, 400, 404]).toContain(res.status);
    if (res.status === 200) expect(res.text).toBe(INDEX); // a path without a dot is an app route
  });

  it('the raw ../ form (a client that does not normalise) is refused too', async () => {
    const res = await vault.http().get('/portal/../../package.json');
    expect(res.text).not.toContain('OUTSIDE-THE-BUILD');
  });

  it('every API answer carries the security headers and no-store, errors too', async () => {
    for (const res of [await vault.http().get('/v1/me').expect(401), await vault.http().get('/health/live').expect(200), await vault.http().get('/v1/nothing').expect(404)]) {
      expect(res.headers['content-security-policy']).toBe(CSP);
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.headers['x-frame-options']).toBe('DENY');
      expect(res.headers['referrer-policy']).toBe('no-referrer');
    }
  });

  it('what the body parser refuses (malformed JSON 400, too large 413) carries the headers too', async () => {
    const malformed = await vault.http().post('/v1/auth/login').set('Content-Type', 'application/json').send('{"username":').expect(400);
    const large = await vault.http().post('/v1/auth/login').set('Content-Type', 'application/json').send(JSON.stringify({ username: 'x'.repeat(70_000) })).expect(413);
    for (const res of [malformed, large]) {
      expect(res.headers['content-security-policy']).toBe(CSP);
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.headers['x-frame-options']).toBe('DENY');
    }
  });

  it('a POST to the portal is not served a page', async () => {
    const res = await vault.http().post('/portal/checkouts').send({}).expect(404);
    expect(res.body.code).toBe('NOT_FOUND');
  });

  it('the Swagger UI keeps working: external scripts only, inline styles allowed there alone, no framing', async () => {
    const page = await vault.http().get('/docs').redirects(1).expect(200);
    const csp = page.headers['content-security-policy'] as string;
    expect(csp).toContain("script-src 'self';");
    expect(csp).toContain("style-src 'self' 'unsafe-inline';");
    expect(csp).toContain("frame-ancestors 'none'");
    // every script of the page has a src on this origin (script-src 'self' allows nothing else)
    const scripts = [...page.text.matchAll(/<script([^>]*)>([\s\S]*?)<\/script>/g)];
    expect(scripts.length).toBeGreaterThan(0);
    for (const [, attrs, body] of scripts) {
      expect(attrs).toMatch(/src=["'](?!https?:|\/\/)/);
      expect(body.trim()).toBe('');
    }
    await vault.http().get('/docs/swagger-ui-init.js').expect(200);
    // the JSON document is no page: the strict policy
    expect((await vault.http().get('/docs-json').expect(200)).headers['content-security-policy']).toBe(CSP);
  });
});

describe('a portal build that lives below a dot-directory (~/.local/…, /srv/.vault/…)', () => {
  let vault: TestVault;
  const base = mkdtempSync(join(tmpdir(), 'portal-dotdir-'));
  const dir = join(base, '.vault', 'portal');
  beforeAll(async () => {
    mkdirSync(join(dir, 'assets'), { recursive: true });
    writeFileSync(join(dir, 'index.html'), INDEX);
    writeFileSync(join(dir, 'assets', 'index-abc123.js'), 'console.log("portal");');
    writeFileSync(join(dir, '.hidden.js'), 'HIDDEN=1');
    vault = await startTestVault({ env: { VAULT_PORTAL_DIR: dir } });
  });
  afterAll(async () => {
    await vault.close();
    rmSync(base, { recursive: true, force: true });
  });

  it('is served (the dotfile rule judges the path below the build only)', async () => {
    expect((await vault.http().get('/portal/checkouts/1').expect(200)).text).toBe(INDEX);
    await vault.http().get('/portal/assets/index-abc123.js').expect(200);
    await vault.http().get('/portal/.hidden.js').expect(404);
  });
});

describe('a vault without a portal build', () => {
  let vault: TestVault;
  const empty = mkdtempSync(join(tmpdir(), 'portal-none-'));
  beforeAll(async () => (vault = await startTestVault({ env: { VAULT_PORTAL_DIR: join(empty, 'nothing') } })));
  afterAll(async () => {
    await vault.close();
    rmSync(empty, { recursive: true, force: true });
  });

  it('answers 503 PORTAL_NOT_BUILT for the app and keeps the API working', async () => {
    for (const path of ['/portal/', '/portal/checkouts/1']) {
      const res = await vault.http().get(path).expect(503);
      expect(res.body).toEqual({ statusCode: 503, code: 'PORTAL_NOT_BUILT', message: expect.any(String) });
      expect(res.headers['cache-control']).toBe('no-store');
    }
    await vault.http().get('/portal/assets/index.js').expect(404);
    await vault.http().get('/health/live').expect(200);
  });
});

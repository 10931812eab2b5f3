import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestVault, TestVault } from '../support/vault';

/**
 * Adversarial review of issue 15, the portal's file server: each test is an attack that must fail (traversal in every
 * encoding, dotfiles, links out of the build, look-alike paths, redirects), kept as regression tests.
 */
const STRICT_CSP =
  "default-src 'self';script-src 'self';style-src 'self';img-src 'self' data:;connect-src 'self';font-src 'self';object-src 'none';base-uri 'none';form-action 'self';frame-ancestors 'none'";


describe('review: the portal file server under attack (e2e, real PostgreSQL)', () => {
  let vault: TestVault;
  const INDEX = '<!doctype html><html><head><script type="module" src="/portal/assets/index-abc123.js"></script></head><body></body></html>';
  const build = mkdtempSync(join(tmpdir(), 'review-portal-'));
  const dir = join(build, 'dist', 'portal');

  beforeAll(async () => {
    mkdirSync(join(dir, 'assets'), { recursive: true });
    mkdirSync(join(dir, 'assets', 'sub.d'), { recursive: true });
    writeFileSync(join(dir, 'index.html'), INDEX);
    writeFileSync(join(dir, 'assets', 'index-abc123.js'), 'console.log("portal");');
    writeFileSync(join(dir, '.env'), 'HIDDEN=1');
    writeFileSync(join(dir, 'assets', '.secret.js'), 'HIDDEN=1');
    writeFileSync(join(build, 'dist', 'secret.txt'), 'OUTSIDE-THE-BUILD');
    writeFileSync(join(build, 'secret.txt'), 'OUTSIDE-THE-BUILD');
    // a directory link out of the build, and a link inside it to a dotfile of the build
    symlinkSync(join(build, 'dist'), join(dir, 'assets', 'out'));
    symlinkSync(join(dir, '.env'), join(dir, 'assets', 'env.js'));
    vault = await startTestVault({ env: { VAULT_PORTAL_DIR: dir } });
  });
  afterAll(async () => {
    await vault.close();
    rmSync(build, { recursive: true, force: true });
  });

  it.each([
    '/portal/%252e%252e/secret.txt',
    '/portal/%252e%252e%252fsecret.txt',
    '/portal/..%252f..%252fsecret.txt',
    '/portal/%2e%2e%5csecret.txt',
    '/portal/assets/%2E%2E/%2E%2E/secret.txt',
    '/portal/%c0%ae%c0%ae/secret.txt',
    '/portal/%ef%bc%8e%ef%bc%8e/secret.txt',
    '/portal/assets/out/secret.txt',
    '/portal/assets/out/../secret.txt',
    '/portal/assets/env.js',
    '/portal/assets/.secret.js',
    '/portal/assets/%2esecret.js',
    '/portal/assets/sub.d',
    '/PORTAL/.env',
    '/portal/.%65nv',
    '/portal/assets/index-abc123.js%00.txt',
    '/portal/assets/index-abc123.js%2500',
    `/portal/${'a'.repeat(4000)}.js`,
    `/portal/${'../'.repeat(20)}secret.txt`,
    '/portal/assets/..\\..\\secret.txt',
    '/portal/assets\\..\\..\\secret.txt',
  ])('%s serves nothing outside the build, no dotfile, and keeps the security headers', async (path) => {
    for (const method of ['get', 'head'] as const) {
      const res = await vault.http()[method](path).set('Range', 'bytes=0-100');
      expect(res.text ?? '').not.toContain('OUTSIDE-THE-BUILD');
      expect(res.text ?? '').not.toContain('HIDDEN=1');
      expect([200, 400, 404]).toContain(res.status);
      if (res.status === 200 && method === 'get') expect(res.text).toBe(INDEX);
      expect(Number(res.headers['content-length'] ?? 0)).not.toBe('OUTSIDE-THE-BUILD'.length);
      expect(Number(res.headers['content-length'] ?? 0)).not.toBe('HIDDEN=1'.length);
      expect(res.headers['content-security-policy']).toBe(STRICT_CSP);
    }
  });

  it('a Range request on index.html or an asset gives no cacheable copy and keeps no-store/immutable right', async () => {
    const idx = await vault.http().get('/portal/').set('Range', 'bytes=0-10');
    expect(idx.headers['cache-control']).toBe('no-store');
    const js = await vault.http().get('/portal/assets/index-abc123.js').set('Range', 'bytes=0-3');
    expect([200, 206]).toContain(js.status);
    expect(js.headers['cache-control']).toBe('public, max-age=31536000, immutable');
  });

  it('only the Swagger UI gets the relaxed style policy: /docs look-alikes and portal pages reached through /docs do not', async () => {
    for (const path of ['/docs/..%2fportal/', '/docs/../portal/', '/docsx', '/docs-json', '/portal/docs/', '/v1/docs', '/DOCS/']) {
      const res = await vault.http().get(path);
      // a portal page is never answered with the relaxed policy, and nothing outside /docs/ gets it
      if (res.text === INDEX || !path.startsWith('/docs/')) expect({ path, csp: res.headers['content-security-policy'] }).toEqual({ path, csp: STRICT_CSP });
      else expect(res.headers['content-type']).not.toMatch(/^text\/html/);
    }
    // no page anywhere allows inline script
    for (const path of ['/docs', '/docs/', '/docs/oauth2-redirect.html', '/docs/index.html', '/portal/']) {
      const res = await vault.http().get(path);
      expect(res.headers['content-security-policy']).toMatch(/script-src 'self';/);
      expect(res.headers['content-security-policy']).not.toMatch(/unsafe-inline'[^;]*;?\s*$|script-src[^;]*unsafe/);
    }
  });

  it('the redirects of / and /portal go to this origin only', async () => {
    for (const path of ['/', '/portal', '//evil.example/', '/portal//evil.example', '/%2fevil.example']) {
      const res = await vault.http().get(path);
      if (res.status >= 300 && res.status < 400) expect(res.headers.location).toBe('/portal/');
    }
  });
});

describe('review: a portal build below a dot-directory (e2e, real PostgreSQL)', () => {
  // e.g. installed under ~/.local/lib/node_modules/…/dist/portal, or VAULT_PORTAL_DIR=/srv/.vault/portal
  let vault: TestVault;
  const base = mkdtempSync(join(tmpdir(), 'review-dotdir-'));
  const dir = join(base, '.vault', 'dist', 'portal');
  beforeAll(async () => {
    mkdirSync(join(dir, 'assets'), { recursive: true });
    writeFileSync(join(dir, 'index.html'), '<!doctype html><title>x</title>');
    writeFileSync(join(dir, 'assets', 'index-abc123.js'), 'console.log("portal");');
    vault = await startTestVault({ env: { VAULT_PORTAL_DIR: dir } });
  });
  afterAll(async () => {
    await vault.close();
    rmSync(base, { recursive: true, force: true });
  });

  it('still serves the hashed assets (the dotfile rule applies to the path below the build, not to where the build lives)', async () => {
    await vault.http().get('/portal/').expect(200);
    const js = await vault.http().get('/portal/assets/index-abc123.js');
    expect(js.status).toBe(200);
  });
});

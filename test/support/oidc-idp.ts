/**
 * A real OpenID Connect identity provider for the tests: `oidc-provider` (the certified OP library) in its own process
 * (test/support/oidc-idp-child.mjs; the library is ESM only) on 127.0.0.1 and a free port, with a login page of its
 * own (username + password, no consent step), test users with a `groups` claim, the code flow (PKCE required) and
 * the device flow, a signing key made here (RS256, fresh `kid` each start), and a confidential client for the vault.
 *
 *     const idp = await startTestIdp({ redirectUris: ['https://vault.test/v1/auth/oidc/callback'],
 *                                      users: { alice: { password: 'pw', groups: ['ops'] } } });
 *     idp.issuer; idp.clientId; idp.clientSecret;           // what the vault's provider record needs
 *     const back = await idp.signIn(authorizeUrl, 'alice', 'pw');   // follows the IdP's pages: the redirect to the vault
 *     await idp.setUser('alice', { groups: [] });           // takes effect at the next sign-in
 *     await idp.tamperNext('audience');                     // the next token response's id_token is forged
 *     await idp.rotateKey();                                // restarts on the same port with a new key (and kid)
 *     await idp.completeDevice(verificationUriComplete, 'alice', 'pw');
 *     await idp.stop();
 *
 * Tamper modes (each changes only its own claim or key; nonce and the rest stay as issued): `audience`, `expired`,
 * `issuer`, `unknown-key` (signed by a key outside the JWKS, unknown kid), `nonce`, `signature`. The same controls are
 * plain HTTP on the IdP (`POST /__test/users`, `POST /__test/tamper {mode}`), for a browser test driving Chromium.
 * An IdP that cannot start is an error naming why, never a skipped test.
 */
import { ChildProcess, fork } from 'node:child_process';
import { generateKeyPairSync, JsonWebKey, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { recordTestSecret } from './receivers';

const CHILD = join(__dirname, 'oidc-idp-child.mjs');

export type TamperMode = 'audience' | 'expired' | 'issuer' | 'unknown-key' | 'nonce' | 'signature';

export interface TestIdpUser {
  password?: string;
  groups?: string[];
  email?: string;
  name?: string;
  /** The `preferred_username` claim (default: the login name). */
  preferredUsername?: string;
  /** Default `sub-<username>`; fixed once the user exists. */
  sub?: string;
  /** The IdP refuses the login and the account. */
  disabled?: boolean;
  amr?: string[];
  acr?: string;
}

export interface TestIdp {
  /** `http://127.0.0.1:<port>` (a loopback issuer: the vault accepts http only for these). */
  issuer: string;
  port: number;
  clientId: string;
  clientSecret: string;
  /** The `kid` of the current signing key. */
  kid: string;
  /** A user's record (created when new: password 'password', no groups, `<username>@idp.test`). */
  setUser(username: string, user: TestIdpUser): Promise<void>;
  /** The next token response's id_token is forged this way (one shot); null clears it. */
  tamperNext(mode: TamperMode | null): Promise<void>;
  /** Restart on the same port with a new signing key (new kid), users kept; pending logins at the IdP are lost. */
  rotateKey(): Promise<void>;
  /**
   * Follows an authorization URL through the IdP's pages as a browser would (cookies kept per IdP instance call),
   * signing in as `username`: resolves with the URL the IdP finally redirects to (the vault's callback with
   * `code`+`state`, or `error`). Rejects when the IdP refuses the login or shows an error page.
   */
  signIn(authorizeUrl: string, username: string, password?: string): Promise<URL>;
  /** Completes a device authorization at the IdP (`verification_uri_complete`, or the URI plus the user code). */
  completeDevice(verificationUri: string, username: string, password?: string, userCode?: string): Promise<void>;
  /** Refuses a device authorization at the IdP (the user presses Abort). */
  denyDevice(verificationUriComplete: string): Promise<void>;
  pid(): number;
  stop(): Promise<void>;
}

interface Running {
  child: ChildProcess;
  port: number;
  stderr: () => string;
}

function newSigningKey(): JsonWebKey & { kid: string } {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: `k-${randomBytes(6).toString('hex')}`, alg: 'RS256', use: 'sig' };
}

async function launch(config: Record<string, unknown>): Promise<Running> {
  const child = fork(CHILD, [], {
    execArgv: [],
    env: { PATH: process.env.PATH ?? '', NODE_ENV: 'test', OIDC_IDP_CONFIG: JSON.stringify(config) },
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the test IdP (oidc-provider) did not start within 30 s: ${stderr}`)), 30_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the test IdP (oidc-provider) exited (${code}) before listening: ${stderr}`));
    });
    child.on('message', (m: { type: string; port: number }) => {
      if (m.type !== 'listening') return;
      clearTimeout(timer);
      resolve(m.port);
    });
  });
  return { child, port, stderr: () => stderr };
}

async function halt(r: Running): Promise<void> {
  const { child } = r;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  if (child.connected) child.send({ type: 'stop' });
  else child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

export async function startTestIdp(o: { redirectUris: string[]; users?: Record<string, TestIdpUser>; clientId?: string }): Promise<TestIdp> {
  const clientId = o.clientId ?? 'vault';
  const clientSecret = `idp-secret-${randomBytes(16).toString('hex')}`;
  recordTestSecret(clientSecret, 'test IdP client secret');
  const forgeKey = newSigningKey();
  const cookieKey = randomBytes(16).toString('hex');
  let key = newSigningKey();
  const configFor = (port: number, users: Record<string, TestIdpUser>) => ({
    port,
    jwks: { keys: [key] },
    forgeKey,
    cookieKey,
    clients: [{ client_id: clientId, client_secret: clientSecret, redirect_uris: o.redirectUris }],
    users,
  });
  let running = await launch(configFor(0, o.users ?? {}));
  const issuer = `http://127.0.0.1:${running.port}`;
  const exitHook = () => running.child.kill('SIGKILL');
  process.once('exit', exitHook);

  const control = async (path: string, body?: unknown) => {
    const res = await fetch(issuer + path, body === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    if (res.status !== 200) throw new Error(`test IdP ${path}: ${res.status} ${await res.text()}`);
    return res.json() as Promise<unknown>;
  };

  const idp: TestIdp = {
    issuer,
    port: running.port,
    clientId,
    clientSecret,
    get kid() {
      return key.kid;
    },
    setUser: async (username, user) => void (await control('/__test/users', { username, ...user })),
    tamperNext: async (mode) => void (await control('/__test/tamper', { mode })),
    rotateKey: async () => {
      const users = Object.fromEntries(((await control('/__test/users')) as Array<TestIdpUser & { username: string }>).map(({ username, ...u }) => [username, u]));
      await halt(running);
      key = newSigningKey();
      running = await launch(configFor(idp.port, users));
    },
    signIn: (authorizeUrl, username, password = 'password') => browse(issuer, authorizeUrl, { username, password }),
    completeDevice: async (verificationUri, username, password = 'password', userCode) => {
      const end = await browse(issuer, verificationUri, { username, password, userCode });
      if (end.pathname !== '/__device_done') throw new Error(`the device authorization did not complete at the test IdP (ended at ${end.href})`);
    },
    denyDevice: async (verificationUriComplete) => {
      const end = await browse(issuer, verificationUriComplete, { abort: true });
      if (end.pathname !== '/__device_aborted') throw new Error(`the device authorization was not refused at the test IdP (ended at ${end.href})`);
    },
    pid: () => running.child.pid!,
    stop: async () => {
      await halt(running);
      process.off('exit', exitHook);
    },
  };
  return idp;
}

interface Cookie {
  name: string;
  value: string;
  path: string;
}

/** The cookies of one walk through the IdP's pages (path-aware, no domain: everything here is the IdP's). */
class CookieJar {
  private readonly cookies: Cookie[] = [];

  take(res: Response, url: URL): void {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let path = url.pathname.replace(/\/[^/]*$/, '') || '/';
      let gone = value === '';
      for (const a of attrs) {
        const [k, v = ''] = a.split('=');
        const key = k.trim().toLowerCase();
        if (key === 'path') path = v.trim();
        if (key === 'max-age' && Number(v) <= 0) gone = true;
        if (key === 'expires' && Date.parse(v) < Date.now()) gone = true;
      }
      const i = this.cookies.findIndex((c) => c.name === name && c.path === path);
      if (i >= 0) this.cookies.splice(i, 1);
      if (!gone) this.cookies.push({ name, value, path });
    }
  }

  header(url: URL): string {
    return this.cookies
      .filter((c) => url.pathname === c.path || url.pathname.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`) || c.path === '/')
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
  }
}

interface Form {
  action: string;
  fields: Map<string, string>;
  names: Set<string>;
}

const decode = (s: string) => s.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
const attr = (tag: string, name: string) => {
  const m = new RegExp(`\\s${name}\\s*=\\s*"([^"]*)"`, 'i').exec(tag);
  return m ? decode(m[1]) : undefined;
};

function firstForm(html: string, base: URL): Form | undefined {
  const m = /<form\b[^>]*>([\s\S]*?)<\/form>/i.exec(html);
  if (!m) return undefined;
  const open = /<form\b[^>]*>/i.exec(m[0])![0];
  const fields = new Map<string, string>();
  const names = new Set<string>();
  for (const input of m[1].match(/<input\b[^>]*>/gi) ?? []) {
    const name = attr(input, 'name');
    if (!name) continue;
    names.add(name);
    const value = attr(input, 'value');
    if (value !== undefined) fields.set(name, value);
  }
  return { action: new URL(attr(open, 'action') ?? base.href, base).href, fields, names };
}

/**
 * Walks the IdP's pages: redirects are followed while they stay at the IdP; each page's form is filled (login, user
 * code) and submitted. Ends at the first redirect that leaves the IdP (resolved with it), or at the device flow's
 * success page (`/__device_done`) / aborted page (`/__device_aborted`).
 */
async function browse(issuer: string, start: string, o: { username?: string; password?: string; userCode?: string; abort?: boolean }): Promise<URL> {
  const jar = new CookieJar();
  const origin = new URL(issuer).origin;
  let url = new URL(start);
  let init: { method: string; body?: string } = { method: 'GET' };
  let loggedIn = false;
  for (let step = 0; step < 25; step++) {
    if (url.origin !== origin) return url;
    const headers: Record<string, string> = { cookie: jar.header(url) };
    if (init.body !== undefined) headers['content-type'] = 'application/x-www-form-urlencoded';
    const res = await fetch(url, { ...init, headers, redirect: 'manual' });
    jar.take(res, url);
    if (res.status >= 300 && res.status < 400) {
      url = new URL(res.headers.get('location')!, url);
      init = { method: 'GET' };
      continue;
    }
    const html = await res.text();
    if (res.status !== 200) throw new Error(`the test IdP answered ${res.status} at ${url.pathname}: ${html.slice(0, 500)}`);
    if (html.includes('id="device-success"')) return new URL('/__device_done', origin);
    if (html.includes('id="login-error"')) throw new Error(`the test IdP refused the login of ${o.username ?? '(nobody)'}`);
    if (html.includes('id="error"')) throw new Error(`the test IdP showed an error: ${/id="error">([^<]*)/.exec(html)?.[1] ?? html.slice(0, 300)}`);
    if (html.includes('id="device-aborted"')) return new URL('/__device_aborted', origin);
    const form = firstForm(html, url);
    if (!form) throw new Error(`the test IdP page at ${url.pathname} has no form: ${html.slice(0, 300)}`);
    const fields = new Map(form.fields);
    if (form.names.has('username')) {
      if (loggedIn) throw new Error('the test IdP asked for the login twice');
      loggedIn = true;
      fields.set('username', o.username ?? '');
      fields.set('password', o.password ?? '');
    }
    if (form.names.has('user_code') && !fields.get('user_code')) fields.set('user_code', o.userCode ?? '');
    if (o.abort && fields.has('confirm')) {
      fields.delete('confirm');
      fields.set('abort', 'yes');
    }
    url = new URL(form.action);
    init = { method: 'POST', body: new URLSearchParams([...fields]).toString() };
  }
  throw new Error('the walk through the test IdP pages did not end within 25 steps');
}

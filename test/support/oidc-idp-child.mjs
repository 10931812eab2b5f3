/* global process, Buffer, URL, URLSearchParams, setTimeout */
/**
 * The test identity provider's process (started by test/support/oidc-idp.ts): the real `oidc-provider` (ESM only,
 * hence a process of its own) on 127.0.0.1, with a small login page of its own (username + password, no consent
 * step), test users carrying a `groups` claim, the authorization code (PKCE required) and device flows, and two test
 * controls over HTTP:
 *
 *   POST /__test/users  {username, password?, groups?, email?, name?, preferredUsername?, sub?, disabled?}  upsert
 *   GET  /__test/users  the users as they are now
 *   POST /__test/tamper {mode}   the NEXT token response's id_token is forged: `audience` (aud changed), `expired`
 *                        (exp in the past), `issuer` (another iss), `unknown-key` (signed by a key outside the JWKS,
 *                        unknown kid), `nonce` (another nonce), `signature` (the real signature of other bytes) —
 *                        everything else identical, signed with the real key unless the mode is about the key
 *   POST /__test/tamper {mode: null}  clears it
 *
 * Configuration comes in OIDC_IDP_CONFIG (JSON): {port, jwks: {keys: [private JWK]}, forgeKey: private JWK,
 * clients: [{client_id, client_secret, redirect_uris}], users: {username: {...}}, cookieKey}. When listening it
 * sends `{type: 'listening', port, issuer}` over IPC; it stops on `{type: 'stop'}` or when its parent goes.
 */
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import Provider from 'oidc-provider';
import { importJWK, SignJWT, decodeProtectedHeader } from 'jose';

const config = JSON.parse(process.env.OIDC_IDP_CONFIG ?? '{}');
const HOST = '127.0.0.1';

/** username → user. A user's `sub` is fixed when first seen (default `sub-<username>`). */
const users = new Map();
const upsertUser = (username, u) => {
  const before = users.get(username) ?? { sub: `sub-${username}`, password: 'password', groups: [], email: `${username}@idp.test` };
  const next = { ...before, ...u, username };
  users.set(username, next);
  return next;
};
for (const [username, u] of Object.entries(config.users ?? {})) upsertUser(username, u);
const userBySub = (sub) => [...users.values()].find((u) => u.sub === sub);

let tamper = null;
const TAMPER_MODES = new Set(['audience', 'expired', 'issuer', 'unknown-key', 'nonce', 'signature']);

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
const page = (title, body) =>
  `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title></head><body><main><h1>${esc(title)}</h1>${body}</main></body></html>`;

function readBody(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (d) => {
      data += d;
      if (data.length > 100_000) reject(new Error('body too large'));
    });
    req.on('end', () => resolve(data));
    req.on('error', reject);
  });
}

function send(res, status, type, body) {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(config.port ?? 0, HOST, resolve);
});
const port = server.address().port;
const issuer = `http://${HOST}:${port}`;

const provider = new Provider(issuer, {
  clients: (config.clients ?? []).map((c) => ({
    grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    ...c,
  })),
  jwks: config.jwks,
  cookies: { keys: [config.cookieKey ?? randomUUID()] },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
  acrValues: ['urn:test:loa:1', 'urn:test:loa:2'],
  claims: { openid: ['sub', 'acr', 'amr', 'auth_time'], profile: ['name', 'preferred_username'], email: ['email', 'email_verified'], groups: ['groups'] },
  // the claims of the scopes go into the ID token itself (as Keycloak, Entra ID and Okta can be set to do)
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    deviceFlow: {
      enabled: true,
      userCodeInputSource: (ctx, form, out, err) => {
        const note = err?.name === 'AbortedError' ? '<p id="device-aborted">The sign-in was refused</p>' : err ? '<p role="alert">The code was not accepted</p>' : '';
        ctx.body = page('Enter the code', `${note}${form}<button type="submit" form="op.deviceInputForm">Continue</button>`);
      },
      userCodeConfirmSource: (ctx, form, client, deviceInfo, userCode) => {
        ctx.body = page('Confirm the device', `<p>Code <code>${esc(userCode)}</code></p>${form}<button type="submit" form="op.deviceConfirmForm">Continue</button>`);
      },
      successSource: (ctx) => {
        ctx.body = page('Sign-in success', '<p id="device-success">You can close this page.</p>');
      },
    },
    revocation: { enabled: true },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  // no consent step: the test user agrees to every scope the vault asks for
  loadExistingGrant: async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) {
      const found = await ctx.oidc.provider.Grant.find(grantId);
      if (found) return found;
    }
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid offline_access profile email groups');
    await grant.save();
    return grant;
  },
  findAccount: (ctx, sub) => {
    const u = userBySub(sub);
    if (!u || u.disabled) return undefined;
    return {
      accountId: sub,
      claims: () => ({
        sub,
        preferred_username: u.preferredUsername ?? u.username,
        name: u.name ?? u.username,
        email: u.email,
        email_verified: true,
        groups: u.groups ?? [],
      }),
    };
  },
  renderError: (ctx, out) => {
    ctx.type = 'html';
    ctx.body = page('Error', `<p id="error">${esc(out.error)}: ${esc(out.error_description ?? '')}</p>`);
  },
  // like Keycloak: a refresh token with every code or device grant of a client allowed to refresh (no offline_access needed)
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  ttl: { DeviceCode: 600, Interaction: 600, Session: 3600, Grant: 3600, IdToken: 3600, AccessToken: 3600, AuthorizationCode: 60, RefreshToken: 86400 },
});

/** The next token response carries a forged id_token (one shot). */
provider.use(async (ctx, next) => {
  await next();
  if (!tamper || ctx.path !== '/token' || ctx.status !== 200 || typeof ctx.body?.id_token !== 'string') return;
  const mode = tamper;
  tamper = null;
  ctx.body = { ...ctx.body, id_token: await forge(ctx.body.id_token, mode) };
});

async function forge(idToken, mode) {
  const [, payloadPart] = idToken.split('.');
  const claims = JSON.parse(Buffer.from(payloadPart, 'base64url').toString('utf8'));
  const header = decodeProtectedHeader(idToken);
  const realJwk = config.jwks.keys.find((k) => k.kid === header.kid) ?? config.jwks.keys[0];
  let signer = realJwk;
  const now = Math.floor(Date.now() / 1000);
  if (mode === 'audience') claims.aud = 'another-client';
  if (mode === 'expired') Object.assign(claims, { iat: now - 7200, exp: now - 3600 });
  if (mode === 'issuer') claims.iss = 'http://127.0.0.1:1/another-issuer';
  if (mode === 'nonce') claims.nonce = 'another-nonce';
  if (mode === 'unknown-key') signer = config.forgeKey;
  const key = await importJWK(signer, header.alg);
  const signed = await new SignJWT(claims).setProtectedHeader({ alg: header.alg, typ: header.typ, kid: signer.kid }).sign(key);
  if (mode !== 'signature') return signed;
  // a valid signature, but of other claims: the payload is swapped for the forged one's neighbour
  const other = await new SignJWT({ ...claims, name: 'someone else' }).setProtectedHeader({ alg: header.alg, typ: header.typ, kid: signer.kid }).sign(key);
  const [h, p] = signed.split('.');
  return `${h}.${p}.${other.split('.')[2]}`;
}

async function interaction(req, res, url) {
  const m = /^\/interaction\/([\w-]+)(\/login)?$/.exec(url.pathname);
  if (!m) return false;
  const details = await provider.interactionDetails(req, res);
  const form = (error) =>
    page(
      'Sign in to the test IdP',
      `${error ? `<p role="alert" id="login-error">${esc(error)}</p>` : ''}<form id="login" method="post" action="/interaction/${esc(details.uid)}/login">` +
        '<label>Username <input name="username" autocomplete="username" autofocus></label>' +
        '<label>Password <input name="password" type="password" autocomplete="current-password"></label>' +
        '<button type="submit">Sign in</button></form>',
    );
  if (req.method === 'GET' && !m[2]) {
    if (details.prompt.name !== 'login') {
      // no consent step (loadExistingGrant grants everything): anything else finishes as it is
      await provider.interactionFinished(req, res, {}, { mergeWithLastSubmission: true });
      return true;
    }
    send(res, 200, 'text/html; charset=utf-8', form());
    return true;
  }
  if (req.method === 'POST' && m[2]) {
    const body = new URLSearchParams(await readBody(req));
    const u = users.get(body.get('username') ?? '');
    if (!u || u.disabled || u.password !== body.get('password')) {
      send(res, 200, 'text/html; charset=utf-8', form('Invalid username or password'));
      return true;
    }
    await provider.interactionFinished(req, res, { login: { accountId: u.sub, amr: u.amr ?? ['pwd'], acr: u.acr ?? 'urn:test:loa:1' } }, { mergeWithLastSubmission: false });
    return true;
  }
  return false;
}

async function testControl(req, res, url) {
  if (!url.pathname.startsWith('/__test/')) return false;
  if (url.pathname === '/__test/users' && req.method === 'GET') {
    send(res, 200, 'application/json', JSON.stringify([...users.values()]));
    return true;
  }
  if (url.pathname === '/__test/users' && req.method === 'POST') {
    const { username, ...rest } = JSON.parse((await readBody(req)) || '{}');
    if (typeof username !== 'string' || !username) {
      send(res, 400, 'application/json', JSON.stringify({ error: 'username required' }));
      return true;
    }
    send(res, 200, 'application/json', JSON.stringify(upsertUser(username, rest)));
    return true;
  }
  if (url.pathname === '/__test/tamper' && req.method === 'POST') {
    const { mode } = JSON.parse((await readBody(req)) || '{}');
    if (mode !== null && !TAMPER_MODES.has(mode)) {
      send(res, 400, 'application/json', JSON.stringify({ error: `mode must be one of ${[...TAMPER_MODES].join(', ')} or null` }));
      return true;
    }
    tamper = mode;
    send(res, 200, 'application/json', JSON.stringify({ mode }));
    return true;
  }
  send(res, 404, 'application/json', JSON.stringify({ error: 'unknown test control' }));
  return true;
}

const callback = provider.callback();
server.on('request', (req, res) => {
  const url = new URL(req.url ?? '/', issuer);
  (async () => {
    if (await testControl(req, res, url)) return;
    if (await interaction(req, res, url)) return;
    callback(req, res);
  })().catch((e) => {
    if (!res.headersSent) send(res, 500, 'text/plain', `test IdP error: ${e.message}`);
    else res.end();
  });
});

const stop = () => {
  server.closeAllConnections?.();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('message', (msg) => {
  if (msg?.type === 'stop') stop();
});
process.on('disconnect', stop);
process.on('SIGTERM', stop);
process.send?.({ type: 'listening', port, issuer });

// Demo seed for `docker compose up`: enrolls the admin's TOTP, registers the three demo targets, puts one shared
// privileged account of each in the vault (the vault sets its own password on the target), sets ephemeral policies,
// and creates one user per role. Prints what a person needs to try it. Demo only: it prints the admin's TOTP seed
// and the users' first passwords to this container's log (`docker compose logs seed`).
import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

const V = process.env.VAULT_URL ?? 'http://vault:8080';
const ADMIN_PASSWORD = process.env.VAULT_BOOTSTRAP_ADMIN_PASSWORD;
if (!ADMIN_PASSWORD) throw new Error('VAULT_BOOTSTRAP_ADMIN_PASSWORD is required');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function base32Decode(s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of s.replace(/=+$/, '').toUpperCase()) {
    value = (value << 5) | alphabet.indexOf(ch);
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** RFC 6238 code of a base32 seed, for a 30 s step (default: the current one). */
function totp(secret, step = Math.floor(Date.now() / 30_000)) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(step));
  const mac = createHmac('sha1', base32Decode(secret)).update(msg).digest();
  const o = mac[mac.length - 1] & 0x0f;
  const bin = ((mac[o] & 0x7f) << 24) | (mac[o + 1] << 16) | (mac[o + 2] << 8) | mac[o + 3];
  return String(bin % 1_000_000).padStart(6, '0');
}

let lastStep = 0;
let adminSecret;
/**
 * The admin's step-up code (admin changes need one): each 30 s step is accepted once, so a step not used yet — the
 * current one or the next (one step of drift) — waiting for a new step when both are used. About 30 s per change.
 */
async function stepUpCode() {
  for (;;) {
    const current = Math.floor(Date.now() / 30_000);
    const step = Math.max(lastStep + 1, current);
    if (step <= current + 1) {
      lastStep = step;
      return totp(adminSecret, step);
    }
    await sleep((step - 1) * 30_000 - Date.now() + 200);
  }
}

async function call(method, path, { token, body, ok = [200, 201, 202, 204], mfa = false } = {}) {
  const res = await fetch(`${V}${path}`, {
    method,
    headers: {
      'content-type': 'application/json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(mfa ? { 'x-mfa-code': await stepUpCode() } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  const json = text ? JSON.parse(text) : {};
  if (!ok.includes(res.status)) throw new Error(`${method} ${path}: ${res.status} ${json.code ?? ''} ${json.message ?? ''}`);
  return json;
}

async function waitForVault() {
  for (let i = 0; i < 120; i++) {
    try {
      if ((await fetch(`${V}/health/ready`)).ok) return;
    } catch {
      /* not up yet */
    }
    await sleep(1000);
  }
  throw new Error('the vault did not become ready');
}

/**
 * Targets may start after the vault: retry verify for a while. An SSH target is never logged in to before its host key
 * is pinned: the first verify answers 409 with the key the server presents. A real deployment compares it with the
 * server (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` there) before pinning it; this DEMO pins what it is shown.
 */
async function verify(token, id, name) {
  for (let i = 0; i < 60; i++) {
    try {
      const res = await call('POST', `/v1/targets/${id}/verify`, { token, ok: [200, 409], mfa: true });
      if (res.code !== 'TARGET_HOST_KEY_UNPINNED') return res;
      console.log(`DEMO ONLY: pinning the host key ${name} presents without comparing it: SHA256:${res.presentedHostKeySha256}`);
      return await call('POST', `/v1/targets/${id}/verify`, { token, body: { hostKeySha256: res.presentedHostKeySha256 }, mfa: true });
    } catch (e) {
      if (i === 59) throw e;
      console.log(`waiting for ${name}: ${e.message}`);
      await sleep(2000);
    }
  }
}

await waitForVault();
const first = await call('POST', '/v1/auth/login', { body: { username: 'admin', password: ADMIN_PASSWORD }, ok: [200, 401] });
if (!first.accessToken) {
  console.log('the admin already has MFA: this vault was seeded before; nothing to do.');
  process.exit(0);
}
const { secret, otpauthUri } = await call('POST', '/v1/me/mfa/totp', { token: first.accessToken });
// enrollment ends every earlier token and answers with a fresh one
adminSecret = secret;
lastStep = Math.floor(Date.now() / 30_000);
const { accessToken: token } = await call('POST', '/v1/me/mfa/totp/confirm', { token: first.accessToken, body: { code: totp(secret, lastStep) } });
// from here every admin change carries a step-up code of its own 30 s step: seeding takes a few minutes

// where the targets are (compose service names; overridable to seed a vault elsewhere)
const at = (name, host, port) => {
  const [h, p] = (process.env[name] ?? `${host}:${port}`).split(':');
  return { host: h, port: Number(p) };
};
const targets = {
  ssh: { name: 'demo-ssh', type: 'ssh', ...at('SSH_TARGET', 'ssh-target', 22), admin: { username: 'vaultadmin', password: 'ssh-admin-password' }, options: { sudo: true } },
  postgres: { name: 'demo-postgres', type: 'postgres', ...at('PG_TARGET', 'pg-target', 5432), admin: { username: 'vault_admin', password: 'pg-vault-admin-password' }, options: { database: 'postgres' } },
  mysql: { name: 'demo-mariadb', type: 'mysql', ...at('MYSQL_TARGET', 'mysql-target', 3306), admin: { username: 'vault_admin', password: 'mysql-vault-admin-password' }, options: {} },
};
// SEED_TARGETS=postgres,mysql seeds only those (default: all three)
const only = (process.env.SEED_TARGETS ?? 'ssh,postgres,mysql').split(',');
for (const type of Object.keys(targets)) if (!only.includes(type)) delete targets[type];
const ids = {};
for (const [type, body] of Object.entries(targets)) {
  // the databases are reached over TLS only: their certificates are checked against the demo CA (TARGET_CA to override)
  if (type !== 'ssh') body.options.tlsCa = readFileSync(process.env.TARGET_CA ?? '/certs/ca.pem', 'utf8');
  ids[type] = (await call('POST', '/v1/targets', { token, body, mfa: true })).id;
  await verify(token, ids[type], body.name); // SSH: pins the host key now (demo: the one presented)
}

// shared privileged accounts, onboarded without a password: the vault sets its own on the target and logs in with it
const accounts = {
  ssh: { username: 'deploy', policy: { checkoutTtlSeconds: 1800 } },
  postgres: { username: 'app_owner', policy: { approvalsRequired: 1, breakGlassAllowed: true } },
  mysql: { username: 'app_dba', policy: { checkoutTtlSeconds: 3600 } },
};
const policies = {
  ssh: { approvalsRequired: 1, maxTtlSeconds: 14400 },
  postgres: { approvalsRequired: 1, maxTtlSeconds: 14400, allowedRoles: ['billing_ro'], allowedDatabases: ['billing'] },
  mysql: { approvalsRequired: 1, maxTtlSeconds: 14400, allowedGrants: [{ privileges: ['SELECT'], on: 'shop.*' }] },
};
for (const type of Object.keys(ids)) {
  await call('POST', '/v1/accounts', { token, body: { targetId: ids[type], ...accounts[type] }, mfa: true });
  await call('PUT', `/v1/targets/${ids[type]}/ephemeral-policy`, { token, body: policies[type], mfa: true });
}

const users = [
  ['olivia', ['operator']],
  ['arthur', ['approver']],
  ['vera', ['vendor']],
  ['aude', ['auditor']],
];
const passwords = {};
for (const [username, roles] of users) {
  passwords[username] = randomBytes(12).toString('base64url');
  await call('POST', '/v1/users', { token, body: { username, password: passwords[username], roles }, mfa: true });
}

console.log(`
pam-vault demo is seeded (http://127.0.0.1:8080, API docs at /docs).
  admin's TOTP seed (add it to an authenticator app; log in with a code from now on):
    ${otpauthUri}
  targets: demo-ssh, demo-postgres, demo-mariadb (verified); accounts: deploy (ssh), app_owner (postgres, 1 approval,
  break-glass allowed), app_dba (mariadb) — their passwords were changed by the vault and are known only to it.
  users (each enrolls TOTP at first login):
${users.map(([u, r]) => `    ${u.padEnd(7)} ${r.join(',').padEnd(9)} password ${passwords[u]}`).join('\n')}
`);

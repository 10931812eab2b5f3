import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createTestDatabase } from '../support/db';
import { freePort, requireBuild, spawnVault, VaultProcess, waitReady } from '../support/process';
import { totpAt } from '../support/totp';
import { TEST_ENV } from '../support/vault';

/** Is a postgres server still running on this data folder? */
function postgresRunningOn(dataDir: string): boolean {
  try {
    return execFileSync('pgrep', ['-f', `${dataDir}/pg`], { encoding: 'utf8' }).trim().length > 0;
  } catch {
    return false;
  }
}

async function login(port: number, password: string, code?: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password, ...(code ? { code } : {}) }),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { accessToken: string }).accessToken;
}

/** Enrolls TOTP with the given token (real clock); returns the seed and the fresh token (enrollment ends the old one). */
async function enroll(port: number, token: string): Promise<{ secret: string; token: string }> {
  const post = (path: string, body?: object) =>
    fetch(`http://127.0.0.1:${port}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: body ? JSON.stringify(body) : undefined,
    });
  const { secret } = (await (await post('/v1/me/mfa/totp')).json()) as { secret: string };
  const confirmed = await post('/v1/me/mfa/totp/confirm', { code: totpAt(secret, Date.now()) });
  expect(confirmed.status).toBe(200);
  return { secret, token: ((await confirmed.json()) as { accessToken: string }).accessToken };
}

function track(proc: VaultProcess): VaultProcess {
  started.push(proc);
  return proc;
}

async function stop(proc: VaultProcess): Promise<number | null> {
  proc.child.kill('SIGTERM');
  return proc.exited;
}

/** Whatever a test started is stopped and removed, even when an assertion failed half-way. */
const started: VaultProcess[] = [];
const folders: string[] = [];
const tempDir = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  folders.push(dir);
  return dir;
};

describe('the start command on a fresh machine (built vault, embedded PostgreSQL)', () => {
  beforeAll(() => requireBuild());
  afterEach(async () => {
    for (const proc of started.splice(0)) {
      if (proc.child.exitCode === null && proc.child.signalCode === null) {
        proc.child.kill('SIGTERM');
        await Promise.race([proc.exited, new Promise((r) => setTimeout(r, 10_000))]);
        proc.child.kill('SIGKILL');
      }
    }
    for (const dir of folders.splice(0)) {
      try {
        execFileSync('pkill', ['-KILL', '-f', `${dir}/pg`]);
      } catch {
        /* nothing left running: the normal case */
      }
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('starts on an embedded database, survives a restart, and stops it cleanly on SIGTERM', async () => {
    const dataDir = tempDir('vault-data-');
    const env = {
      VAULT_DATA_DIR: dataDir,
      PORT: String(await freePort()),
      VAULT_EMBEDDED_PG_PORT: String(await freePort()),
      VAULT_ARGON2_MEMORY_KIB: TEST_ENV.VAULT_ARGON2_MEMORY_KIB,
      VAULT_ARGON2_TIME_COST: TEST_ENV.VAULT_ARGON2_TIME_COST,
      LOG_LEVEL: 'warn',
    };
    const port = Number(env.PORT);

    const first = track(spawnVault(env));
    const ms = await waitReady(port, first, 30_000);
    expect(ms).toBeLessThan(30_000);
    expect(first.stderr()).toMatch(/WARNING: no VAULT_MASTER_KEY/);
    const printed = first.stderr().match(/Username: admin {2}Password: (\S+)/);
    expect(printed).not.toBeNull();
    const password = printed![1];
    // the generated password is on the terminal once, and never in a JSON log line
    expect(first.output().split(password).length - 1).toBe(1);

    const { secret, token } = await enroll(port, await login(port, password));
    // a step-up action: the enrollment burned the current step, so the next one (one step of drift is accepted)
    const createStep = Math.floor(Date.now() / 30_000) + 1;
    const created = await fetch(`http://127.0.0.1:${port}/v1/targets`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'x-mfa-code': totpAt(secret, createStep * 30_000) },
      body: JSON.stringify({ name: 'kept', type: 'postgres', host: '127.0.0.1', port: 5432, admin: { username: 'postgres', password: 'pw-kept-across-restart' } }),
    });
    expect(created.status).toBe(201);

    expect(await stop(first)).toBe(0);
    expect(first.stderr()).toMatch(/SIGTERM received/);
    expect(postgresRunningOn(dataDir)).toBe(false);

    const second = track(spawnVault(env));
    await waitReady(port, second, 30_000);
    try {
      expect(second.stderr()).not.toMatch(/Password:/);
      // the target's creation burned createStep; the one after it is accepted once the clock is at createStep (one step of drift)
      const wait = createStep * 30_000 - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait + 200));
      const again = await login(port, password, totpAt(secret, (createStep + 1) * 30_000));
      const list = await fetch(`http://127.0.0.1:${port}/v1/targets`, { headers: { authorization: `Bearer ${again}` } });
      expect(((await list.json()) as { items: Array<{ name: string }> }).items.map((t) => t.name)).toEqual(['kept']);
      const verify = await fetch(`http://127.0.0.1:${port}/v1/audit-events/verify`, { headers: { authorization: `Bearer ${again}` } });
      expect(await verify.json()).toMatchObject({ ok: true });
    } finally {
      expect(await stop(second)).toBe(0);
    }
    expect(postgresRunningOn(dataDir)).toBe(false);
  }, 120_000);

  it('refuses a wrong master key with one clear line and a non-zero exit', async () => {
    const db = await createTestDatabase();
    try {
      const base = { DATABASE_URL: db.url, PORT: String(await freePort()), LOG_LEVEL: 'warn', ...pick(TEST_ENV) };
      const ok = track(spawnVault({ ...base, VAULT_MASTER_KEY: randomBytes(32).toString('base64') }));
      await waitReady(Number(base.PORT), ok, 30_000);
      expect(await stop(ok)).toBe(0);

      const wrong = track(spawnVault({ ...base, VAULT_MASTER_KEY: randomBytes(32).toString('base64') }));
      const code = await wrong.exited;
      expect(code).not.toBe(0);
      // (besides the warning that a master key in the environment stays readable in /proc/<pid>/environ)
      const lines = wrong.stderr().trim().split('\n').filter((l) => !/WARNING: VAULT_MASTER_KEY.* given in the environment/.test(l));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^pam-vault: the master key does not unlock the keyring/);
    } finally {
      await db.drop();
    }
  }, 60_000);

  it('takes its secrets from files, and then none of them is in /proc/<pid>/environ; given in the environment, it warns that they are', async () => {
    const db = await createTestDatabase();
    const dir = tempDir('vault-secrets-');
    try {
      const key = randomBytes(32).toString('base64');
      const files = { VAULT_MASTER_KEY_FILE: join(dir, 'master.key'), DATABASE_URL_FILE: join(dir, 'database-url'), VAULT_BOOTSTRAP_ADMIN_PASSWORD_FILE: join(dir, 'admin-password') };
      writeFileSync(files.VAULT_MASTER_KEY_FILE, `${key}\n`, { mode: 0o600 });
      writeFileSync(files.DATABASE_URL_FILE, `${db.url}\n`, { mode: 0o600 });
      writeFileSync(files.VAULT_BOOTSTRAP_ADMIN_PASSWORD_FILE, `${TEST_ENV.VAULT_BOOTSTRAP_ADMIN_PASSWORD}\n`, { mode: 0o600 });
      const base = { PORT: String(await freePort()), LOG_LEVEL: 'warn', VAULT_ARGON2_MEMORY_KIB: TEST_ENV.VAULT_ARGON2_MEMORY_KIB, VAULT_ARGON2_TIME_COST: TEST_ENV.VAULT_ARGON2_TIME_COST };
      const byFile = track(spawnVault({ ...base, ...files }));
      await waitReady(Number(base.PORT), byFile, 30_000);
      const environ = readFileSync(`/proc/${byFile.child.pid}/environ`, 'utf8');
      for (const secret of [key, db.url, new URL(db.url).password, TEST_ENV.VAULT_BOOTSTRAP_ADMIN_PASSWORD].filter(Boolean)) expect(environ).not.toContain(secret);
      expect(byFile.stderr()).not.toMatch(/given in the environment/);
      expect(await login(Number(base.PORT), TEST_ENV.VAULT_BOOTSTRAP_ADMIN_PASSWORD)).toEqual(expect.any(String)); // the file's password works
      expect(await stop(byFile)).toBe(0);

      const byEnv = track(spawnVault({ ...base, VAULT_MASTER_KEY: key, DATABASE_URL: db.url }));
      await waitReady(Number(base.PORT), byEnv, 30_000);
      expect(byEnv.stderr()).toMatch(/WARNING: VAULT_MASTER_KEY, DATABASE_URL given in the environment stay readable in \/proc\/\d+\/environ .*prefer VAULT_MASTER_KEY_FILE, DATABASE_URL_FILE/);
      expect(byEnv.stderr()).not.toContain(key);
      expect(await stop(byEnv)).toBe(0);

      const both = track(spawnVault({ ...base, DATABASE_URL: db.url, DATABASE_URL_FILE: files.DATABASE_URL_FILE, VAULT_MASTER_KEY_FILE: files.VAULT_MASTER_KEY_FILE }));
      expect(await both.exited).not.toBe(0);
      expect(both.stderr().trim()).toBe('pam-vault: invalid configuration: set only one of DATABASE_URL and DATABASE_URL_FILE');
    } finally {
      await db.drop();
    }
  }, 90_000);

  it.each([
    [{ PORT: 'eighty' }, /^pam-vault: invalid configuration: PORT: must be an integer/],
    [{ DATABASE_URL: 'mysql://root@localhost/x' }, /^pam-vault: invalid configuration: DATABASE_URL/],
    [{ VAULT_MASTER_KEY: 'too-short' }, /^pam-vault: VAULT_MASTER_KEY must decode to exactly 32 bytes/],
    [{ VAULT_MASTER_KEY_FILE: '/nonexistent/key' }, /^pam-vault: VAULT_MASTER_KEY_FILE cannot be read/],
  ])('refuses bad configuration %j with one line and a non-zero exit', async (env, message) => {
    const proc = track(spawnVault({ VAULT_DATA_DIR: tempDir('vault-cfg-'), ...env }));
    expect(await proc.exited).not.toBe(0);
    const lines = proc.stderr().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(message);
  });
});

function pick(env: typeof TEST_ENV) {
  return { VAULT_ARGON2_MEMORY_KIB: env.VAULT_ARGON2_MEMORY_KIB, VAULT_ARGON2_TIME_COST: env.VAULT_ARGON2_TIME_COST, VAULT_BOOTSTRAP_ADMIN_PASSWORD: env.VAULT_BOOTSTRAP_ADMIN_PASSWORD };
}

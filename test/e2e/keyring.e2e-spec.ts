import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { MasterKeyError } from '../../src/crypto/master-key';
import { TargetEntity } from '../../src/targets/target.entity';
import { TargetsService } from '../../src/targets/targets.service';
import { SecretBoxService } from '../../src/crypto/secret-box.service';
import { accountInput, postgresTarget } from '../factories';
import { createTestDatabase, TestDatabase } from '../support/db';
import { requireBuild, runCli } from '../support/process';
import { startTestVault, TEST_ENV, TestVault } from '../support/vault';

/** Decrypts every stored secret with the running vault's keyring; returns them by row. */
async function decryptAll(db: TestDatabase, vault: TestVault): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const box = vault.get(SecretBoxService);
  for (const t of await vault.get(DataSource).getRepository(TargetEntity).find()) {
    out[`targets/${t.id}`] = JSON.stringify(await vault.get(TargetsService).adminSecret(t));
  }
  for (const a of await db.query<{ id: string; password_secret: Buffer }>('SELECT id, password_secret FROM accounts')) {
    out[`accounts/${a.id}`] = box.decrypt({ table: 'accounts', rowId: a.id, column: 'password_secret' }, a.password_secret);
  }
  return out;
}

describe('master-key rotation and data-key versions (INVARIANT 2)', () => {
  let db: TestDatabase;
  const keyA = randomBytes(32);
  const keyB = randomBytes(32);
  let adminSecret: string;
  const env = (key: Buffer, extra: Record<string, string> = {}) => ({
    DATABASE_URL: db.url,
    VAULT_MASTER_KEY: key.toString('base64'),
    ...extra,
  });

  beforeAll(async () => {
    requireBuild();
    db = await createTestDatabase();
  });
  afterAll(() => db.drop());

  it('re-wraps the keyring only; every secret decrypts under the new key and the old key is refused', async () => {
    const before = await startTestVault({ db, masterKey: keyA });
    const auth = await before.adminAuth();
    adminSecret = (await before.admin()).secret;
    const passwords: string[] = [];
    for (let i = 0; i < 3; i++) {
      const target = (await before.http().post('/v1/targets').set('Authorization', auth).set('X-MFA-Code', await (await before.admin()).code()).send(postgresTarget()).expect(201)).body;
      const acct = accountInput(target.id);
      passwords.push(acct.password);
      await before.http().post('/v1/accounts').set('Authorization', auth).set('X-MFA-Code', await (await before.admin()).code()).send(acct).expect(201);
    }
    const plain = await decryptAll(db, before);
    const ciphertexts = await db.query('SELECT id, password_secret FROM accounts ORDER BY id');
    await before.close();

    const wrappedBefore = await db.query<{ wrapped: Buffer }>('SELECT wrapped FROM keyring_keys ORDER BY purpose, version');
    const res = runCli(['rotate-master-key'], env(keyA, { VAULT_NEW_MASTER_KEY: keyB.toString('base64') }));
    expect(res.stderr).toBe('');
    expect(res.status).toBe(0);
    expect(res.stdout).toMatch(/re-wrapped 2 keyring entries/);
    const wrappedAfter = await db.query<{ wrapped: Buffer }>('SELECT wrapped FROM keyring_keys ORDER BY purpose, version');
    wrappedAfter.forEach((row, i) => expect(row.wrapped.equals(wrappedBefore[i].wrapped)).toBe(false));
    // secrets themselves were not rewritten
    expect(await db.query('SELECT id, password_secret FROM accounts ORDER BY id')).toEqual(ciphertexts);

    const after = await startTestVault({ db, masterKey: keyB, adminSecret });
    try {
      expect(await decryptAll(db, after)).toEqual(plain);
      expect(Object.values(plain)).toEqual(expect.arrayContaining(passwords));
      const verify = await after.http().get('/v1/audit-events/verify').set('Authorization', await after.adminAuth()).expect(200);
      expect(verify.body).toMatchObject({ ok: true });
    } finally {
      await after.close();
    }

    await expect(startTestVault({ db, masterKey: keyA })).rejects.toThrow(MasterKeyError);
  }, 60_000);

  it('refuses to rotate with a wrong current key and changes nothing', async () => {
    const wrappedBefore = await db.query('SELECT purpose, version, wrapped FROM keyring_keys ORDER BY purpose, version');
    const res = runCli(['rotate-master-key'], env(randomBytes(32), { VAULT_NEW_MASTER_KEY: randomBytes(32).toString('base64') }));
    expect(res.status).not.toBe(0);
    expect(res.stderr).toMatch(/master key does not unlock the keyring/);
    expect(await db.query('SELECT purpose, version, wrapped FROM keyring_keys ORDER BY purpose, version')).toEqual(wrappedBefore);
  });

  it('adds a data-key version: new secrets use it, old ones still decrypt', async () => {
    const res = runCli(['add-data-key'], env(keyB));
    expect(res.status).toBe(0);
    expect(res.stdout).toMatch(/added data key version 2/);
    const vault = await startTestVault({ db, masterKey: keyB, adminSecret });
    try {
      const auth = await vault.adminAuth();
      const target = (await vault.http().post('/v1/targets').set('Authorization', auth).set('X-MFA-Code', await (await vault.admin()).code()).send(postgresTarget()).expect(201)).body;
      const [row] = await db.query<{ admin_secret: Buffer }>('SELECT admin_secret FROM targets WHERE id = $1', [target.id]);
      expect(SecretBoxService.parse(row.admin_secret).version).toBe(2);
      const all = await decryptAll(db, vault);
      expect(Object.keys(all).length).toBeGreaterThanOrEqual(7);
    } finally {
      await vault.close();
    }
  }, 60_000);

  it('generate-master-key prints a usable 32-byte key', () => {
    const res = runCli(['generate-master-key'], {});
    expect(res.status).toBe(0);
    expect(Buffer.from(res.stdout.trim(), 'base64')).toHaveLength(32);
    expect(TEST_ENV.LOG_LEVEL).toBeDefined();
  });

  it('--help prints the usage on stdout and exits 0; an unknown command is a usage error (64) on stderr', () => {
    for (const flag of ['--help', '-h', 'help']) {
      const res = runCli([flag], {});
      expect({ status: res.status, stderr: res.stderr }).toEqual({ status: 0, stderr: '' });
      expect(res.stdout).toMatch(/^usage: pam-vault-admin <command>/);
    }
    const bad = runCli(['no-such-command'], {});
    expect(bad.status).toBe(64);
    expect(bad.stderr).toMatch(/usage: pam-vault-admin/);
    expect(bad.stdout).toBe('');
  });
});

describe('a damaged keyring is refused, never silently replaced', () => {
  it.each([
    ['the audit key', "DELETE FROM keyring_keys WHERE purpose = 'audit'", /lost its audit key/],
    ['every key', 'DELETE FROM keyring_keys', /keyring is empty but the database holds secrets/],
  ])('refuses to start when %s is gone', async (_what, sql, message) => {
    const db = await createTestDatabase();
    const key = randomBytes(32);
    try {
      const vault = await startTestVault({ db, masterKey: key });
      await vault.http().post('/v1/targets').set('Authorization', await vault.adminAuth()).set('X-MFA-Code', await (await vault.admin()).code()).send(postgresTarget()).expect(201);
      await vault.close();
      await db.query(sql);
      await expect(startTestVault({ db, masterKey: key })).rejects.toThrow(message);
      expect((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM keyring_keys'))[0].n).toBeLessThan(2);
    } finally {
      await db.drop();
    }
  });
});

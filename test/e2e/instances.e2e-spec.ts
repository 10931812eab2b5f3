import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { AccountEntity, accountSecretRef } from '../../src/accounts/account.entity';
import { SecretBoxService } from '../../src/crypto/secret-box.service';
import { TargetEntity } from '../../src/targets/target.entity';
import { TargetsService } from '../../src/targets/targets.service';
import { createTestDatabase, TestDatabase } from '../support/db';
import { freePort, requireBuild, spawnVault, VaultProcess } from '../support/process';
import { PgHandle, startScramPostgres } from '../support/targets/postgres';
import { startTestVault, TEST_ENV, TestVault } from '../support/vault';

/**
 * INVARIANT 16: three vault processes on one database, many due accounts: each account is rotated exactly
 * once — counted in the vault's rotation records and in the target's own statement log (ALTER ROLE lines).
 */
describe('several instances on one database (built vault ×3, real PostgreSQL target)', () => {
  const ACCOUNTS = 24;
  let db: TestDatabase;
  let pg: PgHandle;
  let setup: TestVault;
  const procs: VaultProcess[] = [];
  const masterKey = randomBytes(32);

  beforeAll(async () => {
    requireBuild();
    db = await createTestDatabase();
    pg = await startScramPostgres({ tls: true });
    setup = await startTestVault({ db, masterKey, env: { VAULT_ROTATION_SWEEP_MS: '3600000' } });
  }, 60_000);
  afterAll(async () => {
    for (const p of procs) p.child.kill('SIGKILL');
    await setup?.close();
    await pg?.stop();
    await db?.drop();
  });

  it('rotates each due account exactly once', async () => {
    const auth = await setup.adminAuth();
    const target = (
      await setup
        .http()
        .post('/v1/targets')
        .set('Authorization', auth)
        .set('X-MFA-Code', await (await setup.admin()).code())
        .send({ name: 'shared', type: 'postgres', host: pg.host, port: pg.port, admin: { username: pg.adminUsername, password: pg.adminPassword }, options: { database: pg.database, tlsCa: pg.tls!.caPem } })
        .expect(201)
    ).body;
    const names: string[] = [];
    const ids: string[] = [];
    for (let i = 0; i < ACCOUNTS; i++) {
      const username = `vi_${i}_${randomBytes(3).toString('hex')}`;
      const password = `Orig-${randomBytes(8).toString('hex')}`;
      await pg.createRole(username, password);
      names.push(username);
      ids.push((await setup.http().post('/v1/accounts').set('Authorization', auth).set('X-MFA-Code', await (await setup.admin()).code()).send({ targetId: target.id, username, password }).expect(201)).body.id);
    }
    // the target logs every ALTER ROLE from now on: one line per real password change
    await pg.query("ALTER SYSTEM SET log_statement = 'ddl'");
    await pg.query('SELECT pg_reload_conf()');
    await db.query("UPDATE accounts SET next_rotation_at = now() - interval '1 minute' WHERE id = ANY($1)", [ids]);

    for (let i = 0; i < 3; i++) {
      procs.push(
        spawnVault({
          DATABASE_URL: db.url,
          VAULT_MASTER_KEY: masterKey.toString('base64'),
          PORT: String(await freePort()),
          VAULT_ARGON2_MEMORY_KIB: TEST_ENV.VAULT_ARGON2_MEMORY_KIB,
          VAULT_ARGON2_TIME_COST: TEST_ENV.VAULT_ARGON2_TIME_COST,
          VAULT_ROTATION_SWEEP_MS: '200',
          VAULT_ROTATION_CONCURRENCY: '4',
          LOG_LEVEL: 'warn',
        }),
      );
    }
    const start = Date.now();
    for (;;) {
      const [{ left }] = await db.query<{ left: number }>(
        "SELECT count(*)::int AS left FROM accounts WHERE id = ANY($1) AND (last_rotated_at IS NULL OR status <> 'available')",
        [ids],
      );
      if (left === 0) break;
      if (Date.now() - start > 60_000) throw new Error(`${left} accounts still not rotated`);
      await new Promise((r) => setTimeout(r, 250));
    }
    await new Promise((r) => setTimeout(r, 1000)); // a late double would show up here
    for (const p of procs) p.child.kill('SIGTERM');
    await Promise.all(procs.map((p) => p.exited));

    const perAccount = await db.query<{ account_id: string; n: number }>(
      'SELECT account_id, count(*)::int AS n FROM rotations WHERE account_id = ANY($1) GROUP BY account_id',
      [ids],
    );
    expect(perAccount).toHaveLength(ACCOUNTS);
    expect(perAccount.every((r) => r.n === 1)).toBe(true);
    const claimants = await db.query<{ n: number }>('SELECT count(DISTINCT claimed_by)::int AS n FROM rotations WHERE account_id = ANY($1)', [ids]);
    expect(claimants[0].n).toBeGreaterThanOrEqual(1);

    const log = pg.logs();
    for (const name of names) {
      const changes = log.split('\n').filter((l) => l.includes(`ALTER ROLE "${name}" WITH PASSWORD`)).length;
      expect({ name, changes }).toEqual({ name, changes: 1 });
    }
    // the statement log shows SCRAM verifiers, never a plaintext password
    expect(log).not.toMatch(/ALTER ROLE "[^"]+" WITH PASSWORD '(?!SCRAM-SHA-256\$)/);

    const ds = setup.get(DataSource);
    const conn = await setup.get(TargetsService).connect(await ds.getRepository(TargetEntity).findOneByOrFail({ id: target.id }));
    for (const id of ids) {
      const a = await ds.getRepository(AccountEntity).findOneByOrFail({ id });
      await conn.login({ username: a.username, password: setup.get(SecretBoxService).decrypt(accountSecretRef(id), a.passwordSecret!) });
    }
  }, 120_000);
});

import { DataSource } from 'typeorm';
import { SecretBoxService } from '../../src/crypto/secret-box.service';
import { TargetEntity } from '../../src/targets/target.entity';
import { TargetsService } from '../../src/targets/targets.service';
import { accountInput, postgresTarget, secretValue, sshTarget } from '../factories';
import { startTestVault, TestVault } from '../support/vault';
import { needsStepUp, withMfa } from '../support/http';

describe('targets and accounts CRUD (e2e, real PostgreSQL)', () => {
  let vault: TestVault;
  let auth: string;
  const sent: string[] = [];

  /** Every secret a test sends is remembered, and no response may ever contain one. */
  const remember = <T extends Record<string, unknown>>(body: T): T => {
    const admin = body.admin as { password?: string; privateKey?: string } | undefined;
    for (const s of [admin?.password, admin?.privateKey, body.password as string | undefined]) if (s) sent.push(s);
    return body;
  };
  /** As the admin; with a fresh step-up code where the route needs one. */
  const call = (method: 'get' | 'post' | 'patch' | 'delete', path: string, body?: object) => {
    const req = vault.http()[method](path).set('Authorization', auth);
    const sent = body ? req.send(body) : req;
    return needsStepUp(method, path) ? withMfa(sent, async () => (await vault.admin()).code()) : sent;
  };
  const noSecrets = (text: string) => sent.forEach((s) => expect(text).not.toContain(s));

  beforeAll(async () => {
    vault = await startTestVault();
    auth = await vault.adminAuth();
  });
  afterAll(() => vault.close());

  it('creates, reads, lists, updates and deletes a target without ever returning its secret', async () => {
    const input = remember(postgresTarget({ options: { database: 'postgres' } }));
    const created = await call('post', '/v1/targets', input).expect(201);
    expect(created.body).toEqual({
      id: expect.any(String),
      name: input.name,
      type: 'postgres',
      host: '127.0.0.1',
      port: 5432,
      admin: { username: 'postgres', credential: ['password'] },
      options: { database: 'postgres' },
      createdAt: expect.any(String),
      updatedAt: expect.any(String),
    });
    const id = created.body.id;
    noSecrets(JSON.stringify((await call('get', `/v1/targets/${id}`).expect(200)).body));
    noSecrets(JSON.stringify((await call('get', '/v1/targets').expect(200)).body));

    const newSecret = secretValue('rotated-admin');
    sent.push(newSecret);
    const patched = await call('patch', `/v1/targets/${id}`, { host: 'db2.example.com', admin: { username: 'vault_admin', password: newSecret } }).expect(200);
    expect(patched.body).toMatchObject({ host: 'db2.example.com', admin: { username: 'vault_admin', credential: ['password'] } });
    noSecrets(JSON.stringify(patched.body));

    await call('delete', `/v1/targets/${id}`).expect(204);
    await call('get', `/v1/targets/${id}`).expect(404);
  });

  it('binds the admin credential to the target it belongs to: a database-side redirect cannot decrypt it', async () => {
    const input = remember(sshTarget({ options: { hostKeySha256: 'B'.repeat(43) } }));
    const created = (await call('post', '/v1/targets', input).expect(201)).body;
    const targets = vault.get(TargetsService);
    const load = () => vault.get(DataSource).getRepository(TargetEntity).findOneByOrFail({ id: created.id });
    expect((await targets.adminSecret(await load())).password).toBe(input.admin.password);

    // an admin moving the target through the API types its credential again: the stored one never follows it
    const move = { host: 'moved.example.internal', port: 2222 };
    expect((await call('patch', `/v1/targets/${created.id}`, move).expect(400)).body.code).toBe('ADMIN_CREDENTIAL_REQUIRED');
    await call('patch', `/v1/targets/${created.id}`, { ...move, admin: input.admin }).expect(200);
    expect((await targets.adminSecret(await load())).password).toBe(input.admin.password);

    // someone with database access alone redirecting it, or removing the pin: the credential no longer opens
    await vault.db.query("UPDATE targets SET host = 'attacker.example.net' WHERE id = $1", [created.id]);
    await expect(targets.adminSecret(await load())).rejects.toMatchObject({ code: 'TARGET_CREDENTIAL_UNREADABLE' });
    // and through the API that is a clear 409, never a 500, and nothing is sent anywhere
    const unreadable = await call('post', `/v1/targets/${created.id}/verify`, {}).expect(409);
    expect(unreadable.body.code).toBe('TARGET_CREDENTIAL_UNREADABLE');
    await vault.db.query("UPDATE targets SET host = 'moved.example.internal', options = '{}' WHERE id = $1", [created.id]);
    await expect(targets.adminSecret(await load())).rejects.toMatchObject({ code: 'TARGET_CREDENTIAL_UNREADABLE' });
  });

  it("binds a MySQL target's accountHost into its admin credential: a database-side change cannot send one-time account removals elsewhere", async () => {
    const input = remember(postgresTarget({ type: 'mysql', port: 3306, admin: { username: 'root', password: secretValue('mysql-admin') }, options: { accountHost: '10.0.0.%' } }));
    const created = (await call('post', '/v1/targets', input).expect(201)).body;
    const targets = vault.get(TargetsService);
    const load = () => vault.get(DataSource).getRepository(TargetEntity).findOneByOrFail({ id: created.id });
    expect((await targets.adminSecret(await load())).password).toBe(input.admin.password);

    // through the API the account host moves only with the credential typed again, and it still opens after
    expect((await call('patch', `/v1/targets/${created.id}`, { options: { accountHost: '10.0.1.%' } }).expect(400)).body.code).toBe('ADMIN_CREDENTIAL_REQUIRED');
    await call('patch', `/v1/targets/${created.id}`, { options: { accountHost: '10.0.1.%' }, admin: input.admin }).expect(200);
    expect((await targets.adminSecret(await load())).password).toBe(input.admin.password);

    // someone with database access alone changing it (or removing it: the default '%'): the credential no longer opens
    await vault.db.query(`UPDATE targets SET options = jsonb_set(options, '{accountHost}', '"x"') WHERE id = $1`, [created.id]);
    await expect(targets.adminSecret(await load())).rejects.toMatchObject({ code: 'TARGET_CREDENTIAL_UNREADABLE' });
    await vault.db.query(`UPDATE targets SET options = options - 'accountHost' WHERE id = $1`, [created.id]);
    await expect(targets.adminSecret(await load())).rejects.toMatchObject({ code: 'TARGET_CREDENTIAL_UNREADABLE' });
    await vault.db.query(`UPDATE targets SET options = jsonb_set(options, '{accountHost}', '"10.0.1.%"') WHERE id = $1`, [created.id]);
    expect((await targets.adminSecret(await load())).password).toBe(input.admin.password);

    // a MySQL target without accountHost keeps the context it was stored with before accountHost was bound
    const plain = remember(postgresTarget({ type: 'mysql', port: 3306, admin: { username: 'root', password: secretValue('mysql-admin') } }));
    const plainRow = (await call('post', '/v1/targets', plain).expect(201)).body;
    const before = vault.get(SecretBoxService).encrypt(
      { table: 'targets', rowId: plainRow.id, column: 'admin_secret', context: JSON.stringify(['mysql', plain.host, plain.port, 'root', null]) },
      JSON.stringify({ password: plain.admin.password }),
    );
    await vault.db.query('UPDATE targets SET admin_secret = $1 WHERE id = $2', [before, plainRow.id]);
    const loaded = await vault.get(DataSource).getRepository(TargetEntity).findOneByOrFail({ id: plainRow.id });
    expect((await targets.adminSecret(loaded)).password).toBe(plain.admin.password);
  });

  it('keeps options the client did not mention: a PATCH never drops a pinned host key', async () => {
    const pin = 'SHA256:' + 'A'.repeat(43);
    const target = (await call('post', '/v1/targets', remember(sshTarget({ options: { hostKeySha256: pin, sudo: false } }))).expect(201)).body;
    expect(target.options).toEqual({ hostKeySha256: 'A'.repeat(43), sudo: false });
    expect((await call('patch', `/v1/targets/${target.id}`, { options: { sudo: true } }).expect(200)).body.options).toEqual({ hostKeySha256: 'A'.repeat(43), sudo: true });
    expect((await call('patch', `/v1/targets/${target.id}`, { options: {} }).expect(200)).body.options).toEqual({ hostKeySha256: 'A'.repeat(43), sudo: true });
  });

  it.each(['10.0.0.1', '::1', 'fe80::1', 'db-1.internal.example.com'])('accepts host %s', async (host) => {
    await call('post', '/v1/targets', remember(postgresTarget({ host }))).expect(201);
  });

  it.each([':::::', '1.2.3', '999.1.1.1', '-db', 'db..example'])('refuses host %s', async (host) => {
    expect((await call('post', '/v1/targets', postgresTarget({ host })).expect(400)).body.code).toBe('VALIDATION_FAILED');
  });

  it('stores target and account secrets only encrypted, bound to their row', async () => {
    const input = remember(postgresTarget());
    const target = (await call('post', '/v1/targets', input).expect(201)).body;
    const acct = remember(accountInput(target.id));
    const account = (await call('post', '/v1/accounts', acct).expect(201)).body;

    const [t] = await vault.db.query<{ admin_secret: Buffer }>('SELECT admin_secret FROM targets WHERE id = $1', [target.id]);
    const [a] = await vault.db.query<{ password_secret: Buffer }>('SELECT password_secret FROM accounts WHERE id = $1', [account.id]);
    expect(t.admin_secret.includes(Buffer.from(input.admin.password))).toBe(false);
    expect(a.password_secret.includes(Buffer.from(acct.password))).toBe(false);

    const box = vault.get(SecretBoxService);
    expect(box.decrypt({ table: 'accounts', rowId: account.id, column: 'password_secret' }, a.password_secret)).toBe(acct.password);
    // the same ciphertext pasted into another account's row does not decrypt there
    const other = (await call('post', '/v1/accounts', remember(accountInput(target.id))).expect(201)).body;
    await vault.db.query('UPDATE accounts SET password_secret = $1 WHERE id = $2', [a.password_secret, other.id]);
    const [copied] = await vault.db.query<{ password_secret: Buffer }>('SELECT password_secret FROM accounts WHERE id = $1', [other.id]);
    expect(() => box.decrypt({ table: 'accounts', rowId: other.id, column: 'password_secret' }, copied.password_secret)).toThrow('decryption failed');
  });

  it('creates accounts with the default policy, validates names per target type, and never returns the password', async () => {
    const pg = (await call('post', '/v1/targets', remember(postgresTarget())).expect(201)).body;
    const ssh = (await call('post', '/v1/targets', remember(sshTarget())).expect(201)).body;
    const acct = remember(accountInput(pg.id, { username: 'deploy' }));
    const created = await call('post', '/v1/accounts', acct).expect(201);
    expect(created.body).toEqual({
      id: expect.any(String),
      targetId: pg.id,
      username: 'deploy',
      status: 'available',
      lastRotatedAt: null,
      nextRotationAt: expect.any(String),
      policy: {
        checkoutTtlSeconds: 3600,
        maxCheckoutTtlSeconds: 28800,
        approvalsRequired: 0,
        breakGlassAllowed: false,
        breakGlassTtlSeconds: 1800,
        rotateAfterCheckin: true,
        rotationIntervalSeconds: 2592000,
        passwordLength: 32,
        passwordClasses: ['lower', 'upper', 'digit', 'symbol'],
        brokeredOnly: false,
        allowPortForwarding: false,
        recordInput: false,
        requireWebauthn: false,
      },
      createdAt: expect.any(String),
      updatedAt: expect.any(String),
    });
    // uppercase is fine for PostgreSQL roles but not for Linux users
    const bad = await call('post', '/v1/accounts', accountInput(ssh.id, { username: 'Deploy' })).expect(400);
    expect(bad.body.code).toBe('VALIDATION_FAILED');
    // an SSH account is checked against the target (is it the admin's uid under another name?): an unpinned target
    // is asked nothing, so nothing is created
    const unpinned = await call('post', '/v1/accounts', remember(accountInput(ssh.id, { username: 'deploy' })));
    expect(unpinned.status).toBeGreaterThanOrEqual(400);
    expect((await call('get', `/v1/accounts?targetId=${ssh.id}`).expect(200)).body.items).toEqual([]);

    const patched = await call('patch', `/v1/accounts/${created.body.id}`, { policy: { approvalsRequired: 2, checkoutTtlSeconds: 600 } }).expect(200);
    expect(patched.body.policy).toMatchObject({ approvalsRequired: 2, checkoutTtlSeconds: 600, maxCheckoutTtlSeconds: 28800 });
    noSecrets(JSON.stringify(patched.body));
    noSecrets(JSON.stringify((await call('get', `/v1/accounts/${created.body.id}`).expect(200)).body));

    await call('delete', `/v1/targets/${pg.id}`).expect(409);
    await call('delete', `/v1/accounts/${created.body.id}`).expect(204);
    await call('get', `/v1/accounts/${created.body.id}`).expect(404);
  });

  it('lists accounts by keyset pages with filters', async () => {
    const target = (await call('post', '/v1/targets', remember(postgresTarget())).expect(201)).body;
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await call('post', '/v1/accounts', remember(accountInput(target.id))).expect(201)).body.id);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { body: { items: Array<{ id: string }>; nextCursor: string | null } } = await call(
        'get',
        `/v1/accounts?targetId=${target.id}&limit=2${cursor ? `&cursor=${cursor}` : ''}`,
      ).expect(200);
      expect(page.body.items.length).toBeLessThanOrEqual(2);
      seen.push(...page.body.items.map((a) => a.id));
      noSecrets(JSON.stringify(page.body));
      cursor = page.body.nextCursor;
    } while (cursor);
    expect(seen.sort()).toEqual(ids.sort());
  });

  it('never lets any response so far contain a secret that was sent', async () => {
    const rows = await vault.db.query<{ details: unknown }>('SELECT details FROM audit_events');
    noSecrets(JSON.stringify(rows));
    noSecrets(JSON.stringify((await call('get', '/v1/audit-events?limit=200').expect(200)).body));
  });
});

import { randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { freePort } from '../support/process';
import { REAL_TARGETS, RealTarget } from '../support/targets/real';
import { startTestVault, TestUser, TestVault } from '../support/vault';
import { CLI, cliJson, CliRun, expectExit, runCli } from '../support/vaultctl-cli';


/**
 * vaultctl against a running vault over real HTTP: the vault listens on a local port, the CLI runs as a child
 * process (the built dist/ file) with its own config folder, and everything it does is checked on the vault
 * and on a real scram-sha-256 PostgreSQL target: credentials that log in, passwords that stop working after
 * check-in, rotation and revocation, the exit codes scripts rely on, and no password in the CLI's own output
 * when a client is run with --exec.
 */
describe('vaultctl against a running vault (e2e)', () => {
  let vault: TestVault;
  let url: string;
  let admin: TestUser;
  let operator: TestUser;
  let operator2: TestUser;
  let approver: TestUser;
  let vendor: TestUser;
  let real: RealTarget;
  let targetId: string;
  /** A copy of dist/src/vaultctl taken in beforeAll, so a concurrent `npm run build` (rm -rf dist) cannot pull it away mid-run. */
  let cliMain: string;
  const dirs: string[] = [];
  const made: string[] = [];

  const tempDir = () => {
    const d = mkdtempSync(join(tmpdir(), 'vaultctl-test-'));
    dirs.push(d);
    return d;
  };
  /** The bearer token of a test user, for VAULT_TOKEN. */
  const tokenOf = (u: TestUser) => u.auth.replace(/^Bearer /, '');

  const cli = (args: string[], opts: { env?: Record<string, string>; input?: string; as?: TestUser; configDir?: string } = {}): Promise<CliRun> =>
    runCli(cliMain, args, { url, configDir: opts.configDir ?? tempDir(), token: opts.as ? tokenOf(opts.as) : undefined, env: opts.env, input: opts.input });
  const json = cliJson;
  const eventually = async (check: () => Promise<boolean>, ms = 15_000) => {
    const end = Date.now() + ms;
    while (!(await check())) {
      if (Date.now() > end) throw new Error('condition not reached in time');
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  const accountStatus = async (id: string) => (await vault.http().get(`/v1/accounts/${id}`).set('Authorization', admin.auth).expect(200)).body.status as string;

  /** An account on the real target with a known password, registered through the CLI. */
  const newAccount = async (extra: string[] = []) => {
    const username = `vc_${randomBytes(4).toString('hex')}`;
    const password = `Orig-${randomBytes(10).toString('hex')}`;
    await real.createAccount(username, password);
    made.push(username);
    const r = expectExit(await cli(['--json', 'accounts', 'create', '--code', await admin.code(), '--target', targetId, '--username', username, '--password-stdin', ...extra], { as: admin, input: `${password}\n` }), 0);
    return { id: json<{ id: string }>(r).id, username, password };
  };

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: these tests run the built CLI; run \`npm run build\` first (npm test does)`);
    const snapshot = tempDir();
    cpSync(dirname(CLI), snapshot, { recursive: true });
    cliMain = join(snapshot, 'main.js');
    vault = await startTestVault({ env: { VAULT_CHECKOUT_SWEEP_MS: '3600000', VAULT_ROTATION_SWEEP_MS: '3600000' } });
    await vault.app.listen(0, '127.0.0.1');
    url = `http://127.0.0.1:${(vault.app.getHttpServer().address() as AddressInfo).port}`;
    admin = await vault.admin();
    [operator, operator2, approver, vendor] = await Promise.all([
      vault.createUser(['operator']),
      vault.createUser(['operator']),
      vault.createUser(['approver']),
      vault.createUser(['vendor']),
    ]);
    real = await REAL_TARGETS.postgres({ publicConnect: true }); // the vendor's --exec client connects to it without a policy database
  }, 60_000);

  afterAll(async () => {
    for (const n of made) await real?.dropAccount(n).catch(() => undefined);
    await vault?.close();
    await real?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('answers usage errors with 2, no token with 3 and an unreachable vault with 11', async () => {
    const help = expectExit(await cli(['--help']), 0);
    expect(help.stdout).toMatch(/Exit codes:[\s\S]*11 +vault unavailable/);
    expect(expectExit(await cli(['checkout', randomUUID()]), 2).stderr).toMatch(/--reason/);
    expect(expectExit(await cli(['rotate', '--concurrency', 'many', randomUUID()]), 2).stderr).toMatch(/whole number/);

    const noToken = expectExit(await cli(['whoami']), 3);
    expect(noToken.stderr).toMatch(/UNAUTHENTICATED: not logged in/);

    const down = `http://127.0.0.1:${await freePort()}`;
    const unreachable = expectExit(await cli(['whoami', '--json'], { as: admin, env: { VAULT_ADDR: down } }), 11);
    expect(unreachable.stderr).toMatch(/UNREACHABLE: cannot reach the vault at .*ECONNREFUSED/);
    expect(json(unreachable)).toMatchObject({ error: { code: 'UNREACHABLE' }, exitCode: 11 });

    const badToken = expectExit(await cli(['whoami'], { env: { VAULT_TOKEN: 'pvt_nope' } }), 3);
    expect(badToken.stderr).toMatch(/UNAUTHENTICATED \(401\)/);
  });

  it('logs in with password and code into a 0600 token file, refuses a readable one, and tells who is logged in', async () => {
    const dir = join(tempDir(), 'cfg');
    const login = expectExit(await cli(['login', '--username', operator.username, '--password-stdin', '--code', await operator.code()], { configDir: dir, input: `${operator.password}\n` }), 0);
    expect(login.stdout).toMatch(new RegExp(`logged in to ${url} as ${operator.username}`));
    const file = join(dir, 'token.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({ url, username: operator.username, token: expect.stringMatching(/^pvt_/) });
    expect(login.stdout + login.stderr).not.toContain(operator.password);

    const who = expectExit(await cli(['whoami'], { configDir: dir }), 0);
    expect(who.stdout).toMatch(new RegExp(`user: +${operator.username}`));
    expect(who.stdout).toMatch(/roles: +operator/);
    expect(json(expectExit(await cli(['whoami', '--json'], { configDir: dir }), 0))).toMatchObject({ id: operator.id, roles: ['operator'] });

    // the session is never sent to another vault
    const elsewhere = expectExit(await cli(['whoami', '--url', `http://127.0.0.1:${await freePort()}`], { configDir: dir }), 3);
    expect(elsewhere.stderr).toMatch(/the saved session is for/);

    chmodSync(file, 0o644);
    const refused = expectExit(await cli(['whoami'], { configDir: dir }), 3);
    expect(refused.stderr).toMatch(/refusing to use .*token\.json: group or others can access it \(mode 0644\)/);
    chmodSync(file, 0o600);

    const wrong = expectExit(await cli(['login', '--username', operator.username, '--password-stdin', '--code', '123456'], { configDir: tempDir(), input: 'not-the-password\n' }), 3);
    expect(wrong.stderr).toMatch(/UNAUTHENTICATED \(401\): invalid username or password/);

    const logout = expectExit(await cli(['logout'], { configDir: dir }), 0);
    expect(logout.stdout).toMatch(/logged out/);
    expect(existsSync(file)).toBe(false);
  });

  it('registers and verifies a real PostgreSQL target and its accounts as admin', async () => {
    const body = real.body as { host: string; port: number; admin: { username: string; password: string }; options: { database: string; tlsCa: string } };
    // TLS is the default for PostgreSQL: the cluster's CA goes in through --file (the flags fill in the rest)
    const tlsFile = join(tempDir(), 'target.json');
    writeFileSync(tlsFile, JSON.stringify({ options: { tlsCa: body.options.tlsCa } }));
    const created = expectExit(
      await cli(
        ['--json', 'targets', 'create', '--file', tlsFile, '--code', await admin.code(), '--name', 'pg-vaultctl', '--type', 'postgres', '--host', body.host, '--port', String(body.port), '--admin-username', body.admin.username, '--admin-password-stdin', '--database', body.options.database],
        { as: admin, input: `${body.admin.password}\n` },
      ),
      0,
    );
    targetId = json<{ id: string }>(created).id;
    expect(created.stdout).not.toContain(body.admin.password);
    expect(expectExit(await cli(['targets', 'verify', '--code', await admin.code(), targetId], { as: admin }), 0).stdout).toMatch(/ok/);
    expect(expectExit(await cli(['targets', 'list'], { as: admin }), 0).stdout).toMatch(/pg-vaultctl +postgres/);
    // nothing listens there: the vault says TARGET_UNREACHABLE (502), vaultctl exits 10
    const dead = json<{ id: string }>(
      expectExit(
        await cli(['--json', 'targets', 'create', '--code', await admin.code(), '--name', 'pg-dead', '--type', 'postgres', '--host', '127.0.0.1', '--port', String(await freePort()), '--admin-username', 'postgres', '--admin-password-stdin'], {
          as: admin,
          input: 'whatever\n',
        }),
        0,
      ),
    );
    expect(expectExit(await cli(['targets', 'verify', '--code', await admin.code(), dead.id], { as: admin }), 10).stderr).toMatch(/TARGET_UNREACHABLE \(502\)/);
    // an admin change needs the admin's own step-up code: without one (and no terminal to ask on) nothing happens
    expect(expectExit(await cli(['targets', 'delete', dead.id], { as: admin }), 4).stderr).toMatch(/MFA_REQUIRED/);
    expectExit(await cli(['targets', 'get', dead.id], { as: admin }), 0);
    expectExit(await cli(['targets', 'delete', '--code', await admin.code(), dead.id], { as: admin }), 0);
    // an operator may not administer
    expect(expectExit(await cli(['users', 'list'], { as: operator }), 5).stderr).toMatch(/FORBIDDEN \(403\)/);
  });

  it('checks out (credential printed, it logs in), refuses a second holder (7), a replayed code (4), bad ids (2, 6); check-in rotates', async () => {
    const account = await newAccount();
    const code = await operator.code();
    const out = expectExit(await cli(['checkout', account.id, '--reason', 'e2e: vacuum', '--code', code], { as: operator }), 0);
    expect(out.stdout).toMatch(new RegExp(`username: +${account.username}`));
    expect(out.stdout).toMatch(new RegExp(`password: +${account.password}`));
    const checkoutId = /checkout ([0-9a-f-]{36}) active/.exec(out.stderr)![1];
    expect(await real.canLogin(account.username, account.password)).toBe(true);

    const replay = expectExit(await cli(['reveal', checkoutId, '--code', code], { as: operator }), 4);
    expect(replay.stderr).toMatch(/MFA_REPLAYED \(401\)/);
    expect(replay.stderr).toMatch(/the next code is accepted from \d{4}-\d\d-\d\dT/);

    const busy = expectExit(await cli(['checkout', account.id, '--reason', 'e2e: me too', '--code', await operator2.code()], { as: operator2 }), 7);
    expect(busy.stderr).toMatch(/ACCOUNT_CHECKED_OUT \(409\)/);

    expect(expectExit(await cli(['checkin', 'not-an-id'], { as: operator }), 2).stderr).toMatch(/VALIDATION_FAILED \(400\)/);
    expect(expectExit(await cli(['checkin', randomUUID()], { as: operator }), 6).stderr).toMatch(/NOT_FOUND \(404\)/);

    const revealed = expectExit(await cli(['--json', 'reveal', checkoutId, '--code', await operator.code()], { as: operator }), 0);
    expect(json(revealed)).toMatchObject({ credential: { username: account.username, password: account.password } });

    expect(expectExit(await cli(['checkin', checkoutId], { as: operator }), 0).stdout).toMatch(new RegExp(`checkout ${checkoutId} returned; password rotation`));
    await eventually(async () => !(await real.canLogin(account.username, account.password)));
    await eventually(async () => (await accountStatus(account.id)) === 'available');
  });

  it('checkout --exec runs a client with the credential in its environment, never printing it, and checks in after', async () => {
    const account = await newAccount();
    const seen = join(tempDir(), 'seen');
    // a PostgreSQL client configured only by the environment vaultctl gives it (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE)
    const script = [
      "const { Client } = require('pg');",
      "require('fs').writeFileSync(process.env.SEEN_FILE, process.env.PGPASSWORD, { mode: 0o600 });",
      'const c = new Client();',
      "c.connect().then(() => c.query('SELECT current_user AS u')).then((r) => {",
      "  console.log('connected-as=' + r.rows[0].u + ' same=' + (process.env.VAULT_PASSWORD === process.env.PGPASSWORD));",
      '  return c.end();',
      "}).catch((e) => { console.error('client failed: ' + e.message); process.exit(3); });",
    ].join('\n');
    const r = expectExit(
      await cli(['checkout', account.id, '-r', 'e2e: psql session', '--code', await operator.code(), '--exec', '--checkin-after', '--', process.execPath, '-e', script], {
        as: operator,
        env: { SEEN_FILE: seen },
      }),
      0,
    );
    expect(r.stdout).toContain(`connected-as=${account.username} same=true`);
    const password = readFileSync(seen, 'utf8');
    expect(password).toBe(account.password);
    expect(r.stdout + r.stderr).not.toContain(password);
    expect(r.stderr).toMatch(/checked in .* \(returned\)/);
    await eventually(async () => !(await real.canLogin(account.username, password)));

    // the child's exit status is vaultctl's; the account is checked in all the same
    const failing = await cli(['checkout', account.id, '-r', 'e2e: failing client', '--code', await operator.code(), '--exec', '--checkin-after', '--', process.execPath, '-e', 'process.exit(42)'], {
      as: operator,
    });
    expectExit(failing, 42);
    await eventually(async () => (await accountStatus(account.id)) === 'available');
  });

  it('checkout --exec -- ssh answers the password prompt through a temporary askpass program, never a command line', async () => {
    const sshd = await REAL_TARGETS.ssh();
    try {
      // a least-privilege sudo admin with a password (read from stdin), the host key pinned at the first verify
      const body = sshd.body as { host: string; port: number; admin: { username: string; password: string }; options: { hostKeySha256: string } };
      const target = json<{ id: string }>(
        expectExit(
          await cli(
            ['--json', 'targets', 'create', '--code', await admin.code(), '--name', 'ssh-vaultctl', '--type', 'ssh', '--host', body.host, '--port', String(body.port), '--admin-username', body.admin.username, '--admin-password-stdin'],
            { as: admin, input: `${body.admin.password}\n` },
          ),
          0,
        ),
      );
      const unpinned = expectExit(await cli(['targets', 'verify', '--code', await admin.code(), target.id], { as: admin }), 7);
      expect(unpinned.stderr).toMatch(/TARGET_HOST_KEY_UNPINNED/);
      expect(unpinned.stderr).toContain(body.options.hostKeySha256);
      expectExit(await cli(['targets', 'verify', '--code', await admin.code(), target.id, '--host-key', `SHA256:${'A'.repeat(43)}`], { as: admin }), 10);
      const pinned = expectExit(await cli(['targets', 'verify', '--code', await admin.code(), target.id, '--host-key', `SHA256:${body.options.hostKeySha256}`], { as: admin }), 0);
      expect(pinned.stdout).toMatch(/ok +SSH_USER_MANAGEMENT/);
      const username = `vc_${randomBytes(4).toString('hex')}`;
      const password = `Orig-${randomBytes(10).toString('hex')}`;
      await sshd.createAccount(username, password);
      const account = json<{ id: string }>(expectExit(await cli(['--json', 'accounts', 'create', '--code', await admin.code(), '--target', target.id, '--username', username, '--password-stdin'], { as: admin, input: `${password}\n` }), 0));

      // `sh` says nothing about the target type: vaultctl asks the vault (an operator may read targets)
      const ssh = [
        'echo "askpass=$SSH_ASKPASS"',
        'exec ssh -p "$VAULT_PORT" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o PubkeyAuthentication=no -o NumberOfPasswordPrompts=1 "$VAULT_USERNAME@$VAULT_HOST" "echo ssh-ok-\\$(id -un)"',
      ].join('; ');
      const r = expectExit(await cli(['checkout', account.id, '-r', 'e2e: ssh session', '--code', await operator.code(), '--exec', '--checkin-after', '--', '/bin/sh', '-c', ssh], { as: operator }), 0);
      expect(r.stdout).toContain(`ssh-ok-${username}`);
      expect(r.stdout + r.stderr).not.toContain(password);
      const askpass = /askpass=(\S+)/.exec(r.stdout)![1];
      expect(existsSync(askpass)).toBe(false); // removed once the client exited
      await eventually(async () => !(await sshd.canLogin(username, password)));
      await eventually(async () => (await accountStatus(account.id)) === 'available');
      expectExit(await cli(['accounts', 'delete', '--code', await admin.code(), account.id], { as: admin }), 0);
      expectExit(await cli(['targets', 'delete', '--code', await admin.code(), target.id], { as: admin }), 0);
    } finally {
      await sshd.stop();
    }
  });

  it('approve and deny between two users; requests lists what waits', async () => {
    const account = await newAccount(['--approvals', '1']);
    const pending = expectExit(await cli(['--json', 'checkout', account.id, '-r', 'e2e: needs approval', '--code', await operator.code()], { as: operator }), 0);
    const id = json<{ id: string; status: string }>(pending);
    expect(id.status).toBe('pending_approval');
    expect(json(pending)).not.toHaveProperty('credential');

    expect(expectExit(await cli(['requests'], { as: approver }), 0).stdout).toMatch(new RegExp(`checkout +${id.id}`));
    // the requester (not an approver) cannot approve
    expect(expectExit(await cli(['approve', id.id, '--code', await operator.code()], { as: operator }), 5).stderr).toMatch(/FORBIDDEN/);
    const approved = expectExit(await cli(['approve', id.id, '-m', 'ok for tonight', '--code', await approver.code()], { as: approver }), 0);
    expect(approved.stdout).toMatch(new RegExp(`checkout ${id.id} is active`));
    const revealed = expectExit(await cli(['reveal', id.id, '--code', await operator.code()], { as: operator }), 0);
    expect(revealed.stdout).toMatch(new RegExp(`password: +${account.password}`));
    expectExit(await cli(['checkin', id.id], { as: operator }), 0);
    await eventually(async () => (await accountStatus(account.id)) === 'available');

    const second = json<{ id: string }>(expectExit(await cli(['--json', 'checkout', account.id, '-r', 'e2e: will be denied', '--code', await operator.code()], { as: operator }), 0));
    const denied = expectExit(await cli(['deny', second.id, '--kind', 'checkout', '--code', await approver.code()], { as: approver }), 0);
    expect(denied.stdout).toMatch(new RegExp(`checkout ${second.id} is denied`));
    // --exec on a pending checkout runs nothing and says so (14)
    const third = await cli(['checkout', account.id, '-r', 'e2e: pending exec', '--code', await operator.code(), '--exec', '--type', 'postgres', '--', process.execPath, '-e', 'console.log("ran")'], { as: operator });
    expectExit(third, 14);
    expect(third.stdout).not.toContain('ran');
  });

  it('break-glass: the operator skips approvals where the policy allows it; approvers list and review it afterwards', async () => {
    const policyFile = join(tempDir(), 'policy.json');
    writeFileSync(policyFile, JSON.stringify({ approvalsRequired: 1, breakGlassAllowed: true, breakGlassTtlSeconds: 900 }));
    const account = await newAccount(['--policy-file', policyFile]);
    const co = json<{ id: string; status: string; breakGlass: boolean }>(
      expectExit(await cli(['--json', 'checkout', account.id, '-r', 'e2e: INC-1 prod down', '--break-glass', '--code', await operator.code()], { as: operator }), 0),
    );
    expect(co).toMatchObject({ status: 'active', breakGlass: true });
    expect(expectExit(await cli(['review'], { as: approver }), 0).stdout).toContain(co.id);
    expect(expectExit(await cli(['review', co.id], { as: approver }), 2).stderr).toMatch(/--comment/);
    expect(expectExit(await cli(['review', co.id, '-m', 'mine', '--code', await operator.code()], { as: operator }), 5).stderr).toMatch(/FORBIDDEN/);
    // step-up: without a code (and no terminal to ask on) nothing is reviewed; while the checkout runs, nothing either
    expect(expectExit(await cli(['review', co.id, '-m', 'no code'], { as: approver }), 4).stderr).toMatch(/MFA_REQUIRED/);
    expect(expectExit(await cli(['review', co.id, '-m', 'too early', '--code', await approver.code()], { as: approver }), 7).stderr).toMatch(/CHECKOUT_NOT_ENDED/);
    expectExit(await cli(['checkin', co.id], { as: operator }), 0);
    expect(expectExit(await cli(['review', co.id, '-m', 'justified by INC-1', '--code', await approver.code()], { as: approver }), 0).stdout).toMatch(/reviewed/);
    expect(expectExit(await cli(['review'], { as: approver }), 0).stdout).not.toContain(co.id);
    expect(expectExit(await cli(['review', co.id, '-m', 'again', '--code', await approver.code()], { as: approver }), 7).stderr).toMatch(/ALREADY_REVIEWED/);
  });

  it('one-time accounts: request, approve, claim once (8 after), revoke', async () => {
    const req = expectExit(
      await cli(['--json', 'ephemeral', 'request', '--target', targetId, '--vendor', vendor.id, '--ttl', '900', '-r', 'e2e: vendor upgrade'], { as: operator }),
      0,
    );
    const id = json<{ id: string; status: string }>(req).id;
    expect(expectExit(await cli(['approve', id, '--code', await approver.code()], { as: approver }), 0).stdout).toMatch(new RegExp(`ephemeral ${id} is approved`));

    const claim = expectExit(await cli(['ephemeral', 'claim', id, '--code', await vendor.code()], { as: vendor }), 0);
    const username = /username: +(\S+)/.exec(claim.stdout)![1];
    const password = /password: +(\S+)/.exec(claim.stdout)![1];
    made.push(username);
    expect(await real.canLogin(username, password)).toBe(true);

    const again = expectExit(await cli(['ephemeral', 'claim', id, '--code', await vendor.code()], { as: vendor }), 8);
    expect(again.stderr).toMatch(/ALREADY_CLAIMED \(410\)/);

    expect(expectExit(await cli(['ephemeral', 'list'], { as: vendor }), 0).stdout).toMatch(new RegExp(`${id} .* active`));
    expect(expectExit(await cli(['ephemeral', 'revoke', id], { as: vendor }), 0).stdout).toMatch(new RegExp(`${id} is revoked`));
    expect(await real.accountExists(username)).toBe(false);

    // claim --exec: a vendor may not read the target, so the client gets the generic VAULT_* variables; revoked after
    const second = json<{ id: string }>(
      expectExit(await cli(['--json', 'ephemeral', 'request', '--target', targetId, '--vendor', vendor.id, '--ttl', '900', '-r', 'e2e: vendor exec'], { as: operator }), 0),
    ).id;
    expectExit(await cli(['approve', second, '--code', await approver.code()], { as: approver }), 0);
    const script = [
      "const { Client } = require('pg');",
      "const e = process.env; console.log('pg-env=' + (e.PGPASSWORD !== undefined) + ' user=' + e.VAULT_USERNAME);",
      "const c = new Client({ host: e.VAULT_HOST, port: Number(e.VAULT_PORT), user: e.VAULT_USERNAME, password: e.VAULT_PASSWORD, database: 'postgres' });",
      "c.connect().then(() => c.query('SELECT 1')).then(() => { console.log('vendor-connected'); return c.end(); })",
      "  .catch((err) => { console.error('client failed: ' + err.message); process.exit(3); });",
    ].join('\n');
    const ran = expectExit(await cli(['ephemeral', 'claim', second, '--code', await vendor.code(), '--exec', '--revoke-after', '--', process.execPath, '-e', script], { as: vendor }), 0);
    expect(ran.stdout).toContain('vendor-connected');
    const generated = /pg-env=false user=(\S+)/.exec(ran.stdout)![1];
    made.push(generated);
    expect(ran.stderr).toMatch(new RegExp(`revoked ${second} \\(revoked\\)`));
    expect(await real.accountExists(generated)).toBe(false);
  });

  it('rotates many accounts at once with progress and a summary; exit 12 when one fails, skips a checked-out one', async () => {
    const accounts = [await newAccount(), await newAccount(), await newAccount()];
    const r = expectExit(await cli(['rotate', ...accounts.map((a) => a.id), '--wait', '--concurrency', '2'], { as: admin }), 0);
    expect(r.stdout).toMatch(/rotate: 3 account\(s\): 3 succeeded, 0 failed, 0 skipped/);
    expect(r.stderr).toMatch(/\[3\/3\] [0-9a-f-]{36} succeeded/);
    for (const a of accounts) expect(await real.canLogin(a.username, a.password)).toBe(false);

    const held = await newAccount();
    const co = json<{ id: string }>(expectExit(await cli(['--json', 'checkout', held.id, '-r', 'e2e: held', '--code', await operator.code()], { as: operator }), 0));
    const missing = randomUUID();
    const mixed = expectExit(await cli(['--json', 'rotate', accounts[0].id, held.id, missing, '--wait'], { as: admin }), 12);
    const summary = json<{ succeeded: number; failed: number; skipped: number; results: Array<{ accountId: string; outcome: string; code?: string }> }>(mixed);
    expect(summary).toMatchObject({ succeeded: 1, failed: 1, skipped: 1 });
    expect(summary.results).toEqual([
      expect.objectContaining({ accountId: accounts[0].id, outcome: 'succeeded' }),
      expect.objectContaining({ accountId: held.id, outcome: 'skipped', code: 'ACCOUNT_CHECKED_OUT' }),
      expect.objectContaining({ accountId: missing, outcome: 'failed', code: 'NOT_FOUND' }),
    ]);
    expectExit(await cli(['checkin', co.id], { as: operator }), 0);
  });

  it('verifies the audit chain (13 when a remembered head does not match)', async () => {
    const ok = expectExit(await cli(['audit', 'verify'], { as: admin }), 0);
    expect(ok.stdout).toMatch(/^ok: \d+ events, head seq \d+, head hash [0-9a-f]{64}/);
    const head = json<{ ok: boolean; headSeq: string; headHash: string }>(expectExit(await cli(['--json', 'audit', 'verify'], { as: admin }), 0));
    expect(head.ok).toBe(true);
    expectExit(await cli(['audit', 'verify', '--head-seq', head.headSeq, '--head-hash', head.headHash], { as: admin }), 0);
    const forged = expectExit(await cli(['audit', 'verify', '--head-seq', head.headSeq, '--head-hash', 'f'.repeat(64)], { as: admin }), 13);
    expect(forged.stdout).toMatch(/NOT OK/);
    expect(expectExit(await cli(['audit', 'list', '--type', 'checkout.requested', '--limit', '5'], { as: admin }), 0).stdout).toMatch(/checkout\.requested/);
  });
});

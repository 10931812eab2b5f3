import { randomBytes } from 'node:crypto';
import { chmodSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { registerSshTarget } from '../support/gateway-target';
import { actingAs } from '../support/http';
import { SshdHandle, startSshd } from '../support/targets/sshd';
import { startTestVault, TestUser, TestVault } from '../support/vault';
import { CLI, CliRun, expectExit, runCli } from '../support/vaultctl-cli';

/**
 * `vaultctl ssh` against a running vault with its SSH gateway and a real sshd: the built CLI (a child process) finds the
 * caller's active checkout, asks for a ticket bound to a key it makes, and runs the real `/usr/bin/ssh` through the
 * gateway; the command's output and exit status come back as ssh's; the temp dir holding the key is 0700 while ssh runs
 * and gone afterwards; the password of the brokered-only account is nowhere in what vaultctl or ssh were given or printed.
 */
describe('vaultctl ssh through the gateway (e2e)', () => {
  let vault: TestVault;
  let url: string;
  let sshd: SshdHandle;
  let admin: TestUser;
  let operator: TestUser;
  let approver: TestUser;
  let vendor: TestUser;
  let auditor: TestUser;
  let targetId: string;
  let targetName: string;
  let cliMain: string;
  const dirs: string[] = [];

  const tempDir = (mode = 0o700) => {
    const d = mkdtempSync(join(tmpdir(), 'vaultctl-ssh-test-'));
    chmodSync(d, mode);
    dirs.push(d);
    return d;
  };
  const tokenOf = (u: TestUser) => u.auth.replace(/^Bearer /, '');
  const eventually = async <T>(check: () => Promise<T | undefined>, ms = 15_000): Promise<T> => {
    const end = Date.now() + ms;
    for (;;) {
      const v = await check();
      if (v !== undefined) return v;
      if (Date.now() > end) throw new Error('condition not reached in time');
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  const cli = async (args: string[], o: { as: TestUser; env?: Record<string, string>; input?: string }): Promise<CliRun> =>
    runCli(cliMain, args, { url, configDir: tempDir(), token: tokenOf(o.as), env: o.env, input: o.input });

  /**
   * An ssh for vaultctl's --ssh-binary: records its argv and environment (one JSON line per run) into `file`, then is the
   * real /usr/bin/ssh — what vaultctl handed to ssh, as ssh received it.
   */
  const recordingSsh = () => {
    const dir = tempDir();
    const log = join(dir, 'runs.jsonl');
    const wrapper = join(dir, 'ssh');
    writeFileSync(
      wrapper,
      `#!${process.execPath}\nrequire('fs').appendFileSync(${JSON.stringify(log)}, JSON.stringify({ argv: process.argv.slice(2), env: process.env }) + '\\n');\n` +
        `const r = require('child_process').spawnSync('/usr/bin/ssh', process.argv.slice(2), { stdio: 'inherit' });\nprocess.exit(r.status ?? 255);\n`,
      { mode: 0o755 },
    );
    return { wrapper, runs: () => (existsSync(log) ? readFileSync(log, 'utf8') : '') };
  };

  /** A brokered-only account on the sshd with a known password, checked out by the operator (no credential in the answer). */
  const brokeredCheckout = async () => {
    const username = `vt_vs_${randomBytes(3).toString('hex')}`;
    const password = `Vs-${randomBytes(12).toString('hex')}`;
    await sshd.createUser(username, password);
    const account = await actingAs(vault, admin).post('/v1/accounts', { targetId, username, password, policy: { brokeredOnly: true } }, true).expect(201);
    const checkout = await actingAs(vault, operator).post('/v1/checkouts', { accountId: account.body.id, justification: 'e2e: vaultctl ssh' }, true).expect(201);
    expect(checkout.body.credential ?? null).toBeNull();
    return { username, password, accountId: account.body.id as string, checkoutId: checkout.body.id as string };
  };

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: these tests run the built CLI; run \`npm run build\` first (npm test does)`);
    const snapshot = tempDir();
    cpSync(dirname(CLI), snapshot, { recursive: true });
    cliMain = join(snapshot, 'main.js');
    sshd = await startSshd({ usePam: false });
    vault = await startTestVault({ gateway: true, env: { VAULT_ROTATION_SWEEP_MS: '3600000', VAULT_CHECKOUT_SWEEP_MS: '3600000' } });
    await vault.app.listen(0, '127.0.0.1');
    url = `http://127.0.0.1:${(vault.app.getHttpServer().address() as AddressInfo).port}`;
    admin = await vault.admin();
    [operator, approver, vendor, auditor] = await Promise.all([vault.createUser(['operator']), vault.createUser(['approver']), vault.createUser(['vendor']), vault.createUser(['auditor'])]);
    targetName = `vs-${randomBytes(3).toString('hex')}`;
    targetId = await registerSshTarget(vault, admin, sshd, targetName);
  }, 60_000);

  afterAll(async () => {
    await vault?.close();
    await sshd?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('runs the command on the target through the gateway and exits with its status; the key lives in a 0700 dir only while ssh runs', async () => {
    const a = await brokeredCheckout();
    // a TMPDIR the account (the remote command runs on this machine) may look into, to see vaultctl's dir from the target
    const tmp = tempDir(0o755);
    const ssh = recordingSsh();
    const env = { TMPDIR: tmp, VAULT_MFA_CODE: await operator.code() };
    const r = expectExit(
      await cli(['ssh', `${targetName}/${a.username}`, '--ssh-binary', ssh.wrapper, '--', `whoami; d=$(echo ${tmp}/vaultctl-ssh-*); stat -c %a $d; cat $d/id_ed25519 2>&1 | head -c 200; echo; exit 5`], { as: operator, env }),
      5,
    );
    const [who, mode, keyRead] = r.stdout.split('\n');
    expect([who, mode]).toEqual([a.username, '700']);
    expect(keyRead).toMatch(/Permission denied/);
    expect(r.stderr).toMatch(/through the vault's SSH gateway 127\.0\.0\.1:\d+ \(host key SHA256:[A-Za-z0-9+/]{43}\); the session is recorded/);
    expect(readdirSync(tmp)).toEqual([]); // removed once ssh ended

    // what ssh was given: a configuration file and the host alias, the command; no ticket, no password
    const runs = ssh.runs();
    const [first] = runs.trim().split('\n').map((l) => JSON.parse(l) as { argv: string[]; env: Record<string, string> });
    expect(first.argv.slice(0, 2)).toEqual(['-F', expect.stringMatching(new RegExp(`^${tmp}/vaultctl-ssh-[^/]+/config$`))]);
    expect(first.argv).toContain('vault-gateway');
    expect(first.argv.join(' ')).not.toMatch(/vgt_/);
    expect(first.env.VAULT_TOKEN).toBeUndefined();
    expect(first.env.VAULT_MFA_CODE).toBeUndefined();
    for (const text of [runs, r.stdout, r.stderr]) expect(text).not.toContain(a.password);

    const [session] = await vault.db.query<{ account: string }>('SELECT account FROM gateway_sessions WHERE checkout_id = $1', [a.checkoutId]);
    expect(session).toMatchObject({ account: a.username });
  }, 60_000);

  it('passes stdin through (--checkout), and says when there is no checkout to connect with', async () => {
    const a = await brokeredCheckout();
    const r = expectExit(await cli(['ssh', '--checkout', a.checkoutId, '--', 'tr a-z A-Z'], { as: operator, input: 'piped through the gateway\n', env: { VAULT_MFA_CODE: await operator.code() } }), 0);
    expect(r.stdout).toBe('PIPED THROUGH THE GATEWAY\n');

    await actingAs(vault, operator).post(`/v1/checkouts/${a.checkoutId}/checkin`, {}).expect(200);
    const none = expectExit(await cli(['ssh', a.accountId, '--', 'true'], { as: operator, env: { VAULT_MFA_CODE: await operator.code() } }), 7);
    expect(none.stderr).toMatch(/NO_ACTIVE_CHECKOUT: you hold no active checkout/);
    const ended = expectExit(await cli(['ssh', '--checkout', a.checkoutId, '--', 'true'], { as: operator, env: { VAULT_MFA_CODE: await operator.code() } }), 7);
    expect(ended.stderr).toMatch(/CHECKOUT_NOT_ACTIVE \(409\)/);
    expect(expectExit(await cli(['ssh', a.accountId, '--ephemeral', a.checkoutId], { as: operator }), 2).stderr).toMatch(/takes one of/);
    // brokered only: the password is not revealed, the gateway is the way in
    const b = await brokeredCheckout();
    const reveal = expectExit(await cli(['reveal', b.checkoutId, '--code', await operator.code()], { as: operator }), 7);
    expect(reveal.stderr).toMatch(/BROKERED_ONLY \(409\)[\s\S]*vaultctl ssh/);
  }, 60_000);

  it('lists, downloads and verifies recordings (auditors), and an admin terminates a live session', async () => {
    const a = await brokeredCheckout();
    const marker = `rec-${randomBytes(5).toString('hex')}`;
    expectExit(await cli(['ssh', '--checkout', a.checkoutId, '--', `echo ${marker}`], { as: operator, env: { VAULT_MFA_CODE: await operator.code() } }), 0);
    const listed = await eventually(async () => {
      const page = JSON.parse(expectExit(await cli(['--json', 'sessions', 'list', '--checkout', a.checkoutId], { as: auditor }), 0).stdout);
      return page.items[0]?.recording?.status === 'complete' ? page.items[0] : undefined;
    });
    expect(listed).toMatchObject({ checkoutId: a.checkoutId, account: a.username, live: false, recording: { sha256: expect.stringMatching(/^[0-9a-f]{64}$/) } });
    const file = join(tempDir(), 'session.cast');
    const dl = expectExit(await cli(['sessions', 'recording', listed.id, '-o', file], { as: auditor }), 0);
    expect(dl.stderr).toContain(`sha256 ${listed.recording.sha256}`);
    expect(readFileSync(file, 'utf8')).toContain(marker);
    expect(expectExit(await cli(['sessions', 'verify', listed.id], { as: auditor }), 0).stdout).toMatch(/ok: +yes/);
    expect(expectExit(await cli(['sessions', 'recording', listed.id], { as: operator }), 5).stderr).toMatch(/FORBIDDEN \(403\)/);

    // a live one: vaultctl ssh holds a command open until an admin ends the session
    const held = cli(['ssh', '--checkout', a.checkoutId, '--', 'sleep 60'], { as: operator, env: { VAULT_MFA_CODE: await operator.code() } });
    const live = await eventually(async () => {
      const page = JSON.parse(expectExit(await cli(['--json', 'sessions', 'list', '--checkout', a.checkoutId, '--live'], { as: admin }), 0).stdout);
      return page.items[0];
    });
    const started = Date.now();
    expect(expectExit(await cli(['sessions', 'terminate', live.id, '--code', await admin.code()], { as: admin }), 0).stdout).toMatch(/end requested at/);
    const ended = await held;
    expect(ended.code).not.toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
    const shown = JSON.parse(expectExit(await cli(['--json', 'sessions', 'show', live.id], { as: auditor }), 0).stdout);
    expect(shown).toMatchObject({ live: false, endReason: 'terminated' });
  }, 60_000);

  it('connects a vendor to a claimed one-time account (--ephemeral)', async () => {
    const request = await actingAs(vault, operator).post('/v1/ephemeral-accounts', { targetId, vendorUserId: vendor.id, ttlSeconds: 900, justification: 'e2e: vendor over the gateway' }).expect(201);
    const id = request.body.id as string;
    if (request.body.status === 'pending_approval') await actingAs(vault, approver).post(`/v1/ephemeral-accounts/${id}/approve`, {}, true).expect(200);
    const claim = await actingAs(vault, vendor).post(`/v1/ephemeral-accounts/${id}/claim`, {}, true).expect(200);
    const r = expectExit(await cli(['ssh', '--ephemeral', id, '--', 'whoami'], { as: vendor, env: { VAULT_MFA_CODE: await vendor.code() } }), 0);
    expect(r.stdout).toBe(`${claim.body.username}\n`);
    if (claim.body.password) expect(r.stdout + r.stderr).not.toContain(claim.body.password);
    await actingAs(vault, vendor).post(`/v1/ephemeral-accounts/${id}/revoke`, {}).expect(200);
  }, 60_000);
});

/**
 * `vaultctl login --oidc` (issue 18): the built CLI against a vault listening on a local port and a real identity
 * provider (test/support/oidc-idp.ts). The CLI prints the provider's page and the user code and polls the vault; the
 * test plays the user at the provider (its device pages, as a browser would); the CLI then holds a bearer token of
 * the provisioned user with the roles their groups map to.
 */
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { startTestIdp, TestIdp } from '../support/oidc-idp';
import { OIDC_REDIRECT_URI, OIDC_VAULT_ENV, putTestProvider } from '../support/oidc-sign-in';
import { startTestVault, TestVault } from '../support/vault';
import { CLI, cliJson, CliRun, expectExit, ROOT, runCli } from '../support/vaultctl-cli';

describe('vaultctl login --oidc (e2e, real IdP)', () => {
  let idp: TestIdp;
  let vault: TestVault;
  let url: string;
  let cliMain: string;
  const dirs: string[] = [];
  const tempDir = () => {
    const d = mkdtempSync(join(tmpdir(), 'vaultctl-oidc-'));
    dirs.push(d);
    return d;
  };

  /** Runs `vaultctl` and, once it printed the page to open, calls `atIdp` with that URL (the user at the provider). */
  const loginWhile = (args: string[], configDir: string, atIdp: (uri: string) => Promise<void>): Promise<CliRun & { atIdp: Promise<void> }> =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [cliMain, ...args], {
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', NODE_PATH: join(ROOT, 'node_modules'), VAULT_ADDR: url, VAULT_CONFIG_DIR: configDir },
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      let started: Promise<void> | undefined;
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => {
        stderr += d;
        const m = /open (\S+)/.exec(stderr);
        if (m && !started) started = atIdp(m[1]);
      });
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout, stderr, atIdp: started ?? Promise.reject(new Error(`the CLI printed no URL: ${stderr}`)) }));
    });

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: these tests run the built CLI; run \`npm run build\` first (npm test does)`);
    const snapshot = tempDir();
    cpSync(dirname(CLI), snapshot, { recursive: true });
    cliMain = join(snapshot, 'main.js');
    idp = await startTestIdp({ redirectUris: [OIDC_REDIRECT_URI], users: { alice: { groups: ['vault-ops', 'vault-approvers'] }, nobody: { groups: ['sales'] } } });
    vault = await startTestVault({ env: OIDC_VAULT_ENV });
    await vault.app.listen(0, '127.0.0.1');
    url = `http://127.0.0.1:${(vault.app.getHttpServer().address() as AddressInfo).port}`;
    await putTestProvider(vault, idp, 'corp', { 'vault-ops': ['operator'], 'vault-approvers': ['approver'] });
  }, 60_000);
  afterAll(async () => {
    await vault?.close();
    await idp?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('prints the page and the code, waits for the user at the IdP, then holds a token of the provisioned user', async () => {
    const configDir = tempDir();
    // one provider enabled: --oidc needs no name
    const run = await loginWhile(['login', '--oidc'], configDir, (uri) => idp.completeDevice(uri, 'alice'));
    await run.atIdp;
    expectExit(run, 0);
    expect(run.stderr).toMatch(/enter the code [A-Z]{4}-[A-Z]{4}/);
    expect(run.stdout).toMatch(/logged in to .* as alice \(corp\)/);
    expect(run.stdout + run.stderr).not.toMatch(/pvd_|pvt_/); // neither the device handle nor the token is printed
    const who = expectExit(await runCli(cliMain, ['--json', 'whoami'], { url, configDir }), 0);
    expect(cliJson(who)).toMatchObject({ username: 'alice', roles: ['operator', 'approver'], mfaEnrolled: false });
  }, 60_000);

  it('a user without a mapped group is refused (exit 5, OIDC_NO_ROLES) and no token is kept', async () => {
    const configDir = tempDir();
    const run = await loginWhile(['login', '--oidc', 'corp'], configDir, (uri) => idp.completeDevice(uri, 'nobody'));
    await run.atIdp;
    expectExit(run, 5);
    expect(run.stderr).toContain('OIDC_NO_ROLES');
    expectExit(await runCli(cliMain, ['whoami'], { url, configDir }), 3);
  }, 60_000);

  it('refused at the IdP: ACCESS_DENIED; an unknown provider: exit 6', async () => {
    const run = await loginWhile(['login', '--oidc', 'corp'], tempDir(), (uri) => idp.denyDevice(uri));
    await run.atIdp;
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain('ACCESS_DENIED');
    const unknown = await runCli(cliMain, ['login', '--oidc', 'nope'], { url, configDir: tempDir() });
    expectExit(unknown, 6);
    expect(unknown.stderr).toContain('NOT_FOUND');
  }, 60_000);
});

import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, IncomingHttpHeaders, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { verifyVaultSignature } from '../../src/notifications/senders/webhook.sender';
import { startTestVault, TestUser, TestVault } from '../support/vault';
import { CLI, cliJson, CliRun, expectExit, runCli } from '../support/vaultctl-cli';


/**
 * `vaultctl notifications …` and `vaultctl me …` against a running vault over real HTTP (the built CLI as a child
 * process, as in vaultctl.e2e-spec.ts): an admin adds a signed webhook channel whose secret comes from stdin, routes
 * events to it, sends it a test message that a real HTTP receiver verifies, reads the delivery log; a secret is never
 * taken from the command line; a person sets their e-mail address and mutes what they may.
 */
describe('vaultctl notifications and me (e2e)', () => {
  let vault: TestVault;
  let url: string;
  let admin: TestUser;
  let approver: TestUser;
  let cliMain: string;
  let hook: Server;
  let hookUrl: string;
  const received: Array<{ headers: IncomingHttpHeaders; body: string }> = [];
  const dirs: string[] = [];

  const tempDir = () => {
    const d = mkdtempSync(join(tmpdir(), 'vaultctl-notify-'));
    dirs.push(d);
    return d;
  };
  const cli = (args: string[], opts: { input?: string; as?: TestUser } = {}): Promise<CliRun> =>
    runCli(cliMain, args, { url, configDir: tempDir(), token: opts.as?.auth.replace(/^Bearer /, ''), input: opts.input });
  const json = cliJson;
  const channelNames = async () =>
    ((await vault.http().get('/v1/notification-channels').set('Authorization', admin.auth).expect(200)).body.items as Array<{ name: string }>).map((c) => c.name);

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: these tests run the built CLI; run \`npm run build\` first (npm test does)`);
    const snapshot = tempDir();
    cpSync(dirname(CLI), snapshot, { recursive: true });
    cliMain = join(snapshot, 'main.js');
    hook = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString('utf8')));
      req.on('end', () => {
        received.push({ headers: req.headers, body });
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/vault`;
    vault = await startTestVault();
    await vault.app.listen(0, '127.0.0.1');
    url = `http://127.0.0.1:${(vault.app.getHttpServer().address() as AddressInfo).port}`;
    admin = await vault.admin();
    approver = await vault.createUser(['approver']);
  }, 60_000);

  afterAll(async () => {
    await vault?.close();
    await new Promise((r) => hook?.close(r));
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('admin: adds a webhook channel with its secret from stdin, routes events to it, tests it (signed, delivered), reads the log, disables and removes it', async () => {
    const secret = `whsec-${randomBytes(16).toString('hex')}`;
    const add = expectExit(
      await cli(['notifications', 'channels', 'add', '--name', 'soc', '--kind', 'webhook', '--webhook-url', hookUrl, '--secret-stdin', '--code', await admin.code()], { as: admin, input: `${secret}\n` }),
      0,
    );
    expect(add.stdout).toMatch(/channel soc added: [0-9a-f-]{36} \(webhook\)/);
    expect(add.stdout + add.stderr).not.toContain(secret);
    const listed = expectExit(await cli(['notifications', 'channels', 'list'], { as: admin }), 0);
    expect(listed.stdout).toMatch(/soc +webhook +yes +set +http:\/\/127\.0\.0\.1/);
    expect(listed.stdout).not.toContain(secret);

    const route = json<{ id: string; eventTypes: string[] }>(
      expectExit(await cli(['--json', 'notifications', 'routes', 'add', '--channel', 'soc', '--events', 'alert.break_glass,alert.cleanup_failed', '--code', await admin.code()], { as: admin }), 0),
    );
    expect(route.eventTypes).toEqual(['alert.break_glass', 'alert.cleanup_failed']);
    expect(expectExit(await cli(['notifications', 'routes', 'list', '--channel', 'soc'], { as: admin }), 0).stdout).toMatch(/soc +alert\.break_glass,alert\.cleanup_failed +any/);

    const tested = expectExit(await cli(['notifications', 'channels', 'test', 'soc', '--wait', '20', '--code', await admin.code()], { as: admin }), 0);
    const deliveryId = /delivery ([0-9a-f-]{36})/.exec(tested.stdout)?.[1];
    expect(tested.stdout).toMatch(/test message delivered to soc/);
    const got = received.find((r) => r.headers['x-vault-delivery'] === deliveryId);
    expect(got && verifyVaultSignature(secret, got.headers['x-vault-signature'] as string, got.body)).toBe(true);
    const log = expectExit(await cli(['notifications', 'log', '--channel', 'soc', '--type', 'notification.test'], { as: admin }), 0);
    expect(log.stdout).toMatch(/notification\.test +sent +1 +webhook:soc +soc/);

    expectExit(await cli(['notifications', 'channels', 'update', 'soc', '--disable', '--code', await admin.code()], { as: admin }), 0);
    expect(expectExit(await cli(['notifications', 'channels', 'test', 'soc', '--code', await admin.code()], { as: admin }), 7).stderr).toMatch(/CHANNEL_DISABLED \(409\)/);
    expect(expectExit(await cli(['notifications', 'channels', 'remove', 'soc'], { as: admin }), 4).stderr).toMatch(/MFA_REQUIRED/);
    expectExit(await cli(['notifications', 'routes', 'remove', route.id, '--code', await admin.code()], { as: admin }), 0);
    expectExit(await cli(['notifications', 'channels', 'remove', 'soc', '--code', await admin.code()], { as: admin }), 0);
    expect(await channelNames()).not.toContain('soc');
    expect(expectExit(await cli(['notifications', 'log'], { as: approver }), 5).stderr).toMatch(/FORBIDDEN \(403\)/);
  });

  it('never takes a channel secret from the command line: --secret is refused, a Slack URL is no --webhook-url, and without a terminal it must come from stdin', async () => {
    const secret = `https://hooks.slack.example/services/T1/B1/${randomBytes(12).toString('hex')}`;
    const argv = expectExit(await cli(['notifications', 'channels', 'add', '--name', 'leak', '--kind', 'slack', '--secret', secret, '--code', await admin.code()], { as: admin }), 2);
    expect(argv.stderr).toMatch(/unknown option '--secret'/);
    const asUrl = expectExit(await cli(['notifications', 'channels', 'add', '--name', 'leak', '--kind', 'slack', '--webhook-url', secret, '--code', await admin.code()], { as: admin }), 2);
    expect(asUrl.stderr).toMatch(/a slack URL is a secret \(--secret-stdin, or asked\)/);
    const noTerminal = expectExit(await cli(['notifications', 'channels', 'add', '--name', 'leak', '--kind', 'slack', '--code', await admin.code()], { as: admin }), 2);
    expect(noTerminal.stderr).toMatch(/--secret-stdin \(never as an argument\)/);
    for (const r of [argv, asUrl, noTerminal]) expect(r.stdout + r.stderr).not.toContain(secret);
    expect(await channelNames()).not.toContain('leak');

    const ok = expectExit(await cli(['--json', 'notifications', 'channels', 'add', '--name', 'chat', '--kind', 'slack', '--secret-stdin', '--code', await admin.code()], { as: admin, input: `${secret}\n` }), 0);
    expect(json(ok)).toMatchObject({ name: 'chat', kind: 'slack', config: {}, secretSet: true });
    expect(ok.stdout + ok.stderr).not.toContain(secret);
  });

  it('me: sets the e-mail address and mutes optional kinds with a step-up code; a required kind is refused (exit 2)', async () => {
    expect(expectExit(await cli(['me', 'set-email', 'arthur@example.com'], { as: approver }), 4).stderr).toMatch(/MFA_REQUIRED/);
    expect(expectExit(await cli(['me', 'set-email', 'arthur@example.com', '--code', await approver.code()], { as: approver }), 0).stdout).toMatch(/email: +arthur@example\.com/);
    expectExit(await cli(['me', 'mute', 'request.approved', 'checkout.expiring', '--code', await approver.code()], { as: approver }), 0);
    const refused = expectExit(await cli(['me', 'mute', 'approval.requested', '--code', await approver.code()], { as: approver }), 2);
    expect(refused.stderr).toMatch(/NOTIFICATION_REQUIRED \(400\): approval\.requested cannot be muted/);
    expect(json(expectExit(await cli(['--json', 'me', 'show'], { as: approver }), 0))).toMatchObject({ email: 'arthur@example.com', mutedNotifications: ['checkout.expiring', 'request.approved'] });
    expectExit(await cli(['me', 'unmute', 'checkout.expiring', '--code', await approver.code()], { as: approver }), 0);
    expect(json(expectExit(await cli(['--json', 'me', 'show'], { as: approver }), 0))).toMatchObject({ mutedNotifications: ['request.approved'] });
    expect(expectExit(await cli(['me', 'unmute'], { as: approver }), 2).stderr).toMatch(/--all/);
    expectExit(await cli(['me', 'unmute', '--all', '--code', await approver.code()], { as: approver }), 0);
    expect(json(expectExit(await cli(['--json', 'me', 'show'], { as: approver }), 0))).toMatchObject({ mutedNotifications: [] });
  });
});

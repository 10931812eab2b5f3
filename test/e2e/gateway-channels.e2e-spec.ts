import { randomBytes } from 'node:crypto';
import { connect as tcpConnect } from 'node:net';
import { Client, ClientChannel } from 'ssh2';
import { collect, execThrough, gatewayConnect, sshTargetFor, until } from '../support/gateway-client';
import { actingAs } from '../support/http';
import { OpenSshClient } from '../support/openssh-client';
import { runRaw } from '../support/targets/run';
import type { SshdHandle } from '../support/targets/sshd';
import { startTestVault, TestGateway, TestUser, TestVault } from '../support/vault';

/**
 * What the gateway forwards and what it refuses, against a real sshd: OpenSSH's own client through it, PTY and
 * resize, signals, sftp, many channels on one connection, backpressure from a client that does not read (memory
 * stays bounded, the command on the target is held back), env / X11 / agent / remote forwarding refused, local port
 * forwarding only by policy, and a one-time account (brokered only) ended by its revocation.
 */
describe('SSH gateway: channels and what is refused (e2e, real sshd)', () => {
  let vault: TestVault;
  let gw: TestGateway;
  let admin: TestUser;
  let operator: TestUser;
  let approver: TestUser;
  let vendor: TestUser;
  let sshd: SshdHandle;
  let targetId: string;
  const clients: Client[] = [];
  const openssh = OpenSshClient.create();

  const as = (u: TestUser) => actingAs(vault, u);
  /** An account checked out by the operator, and a ticket for it (password mode unless a key is given). */
  const ticketFor = async (policy: Record<string, unknown> = {}, body: object = {}) => {
    const username = `vc${randomBytes(4).toString('hex')}`;
    const password = `Pw-${randomBytes(12).toString('hex')}`;
    await sshd.createUser(username, password);
    const account = (await as(admin).post('/v1/accounts', { targetId, username, password, policy }, true).expect(201)).body;
    const checkout = (await as(operator).post('/v1/checkouts', { accountId: account.id, justification: 'gateway channels e2e' }, true).expect(201)).body;
    const t = (await as(operator).post(`/v1/checkouts/${checkout.id}/connect`, body, true).expect(201)).body;
    return { username, password, checkoutId: checkout.id as string, ticket: t.ticket as string, sshUser: t.sshUser as string };
  };
  const openFor = async (policy: Record<string, unknown> = {}) => {
    const t = await ticketFor(policy);
    const c = await gatewayConnect(gw, { username: t.username, password: t.ticket });
    clients.push(c);
    return { ...t, c };
  };
  const shell = (c: Client, pty: { rows: number; cols: number }) =>
    new Promise<ClientChannel>((resolve, reject) => c.shell({ ...pty, term: 'xterm' }, (err, s) => (err ? reject(err) : resolve(s))));
  /** Everything the stream printed until `pattern` shows up. */
  const readUntil = (s: ClientChannel, pattern: RegExp, ms = 5000) =>
    new Promise<string>((resolve, reject) => {
      let text = '';
      const timer = setTimeout(() => reject(new Error(`no ${pattern} in ${JSON.stringify(text)}`)), ms);
      const on = (d: Buffer) => {
        text += d.toString();
        if (pattern.test(text)) {
          clearTimeout(timer);
          s.off('data', on);
          resolve(text);
        }
      };
      s.on('data', on);
    });
  const fails = (p: (cb: (err?: Error) => void) => void) => new Promise<Error | undefined>((resolve) => p((err) => resolve(err)));

  beforeAll(async () => {
    vault = await startTestVault({ gateway: true, env: { VAULT_CHECKOUT_SWEEP_MS: '3600000', VAULT_ROTATION_SWEEP_MS: '3600000', VAULT_EPHEMERAL_SWEEP_MS: '3600000' } });
    gw = vault.gateway!;
    admin = await vault.admin();
    operator = await vault.createUser(['operator']);
    approver = await vault.createUser(['approver']);
    vendor = await vault.createUser(['vendor']);
    ({ sshd, targetId } = await sshTargetFor(vault, admin, 'gw-channels'));
  }, 60_000);
  afterEach(() => {
    for (const c of clients.splice(0)) c.end();
  });
  afterAll(async () => {
    await vault?.close();
    await sshd?.stop();
    openssh.close();
  });

  it('OpenSSH through the gateway: `ssh -i key -p PORT vgt_…@127.0.0.1 id -un` runs as the account, its exit status comes back', async () => {
    const key = await openssh.newKey();
    const t = await ticketFor({}, { publicKey: key.publicKey });
    const endpoint = { host: gw.host, port: gw.port, knownHostsLine: gw.knownHostsLine };
    const r = await openssh.exec({ endpoint, user: t.sshUser, key, command: 'id -un; exit 3' });
    expect(r).toMatchObject({ stdout: `${t.username}\n`, code: 3 });
    expect(r.stderr).toBe('');
  });

  it('PTY with resize, signals, exit signals, sftp and twenty channels over one connection', async () => {
    const { c, username } = await openFor();
    const s = await shell(c, { rows: 24, cols: 80 });
    s.write('stty size\n');
    await readUntil(s, /24 80/);
    s.setWindow(40, 132, 0, 0);
    s.write('stty size\n');
    await readUntil(s, /40 132/);
    s.end('exit\n');
    // a signal reaches the command; its exit signal comes back
    const sleeping = await new Promise<ClientChannel>((resolve, reject) => c.exec('exec sleep 30', (err, st) => (err ? reject(err) : resolve(st))));
    const done = collect(sleeping);
    await until(async () => (await runRaw('pgrep', ['-u', username, '-x', 'sleep'])).stdout.trim());
    sleeping.signal('TERM');
    expect(await done).toMatchObject({ code: null, signal: 'SIGTERM' });
    // sftp, forwarded as it is
    const sftp = await new Promise<import('ssh2').SFTPWrapper>((resolve, reject) => c.sftp((err, w) => (err ? reject(err) : resolve(w))));
    const payload = randomBytes(1024 * 1024);
    await new Promise<void>((resolve, reject) => sftp.writeFile('payload.bin', payload, (err) => (err ? reject(err) : resolve())));
    const back = await new Promise<Buffer>((resolve, reject) => sftp.readFile('payload.bin', (err, b) => (err ? reject(err) : resolve(b))));
    expect(back.equals(payload)).toBe(true);
    sftp.end();
    const many = await Promise.all(Array.from({ length: 20 }, (_, i) => execThrough(c, `echo ${i}; sleep 0.2`)));
    expect(many.map((m) => m.stdout.trim())).toEqual(Array.from({ length: 20 }, (_, i) => String(i)));
  });

  it('env, X11, agent and remote forwarding are refused; local forwarding only when the policy allows it', async () => {
    const { c } = await openFor();
    // env: ignored (not passed on); the command still runs
    expect((await new Promise<string>((resolve, reject) => c.exec('echo "[$GW_TEST_VAR]"', { env: { GW_TEST_VAR: 'set' } }, (err, s) => (err ? reject(err) : collect(s).then((r) => resolve(r.stdout)))))).trim()).toBe('[]');
    expect(await fails((cb) => c.exec('true', { x11: true }, (err) => cb(err)))).toBeInstanceOf(Error);
    expect(await fails((cb) => c.forwardIn('127.0.0.1', 0, (err) => cb(err)))).toBeInstanceOf(Error);
    expect(await fails((cb) => c.forwardOut('127.0.0.1', 50000, '127.0.0.1', sshd.port, (err) => cb(err)))).toBeInstanceOf(Error);
    const agentTry = await gatewayConnect(gw, { username: 'x', password: (await ticketFor()).ticket, agent: '/nonexistent.sock', agentForward: true }).catch((e: Error) => e);
    if (agentTry instanceof Client) {
      clients.push(agentTry);
      expect(await fails((cb) => agentTry.exec('true', { agentForward: true } as never, (err) => cb(err)))).toBeInstanceOf(Error);
    }
    // with allowPortForwarding: ssh -L to the sshd's own port answers its banner
    const allowed = await openFor({ allowPortForwarding: true });
    const banner = await new Promise<string>((resolve, reject) =>
      allowed.c.forwardOut('127.0.0.1', 50000, '127.0.0.1', sshd.port, (err, s) => {
        if (err) return reject(err);
        s.once('data', (d: Buffer) => {
          resolve(d.toString());
          s.close();
        });
      }),
    );
    expect(banner).toMatch(/^SSH-2\.0-OpenSSH/);
    // nothing listens on the vault's side for a remote forward either
    await expect(new Promise((resolve, reject) => tcpConnect(1, '127.0.0.1').once('connect', resolve).once('error', reject))).rejects.toThrow();
  });

  it('a client that never reads: the gateway holds back the command on the target instead of buffering (memory stays bounded)', async () => {
    const { c, username } = await openFor();
    const size = 24 * 1024 * 1024;
    const stream = await new Promise<ClientChannel>((resolve, reject) => c.exec(`head -c ${size} /dev/zero | tr '\\0' 'a'; echo done >&2`, (err, s) => (err ? reject(err) : resolve(s))));
    stream.pause();
    const rss = process.memoryUsage().rss;
    await new Promise((r) => setTimeout(r, 2500));
    // the writer on the target is blocked (still running), and this process did not take in the output
    expect((await runRaw('pgrep', ['-u', username, '-x', 'head'])).stdout.trim()).not.toBe('');
    expect(process.memoryUsage().rss - rss).toBeLessThan(48 * 1024 * 1024);
    let received = 0;
    stream.on('data', (d: Buffer) => (received += d.length));
    const r = collect(stream);
    stream.resume();
    await r;
    expect(received).toBe(size);
    expect((await r).stderr).toBe('done\n');
  }, 60_000);

  it('the upstream connection dying ends the session (upstream_closed); the vault process carries on', async () => {
    const { c, username, checkoutId } = await openFor();
    expect((await execThrough(c, 'echo alive')).stdout).toBe('alive\n');
    const gone = new Promise<void>((resolve) => c.once('close', () => resolve()));
    await runRaw('pkill', ['-KILL', '-u', username]);
    await gone;
    expect(await until(async () => (await vault.db.query<{ end_reason: string | null }>('SELECT end_reason FROM gateway_sessions WHERE checkout_id = $1', [checkoutId]))[0].end_reason)).toBe('upstream_closed');
    // and the gateway still serves
    const again = await openFor();
    expect((await execThrough(again.c, 'echo still-here')).stdout).toBe('still-here\n');
  });

  it('a one-time account, brokered only: the claim answers no password, the vendor connects, revoking ends the session', async () => {
    await as(admin).put(`/v1/targets/${targetId}/ephemeral-policy`, { approvalsRequired: 1, maxTtlSeconds: 3600, brokeredOnly: true }, true).expect(200);
    const req = (await as(operator).post('/v1/ephemeral-accounts', { targetId, vendorUserId: vendor.id, ttlSeconds: 3600, justification: 'vendor maintenance' }).expect(201)).body;
    await as(approver).post(`/v1/ephemeral-accounts/${req.id}/approve`, { requestDigest: req.requestDigest }, true).expect(200);
    const claim = (await as(vendor).post(`/v1/ephemeral-accounts/${req.id}/claim`, {}, true).expect(200)).body;
    expect(claim).toMatchObject({ id: req.id, brokeredOnly: true, username: expect.any(String) });
    expect(claim.password).toBeUndefined();
    expect((await as(operator).post(`/v1/ephemeral-accounts/${req.id}/connect`, {}, true).expect(403)).body.code).toBe('FORBIDDEN');
    const t = (await as(vendor).post(`/v1/ephemeral-accounts/${req.id}/connect`, {}, true).expect(201)).body;
    const c = await gatewayConnect(gw, { username: claim.username, password: t.ticket });
    clients.push(c);
    expect((await execThrough(c, 'id -un')).stdout).toBe(`${claim.username}\n`);
    const [{ id: sessionId }] = await vault.db.query<{ id: string }>('SELECT id FROM gateway_sessions WHERE ephemeral_id = $1', [req.id]);
    const gone = new Promise<void>((resolve) => c.once('close', () => resolve()));
    await as(vendor).post(`/v1/ephemeral-accounts/${req.id}/revoke`).expect(200);
    await gone;
    const reason = await until(async () => (await vault.db.query<{ end_reason: string | null }>('SELECT end_reason FROM gateway_sessions WHERE id = $1', [sessionId]))[0].end_reason);
    expect(reason).toBe('revoked');
    // its password is no longer kept
    const [row] = await vault.db.query<{ secret: Buffer | null }>('SELECT secret FROM ephemeral_accounts WHERE id = $1', [req.id]);
    expect(row.secret).toBeNull();
    expect((await as(vendor).post(`/v1/ephemeral-accounts/${req.id}/connect`, {}, true).expect(409)).body.code).toBe('EPHEMERAL_NOT_ACTIVE');
  });
});

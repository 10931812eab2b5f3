import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { AccountEntity, accountSecretRef } from '../../src/accounts/account.entity';
import { SecretBoxService } from '../../src/crypto/secret-box.service';
import { registerSshTarget } from '../support/gateway-target';
import { actingAs } from '../support/http';
import { ClientKey, OpenSshClient, SshEndpoint, SshProcess } from '../support/openssh-client';
import { secretSentinel } from '../support/secret-sentinel';
import { run, sleep } from '../support/targets/run';
import { SshdHandle, startSshd } from '../support/targets/sshd';
import { startTestVault, TestUser, TestVault } from '../support/vault';

/**
 * The issue's proofs of the SSH gateway with the real OpenSSH client (`/usr/bin/ssh`, PTY through `script`) through the
 * vault to a real sshd whose administrator in the vault is a least-privilege sudo user: an interactive session, an exec
 * command, a 50 MB upload checked by SHA-256 on the target, ControlMaster channels over one connection; the recording
 * replays the command's output and its hash is the one in the audit chain; the account's password is nowhere on the
 * client side (no HTTP answer, no ssh argument, environment, file or output) nor in the vault's log; check-in and an
 * admin's terminate cut a live session; expired, reused, other people's and other keys' tickets are refused the same
 * way; a target presenting another host key gets no session and no password.
 */
describe('SSH gateway with the real OpenSSH client (e2e)', () => {
  let vault: TestVault;
  let sshd: SshdHandle;
  let client: OpenSshClient;
  let admin: TestUser;
  let operator: TestUser;
  let operator2: TestUser;
  let auditor: TestUser;
  let targetId: string;
  const logLines: string[] = [];
  /** Every HTTP answer the operators received: the client side of the vault's API. */
  const answers: unknown[] = [];
  const passwords: string[] = [];
  const running: SshProcess[] = [];

  const as = (u: TestUser) => actingAs(vault, u);
  const name = () => `vt_gw_${randomBytes(3).toString('hex')}`;

  /** The password the vault holds for an account now (rotations included). */
  const stored = async (id: string) => {
    const account = await vault.get(DataSource).getRepository(AccountEntity).findOneByOrFail({ id });
    return account.passwordSecret ? vault.get(SecretBoxService).decrypt(accountSecretRef(id), account.passwordSecret) : null;
  };

  /** A brokered-only account with a known password on the sshd, checked out by `user`: neither answer carries the password. */
  const checkedOut = async (user = operator, policy: Record<string, unknown> = {}) => {
    const username = name();
    const password = `Gw-${randomBytes(12).toString('hex')}`;
    passwords.push(password);
    await sshd.createUser(username, password);
    const account = await as(admin).post('/v1/accounts', { targetId, username, password, policy: { brokeredOnly: true, ...policy } }, true).expect(201);
    const checkout = await as(user).post('/v1/checkouts', { accountId: account.body.id, justification: 'e2e: gateway' }, true).expect(201);
    answers.push(checkout.body);
    expect(checkout.body).toMatchObject({ status: 'active' });
    expect(checkout.body.credential ?? null).toBeNull();
    return { accountId: account.body.id as string, checkoutId: checkout.body.id as string, username, password };
  };

  interface Ticket {
    ticket: string;
    user: string;
    key: ClientKey;
    endpoint: SshEndpoint;
  }
  /** `POST /v1/checkouts/:id/connect` with a fresh key (or `key`) and the step-up code. */
  const connect = async (checkoutId: string, user = operator, key?: ClientKey): Promise<Ticket> => {
    const k = key ?? (await client.newKey());
    const res = await as(user).post(`/v1/checkouts/${checkoutId}/connect`, { publicKey: k.publicKey }, true);
    expect({ status: res.status, body: res.body }).toMatchObject({ status: 201 });
    answers.push(res.body);
    secretSentinel()?.secret(res.body.ticket, 'gateway ticket');
    expect(res.body).toMatchObject({ ticket: expect.stringMatching(/^vgt_[A-Za-z0-9_-]{43}$/), mode: 'publickey', sshUser: res.body.ticket });
    const g = res.body.gateway;
    expect(g).toEqual(vault.gateway); // what GET /v1/gateway answers
    return { ticket: res.body.ticket, user: res.body.sshUser, key: k, endpoint: { host: g.host, port: g.port, knownHostsLine: g.knownHostsLine } };
  };

  const sessionsOf = (checkoutId: string) =>
    vault.db.query<{ id: string; ended_at: Date | null; end_reason: string | null }>('SELECT id, ended_at, end_reason FROM gateway_sessions WHERE checkout_id = $1 ORDER BY seq', [checkoutId]);
  const eventually = async <T>(what: string, check: () => Promise<T | undefined | null | false>, ms = 15_000): Promise<T> => {
    const end = Date.now() + ms;
    for (;;) {
      const v = await check();
      if (v) return v;
      if (Date.now() > end) throw new Error(`${what}: not reached within ${ms} ms`);
      await sleep(100);
    }
  };
  const endedSession = (checkoutId: string) =>
    eventually('the gateway session ended', async () => {
      const rows = await sessionsOf(checkoutId);
      return rows.length && rows.every((r) => r.ended_at) ? rows : undefined;
    });
  const gatewayEvents = (type: string) => vault.db.query<{ id: string; details: Record<string, unknown> }>('SELECT id::text, details FROM audit_events WHERE type = $1 ORDER BY id', [type]);
  /** A shell on a real terminal through the gateway, at its prompt. */
  const shell = async (t: Ticket) => {
    const p = client.pty({ endpoint: t.endpoint, user: t.user, key: t.key, timeoutMs: 120_000 });
    running.push(p);
    p.write('echo ready-$((40+2))\n');
    await p.waitFor('ready-42', 20_000);
    return p;
  };
  /** ssh refused the login (exit 255, no command output). */
  const expectRefused = async (t: Ticket, key = t.key) => {
    const r = await client.exec({ endpoint: t.endpoint, user: t.user, key, command: 'echo should-not-run' });
    expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toMatchObject({ code: 255, stdout: '' });
    expect(r.stderr).toMatch(/Permission denied \(publickey/);
    return r;
  };

  beforeAll(async () => {
    sshd = await startSshd({ usePam: false });
    client = OpenSshClient.create();
    vault = await startTestVault({ gateway: true, env: { VAULT_ROTATION_SWEEP_MS: '3600000', VAULT_CHECKOUT_SWEEP_MS: '3600000' }, logLines });
    admin = await vault.admin();
    [operator, operator2, auditor] = await Promise.all([vault.createUser(['operator']), vault.createUser(['operator']), vault.createUser(['auditor'])]);
    targetId = await registerSshTarget(vault, admin, sshd, 'gw-openssh');
  }, 60_000);

  afterEach(() => {
    for (const p of running.splice(0)) p.kill('SIGKILL');
  });

  afterAll(async () => {
    await vault?.close();
    await sshd?.stop();
    client?.close();
  });

  it('runs an exec command, an interactive shell on a PTY and ControlMaster channels, as the account, with exit codes relayed', async () => {
    const { checkoutId, username } = await checkedOut();
    const marker = `exec-out-${randomBytes(4).toString('hex')}`;
    const t = await connect(checkoutId);
    const r = await client.exec({ endpoint: t.endpoint, user: t.user, key: t.key, command: `whoami; echo ${marker}; tty; exit 7` });
    expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({ code: 7, stdout: `${username}\n${marker}\nnot a tty\n`, stderr: '' });

    const p = await shell(await connect(checkoutId));
    p.write('tty; stty size; whoami\n');
    await p.waitFor(new RegExp(`/dev/pts/\\d+\\r\\n40 120\\r\\n${username}\\r\\n`));
    p.write('exit 3\n');
    expect((await p.exited).code).toBe(3);

    const t3 = await connect(checkoutId);
    const master = await client.master({ endpoint: t3.endpoint, user: t3.user, key: t3.key });
    const outs = await Promise.all([1, 2, 3].map((i) => master.exec(`echo channel-${i}; whoami`)));
    expect(outs.map((o) => [o.code, o.stdout])).toEqual([1, 2, 3].map((i) => [0, `channel-${i}\n${username}\n`]));
    await master.close();

    const sessions = await endedSession(checkoutId);
    expect(sessions).toHaveLength(3); // one gateway session per connection, the three channels in the last
  }, 60_000);

  it('uploads 50 MB through the gateway (cat > file), byte for byte as the target stores it', async () => {
    const { checkoutId, username } = await checkedOut();
    const data = randomBytes(50 * 1024 * 1024);
    const sha256 = createHash('sha256').update(data).digest('hex');
    const t = await connect(checkoutId);
    const started = Date.now();
    const put = await client.exec({ endpoint: t.endpoint, user: t.user, key: t.key, command: 'cat > upload.bin && sha256sum upload.bin', input: data, timeoutMs: 120_000 });
    const seconds = (Date.now() - started) / 1000;
    expect({ code: put.code, stderr: put.stderr }).toEqual({ code: 0, stderr: '' });
    expect(put.stdout).toBe(`${sha256}  upload.bin\n`); // sha256sum on the target
    expect(createHash('sha256').update(readFileSync(join('/home', username, 'upload.bin'))).digest('hex')).toBe(sha256); // and the file itself
    process.stderr.write(`gateway-openssh: 50 MB upload through the gateway in ${seconds.toFixed(2)} s\n`);
  }, 90_000);

  it("records the session: an auditor's download replays the command's output, and its hash is the one in the audit chain", async () => {
    const { checkoutId } = await checkedOut();
    const marker = `replay-${randomBytes(6).toString('hex')}`;
    const t = await connect(checkoutId);
    const r = await client.exec({ endpoint: t.endpoint, user: t.user, key: t.key, command: `printf '%s\\n' ${marker} 'line two'` });
    expect(r.stdout).toBe(`${marker}\nline two\n`);
    const [session] = await endedSession(checkoutId);

    const list = await vault.http().get('/v1/sessions').query({ checkoutId }).set('Authorization', auditor.auth).expect(200);
    expect(list.body.items.map((s: { id: string }) => s.id)).toEqual([session.id]);
    // application/x-asciicast: buffered as text (the answers check reads it too)
    const download = await vault.http().get(`/v1/sessions/${session.id}/recording`).set('Authorization', auditor.auth).buffer(true);
    expect(download.status).toBe(200);
    expect(download.headers['content-type']).toMatch(/^application\/x-asciicast/);
    const cast = Buffer.from(download.text, 'utf8');
    const [header, ...events] = cast.toString('utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(header).toMatchObject({ version: 2 });
    const output = events.filter((e) => e[1] === 'o').map((e) => e[2]).join('');
    expect(output.replace(/\r/g, '')).toContain(`${marker}\nline two\n`);
    expect(events.some((e) => e[1] === 'm' && String(e[2]).includes('printf'))).toBe(true);

    const ended = (await gatewayEvents('gateway.session_ended')).filter((e) => e.details.sessionId === session.id);
    expect(ended).toHaveLength(1);
    expect(ended[0].details).toMatchObject({ recording: { sha256: createHash('sha256').update(cast).digest('hex'), size: cast.length } });
    const verify = await as(auditor).post(`/v1/sessions/${session.id}/verify`, {}).expect(200);
    expect(verify.body).toMatchObject({ ok: true, problems: [] });
  }, 60_000);

  it('cuts a live session at check-in and at an admin terminate', async () => {
    const a = await checkedOut();
    const p = await shell(await connect(a.checkoutId));
    await as(operator).post(`/v1/checkouts/${a.checkoutId}/checkin`, {}).expect(200);
    const cut = await Promise.race([p.exited, sleep(10_000).then(() => 'still running' as const)]);
    expect(cut).not.toBe('still running');
    const [s1] = await endedSession(a.checkoutId);
    // the gateway ends it (its 1 s poll), unless the target-side cleanup of the check-in (the account's processes ended) closed the upstream first
    expect(['checked_in', 'upstream_closed']).toContain(s1.end_reason);

    const b = await checkedOut();
    const q = await shell(await connect(b.checkoutId));
    const [live] = await sessionsOf(b.checkoutId);
    expect(live.ended_at).toBeNull();
    await as(admin).post(`/v1/sessions/${live.id}/terminate`, {}, true).expect(200);
    const cut2 = await Promise.race([q.exited, sleep(10_000).then(() => 'still running' as const)]);
    expect(cut2).not.toBe('still running');
    const [s2] = await endedSession(b.checkoutId);
    expect(s2.end_reason).toBe('terminated');
    expect((await gatewayEvents('gateway.session_terminated')).some((e) => e.details.sessionId === live.id)).toBe(true);
    // the checkout itself goes on: a new ticket opens a new session
    const again = await connect(b.checkoutId);
    expect((await client.exec({ endpoint: again.endpoint, user: again.user, key: again.key, command: 'echo back' })).stdout).toBe('back\n');
  }, 60_000);

  it("refuses an expired, a reused, another key's and an ended checkout's ticket alike, and another operator gets none", async () => {
    const { checkoutId } = await checkedOut();
    const refusedBefore = (await gatewayEvents('gateway.ticket_refused')).length;

    const reused = await connect(checkoutId);
    expect((await client.exec({ endpoint: reused.endpoint, user: reused.user, key: reused.key, command: 'true' })).code).toBe(0);
    await expectRefused(reused);

    const otherKey = await connect(checkoutId);
    await expectRefused(otherKey, await client.newKey());

    const expired = await connect(checkoutId);
    vault.clock.advance(61_000);
    await expectRefused(expired);

    // another operator may not ask for a ticket on this checkout
    const k = await client.newKey();
    const foreign = await as(operator2).post(`/v1/checkouts/${checkoutId}/connect`, { publicKey: k.publicKey }, true);
    expect([403, 404]).toContain(foreign.status);
    expect(foreign.body.ticket).toBeUndefined();

    const ended = await connect(checkoutId);
    await as(operator).post(`/v1/checkouts/${checkoutId}/checkin`, {}).expect(200);
    await expectRefused(ended);

    // one event each, naming why and which ticket (by id); a key that never matched is audited when its connection closes
    const refused = await eventually('four refusals audited', async () => {
      const events = (await gatewayEvents('gateway.ticket_refused')).slice(refusedBefore);
      return events.length >= 4 ? events : undefined;
    });
    expect(refused.map((e) => e.details).sort((a, b) => String(a.reason).localeCompare(String(b.reason)))).toEqual(
      ['expired', 'not_active', 'used', 'wrong_key'].map((reason) => ({ method: 'publickey', reason, ticketId: expect.stringMatching(/^[0-9a-f-]{36}$/), clientAddress: '127.0.0.1' })),
    );
    const tickets = [reused, otherKey, expired, ended].map((t) => t.ticket);
    for (const e of refused) for (const ticket of tickets) expect(JSON.stringify(e.details)).not.toContain(ticket);
  }, 60_000);

  it('refuses a target that presents another host key: no session, no password sent', async () => {
    const { checkoutId, username } = await checkedOut();
    // the target's sshd now presents a new host key (a re-exec on SIGHUP reloads it): what a man in the middle would show
    const fresh = join(sshd.dir, 'swapped_host_key');
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', fresh]);
    const hostKey = join(sshd.dir, 'ssh_host_ed25519_key');
    const original = { key: readFileSync(hostKey), pub: readFileSync(`${hostKey}.pub`) };
    renameSync(fresh, hostKey);
    renameSync(`${fresh}.pub`, `${hostKey}.pub`);
    const logBefore = sshd.logs().length;
    process.kill(sshd.pid, 'SIGHUP');
    try {
      await eventually('sshd serves the new host key', async () => {
        const scan = await run('ssh-keyscan', ['-t', 'ed25519', '-p', String(sshd.port), sshd.host], { okCodes: [0, 1] });
        return scan.stdout.includes(readFileSync(`${hostKey}.pub`, 'utf8').split(' ')[1]);
      });
      const t = await connect(checkoutId);
      const r = await client.exec({ endpoint: t.endpoint, user: t.user, key: t.key, command: 'echo should-not-run' });
      expect(r.code).not.toBe(0);
      expect(r.stdout).toBe('');
      const mismatch = await eventually('gateway.host_key_mismatch audited', async () => {
        const events = (await gatewayEvents('gateway.host_key_mismatch')).filter((e) => JSON.stringify(e.details).includes(checkoutId) || e.details.targetId === targetId);
        return events.length ? events : undefined;
      });
      expect(mismatch.length).toBeGreaterThanOrEqual(1);
      // the sshd never saw a password (nor any login) for the account
      expect(sshd.logs().slice(logBefore)).not.toMatch(new RegExp(`(password|publickey) for ${username}`));
      expect(await sessionsOf(checkoutId).then((rows) => rows.filter((s) => s.end_reason !== 'error'))).toEqual([]);
    } finally {
      writeFileSync(hostKey, original.key, { mode: 0o600 });
      writeFileSync(`${hostKey}.pub`, original.pub);
      process.kill(sshd.pid, 'SIGHUP');
    }
  }, 60_000);

  it('never shows the password on the client side (answers, ssh arguments, environment, files, output) nor in the log', async () => {
    // after the tests above (jest runs a file's tests in order): every password they used, and the ones the vault holds now
    const current = (await vault.db.query<{ id: string }>('SELECT id FROM accounts')).map((r) => r.id);
    for (const id of current) {
      const p = await stored(id);
      if (p) passwords.push(p);
    }
    expect(passwords.length).toBeGreaterThanOrEqual(5);
    expect(client.runs.length).toBeGreaterThan(10);
    const clientSide = `${JSON.stringify(answers)}\n${client.clientSide()}`;
    const logs = logLines.join('\n');
    expect(logs).toMatch(/gateway/i); // the log was captured (and the gateway logged into it)
    for (const p of passwords) {
      expect(clientSide.includes(p)).toBe(false);
      expect(logs.includes(p)).toBe(false);
    }
    for (const t of answers.flatMap((a) => (a && typeof a === 'object' && 'ticket' in a ? [String((a as { ticket: string }).ticket)] : []))) expect(logs.includes(t)).toBe(false);
  });
});

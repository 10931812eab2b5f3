import { randomBytes, randomUUID } from 'node:crypto';
import { Client, utils } from 'ssh2';
import { newEd25519Pair } from '../../src/common/ssh-keys';
import { GatewayStore } from '../../src/gateway/gateway-store';
import { GatewaySessionTracker } from '../../src/gateway/session-tracker';
import { SshGatewayServer } from '../../src/gateway/ssh-gateway.server';
import { runRaw } from '../support/targets/run';
import { execThrough, gatewayConnect, gatewayRefuses, sshTargetFor, until } from '../support/gateway-client';
import { actingAs } from '../support/http';
import type { SshdHandle } from '../support/targets/sshd';
import { startTestVault, TestGateway, TestUser, TestVault } from '../support/vault';

/**
 * The SSH gateway against a real sshd with a least-privilege (sudo) admin, the ssh2 client as the SSH client:
 * tickets (password and publickey modes), single use, 60 s, bound to the user and the checkout; the session's row and
 * audit events (the recording's hash in `gateway.session_ended`); ending at check-in and at an admin's terminate; a
 * wrong upstream host key refused with nothing sent; brokered-only accounts; and the password nowhere outside the vault.
 */
describe('SSH gateway: tickets, sessions, ending (e2e, real sshd)', () => {
  let vault: TestVault;
  let second: TestVault | undefined;
  let gw: TestGateway;
  let admin: TestUser;
  let operator: TestUser;
  let otherOperator: TestUser;
  let auditor: TestUser;
  let sshd: SshdHandle;
  let targetId: string;
  const logLines: string[] = [];
  const passwords: string[] = [];
  const tickets: string[] = [];
  const clients: Client[] = [];

  const as = (u: TestUser) => actingAs(vault, u);
  const audit = (type: string) =>
    vault.db.query<{ subject_id: string; actor_id: string | null; outcome: string; details: Record<string, unknown> }>(
      'SELECT subject_id, actor_id, outcome, details FROM audit_events WHERE type = $1 ORDER BY at, id',
      [type],
    );
  const sessionRow = async (id: string) =>
    (await vault.db.query<{ end_reason: string | null; ended_at: Date | null; account: string; checkout_id: string | null }>('SELECT * FROM gateway_sessions WHERE id = $1', [id]))[0];
  const sessionOf = async (checkoutId: string) =>
    (await vault.db.query<{ id: string }>('SELECT id FROM gateway_sessions WHERE checkout_id = $1 ORDER BY seq DESC LIMIT 1', [checkoutId]))[0]?.id;

  /** A local user on the sshd, vaulted with a known password and `policy`. */
  const newAccount = async (policy: Record<string, unknown> = {}) => {
    const username = `vg${randomBytes(4).toString('hex')}`;
    const password = `Pw-${randomBytes(12).toString('hex')}`;
    passwords.push(password);
    await sshd.createUser(username, password);
    const account = (await as(admin).post('/v1/accounts', { targetId, username, password, policy }, true).expect(201)).body;
    return { id: account.id as string, username, password };
  };
  const checkOut = async (accountId: string, user = operator) =>
    (await as(user).post('/v1/checkouts', { accountId, justification: 'gateway e2e' }, true).expect(201)).body as { id: string; credential?: { password: string } };
  const connect = async (checkoutId: string, body: object = {}, user = operator) => {
    const res = await as(user).post(`/v1/checkouts/${checkoutId}/connect`, body, true);
    if (res.status === 201) tickets.push(res.body.ticket);
    return res;
  };
  const open = async (config: Parameters<typeof gatewayConnect>[1]) => {
    const c = await gatewayConnect(gw, config);
    clients.push(c);
    return c;
  };
  const closed = (c: Client) => new Promise<void>((resolve) => c.once('close', () => resolve()));

  beforeAll(async () => {
    vault = await startTestVault({ gateway: true, logLines, env: { VAULT_CHECKOUT_SWEEP_MS: '3600000', VAULT_ROTATION_SWEEP_MS: '3600000' } });
    gw = vault.gateway!;
    admin = await vault.admin();
    operator = await vault.createUser(['operator']);
    otherOperator = await vault.createUser(['operator']);
    auditor = await vault.createUser(['auditor']);
    ({ sshd, targetId } = await sshTargetFor(vault, admin, 'gw-sshd'));
  }, 60_000);
  afterEach(() => {
    for (const c of clients.splice(0)) c.end();
  });
  afterAll(async () => {
    await vault?.close();
    await second?.close();
    await sshd?.stop();
  });

  it('GET /v1/gateway: where it listens and its host key, kept encrypted and the same for a second instance', async () => {
    const info = (await as(auditor).get('/v1/gateway').expect(200)).body;
    expect(info).toEqual({ enabled: true, host: '127.0.0.1', port: gw.port, hostKeySha256: gw.hostKeySha256, knownHostsLine: expect.stringMatching(/^\[127\.0\.0\.1\]:\d+ ssh-ed25519 AAAA[\w+/=]+$/) });
    const [row] = await vault.db.query<{ private_key: Buffer }>('SELECT private_key FROM gateway_host_keys');
    expect(row.private_key.toString('latin1')).not.toMatch(/PRIVATE KEY/);
    // another instance on the same database presents the same key
    // (closed in afterAll, after the first: passport keeps strategies process-wide by name)
    second = await startTestVault({ db: vault.db, masterKey: vault.masterKey, gateway: true });
    expect(second.gateway!.hostKeySha256).toBe(gw.hostKeySha256);
    expect(second.gateway!.port).not.toBe(gw.port);
    expect(logLines.some((l) => l.includes('SSH gateway listening') && l.includes(gw.hostKeySha256))).toBe(true);
  });

  it('password mode: the ticket is the password; exec runs as the account, stdout, stderr and exit status come back; the session is recorded and audited', async () => {
    const account = await newAccount();
    const checkout = await checkOut(account.id);
    const res = await connect(checkout.id);
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ mode: 'password', sshUser: account.username, gateway: { host: gw.host, port: gw.port, hostKeySha256: gw.hostKeySha256 } });
    expect(res.body.ticket).toMatch(/^vgt_[\w-]{43}$/);
    expect(new Date(res.body.expiresAt).getTime() - vault.clock.now().getTime()).toBeGreaterThan(55_000);
    expect(res.body.sshCommand).toBe(`ssh -p ${gw.port} ${account.username}@127.0.0.1`);

    const c = await open({ username: account.username, password: res.body.ticket });
    const r = await execThrough(c, 'id -un; echo to-stderr >&2; exit 7');
    expect(r).toMatchObject({ stdout: `${account.username}\n`, stderr: 'to-stderr\n', code: 7 });
    // several channels over the one connection
    const many = await Promise.all(Array.from({ length: 8 }, (_, i) => execThrough(c, `echo channel-${i}`)));
    expect(many.map((m) => m.stdout)).toEqual(Array.from({ length: 8 }, (_, i) => `channel-${i}\n`));
    const sessionId = await until(() => sessionOf(checkout.id));
    expect((await vault.http().get('/metrics').expect(200)).text).toMatch(/^vault_gateway_connections\{state="live"\} 1$/m);
    c.end();
    const row = await until(async () => ((await sessionRow(sessionId))?.ended_at ? sessionRow(sessionId) : null));
    expect(row).toMatchObject({ end_reason: 'client_closed', account: account.username, checkout_id: checkout.id });

    const started = (await audit('gateway.session_started')).find((e) => e.subject_id === sessionId);
    expect(started).toMatchObject({ actor_id: operator.id, details: { sessionId, checkoutId: checkout.id, targetId, account: account.username } });
    const ended = (await audit('gateway.session_ended')).find((e) => e.subject_id === sessionId);
    expect(ended?.details).toMatchObject({ sessionId, reason: 'client_closed', recording: { sha256: expect.stringMatching(/^[0-9a-f]{64}$/), size: expect.any(Number) } });
    expect((await audit('gateway.ticket_issued')).find((e) => e.subject_id === checkout.id)?.details).toMatchObject({ checkoutId: checkout.id, mode: 'password' });
  });

  it('a ticket is single use, expires after 60 s, and is refused the same way whatever is wrong (audited, never the ticket)', async () => {
    const account = await newAccount();
    const checkout = await checkOut(account.id);
    const first = (await connect(checkout.id)).body.ticket as string;
    (await open({ username: account.username, password: first })).end();
    // reused
    expect(await gatewayRefuses(gw, { username: account.username, password: first })).toBe(true);
    // expired: 61 s on the vault's clock
    const second = (await connect(checkout.id)).body.ticket as string;
    vault.clock.advance(61_000);
    expect(await gatewayRefuses(gw, { username: account.username, password: second })).toBe(true);
    // unknown, and the account's own password (never accepted by the gateway)
    expect(await gatewayRefuses(gw, { username: account.username, password: `vgt_${randomBytes(32).toString('base64url')}` })).toBe(true);
    expect(await gatewayRefuses(gw, { username: account.username, password: account.password })).toBe(true);
    const refused = await audit('gateway.ticket_refused');
    expect(refused.map((e) => e.details.reason)).toEqual(expect.arrayContaining(['used', 'expired', 'unknown']));
    expect(refused.filter((e) => e.details.reason !== 'unknown').every((e) => typeof e.details.ticketId === 'string' && e.outcome === 'denied')).toBe(true);
    expect(JSON.stringify(refused)).not.toContain(first.slice(4));
  });

  it("publickey mode: the ticket is the user name and only its key may use it; auth juggling neither works nor spends it; another operator's checkout gets no ticket", async () => {
    const account = await newAccount();
    const checkout = await checkOut(account.id);
    const key = newEd25519Pair(utils, 'operator@laptop');
    const otherKey = newEd25519Pair(utils);
    const res = await connect(checkout.id, { publicKey: key.public });
    expect(res.body).toMatchObject({ mode: 'publickey', sshUser: res.body.ticket });
    expect(res.body.sshCommand).toBe(`ssh -p ${gw.port} ${res.body.ticket}@127.0.0.1`);
    const ticket = res.body.ticket as string;
    // another key, the ticket as a password, keyboard-interactive, no method at all: refused, and the ticket is not spent
    expect(await gatewayRefuses(gw, { username: ticket, privateKey: otherKey.private })).toBe(true);
    expect(await gatewayRefuses(gw, { username: ticket, password: ticket })).toBe(true);
    expect(await gatewayRefuses(gw, { username: account.username, password: ticket })).toBe(true);
    expect(await gatewayRefuses(gw, { username: ticket })).toBe(true);
    const c = await open({ username: ticket, privateKey: key.private });
    expect((await execThrough(c, 'whoami')).stdout).toBe(`${account.username}\n`);
    c.end();
    // bad keys are 400 before anything is issued; another operator does not see the checkout
    for (const publicKey of ['ssh-dss AAAAB3NzaC1kc3MAAACBAP', 'ssh-ed25519 !!!', 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDB', 'hello']) {
      expect((await as(operator).post(`/v1/checkouts/${checkout.id}/connect`, { publicKey }, true)).body.code).toBe('VALIDATION_FAILED');
    }
    const small = utils.generateKeyPairSync('rsa', { bits: 1024 });
    expect((await as(operator).post(`/v1/checkouts/${checkout.id}/connect`, { publicKey: small.public }, true).expect(400)).body.message).toMatch(/2048/);
    expect((await as(otherOperator).post(`/v1/checkouts/${checkout.id}/connect`, {}, true).expect(404)).body.code).toBe('NOT_FOUND');
    expect((await as(auditor).post(`/v1/checkouts/${checkout.id}/connect`, {}, true).expect(403)).body.code).toBe('FORBIDDEN');
  });

  it('check-in cuts the live session within a second or two, and a ticket issued before it no longer works', async () => {
    const account = await newAccount();
    const checkout = await checkOut(account.id);
    const c = await open({ username: account.username, password: (await connect(checkout.id)).body.ticket });
    const spare = (await connect(checkout.id)).body.ticket as string;
    const sessionId = await until(() => sessionOf(checkout.id));
    c.exec('sleep 60', () => undefined);
    const gone = closed(c);
    const t0 = Date.now();
    await as(operator).post(`/v1/checkouts/${checkout.id}/checkin`).expect(200);
    await gone;
    expect(Date.now() - t0).toBeLessThan(6000); // 1 s poll, with room for a loaded CI machine
    expect(await until(async () => (await sessionRow(sessionId))?.end_reason)).toBe('checked_in');
    expect(await gatewayRefuses(gw, { username: account.username, password: spare })).toBe(true);
    expect((await audit('gateway.ticket_refused')).some((e) => e.details.reason === 'not_active')).toBe(true);
    expect((await as(operator).post(`/v1/checkouts/${checkout.id}/connect`, {}, true).expect(409)).body.code).toBe('CHECKOUT_NOT_ACTIVE');
  });

  it('fail closed: when the end poll cannot ask the database for too long, the live session ends (a check-in elsewhere must not be outlived)', async () => {
    const tracker = vault.app.get(GatewaySessionTracker);
    const store = vault.app.get(GatewayStore);
    const account = await newAccount();
    const checkout = await checkOut(account.id);
    const c = await open({ username: account.username, password: (await connect(checkout.id)).body.ticket });
    const sessionId = await until(() => sessionOf(checkout.id));
    c.exec('sleep 60', () => undefined);
    const gone = closed(c);
    // the database stops answering this instance's end poll (a fault injected in the one query it makes)
    const down = jest.spyOn(store, 'dueToEnd').mockRejectedValue(new Error('connection terminated'));
    tracker.failClosedMs = 2000;
    try {
      await gone;
      expect(await until(async () => (await sessionRow(sessionId))?.end_reason)).toBe('error');
    } finally {
      down.mockRestore();
      tracker.failClosedMs = 30_000;
    }
  });

  it('an admin terminates a live session (MFA): it is closed within a second or two; twice is 409; others may not', async () => {
    const account = await newAccount();
    const checkout = await checkOut(account.id);
    const c = await open({ username: account.username, password: (await connect(checkout.id)).body.ticket });
    const sessionId = await until(() => sessionOf(checkout.id));
    const gone = closed(c);
    expect((await as(operator).post(`/v1/sessions/${sessionId}/terminate`, {}, true).expect(403)).body.code).toBe('FORBIDDEN');
    const t0 = Date.now();
    const res = await as(admin).post(`/v1/sessions/${sessionId}/terminate`, {}, true).expect(200);
    expect(res.body).toEqual({ id: sessionId, endRequestedAt: expect.any(String) });
    await gone;
    expect(Date.now() - t0).toBeLessThan(6000); // 1 s poll, with room for a loaded CI machine
    expect(await until(async () => (await sessionRow(sessionId))?.end_reason)).toBe('terminated');
    expect((await as(admin).post(`/v1/sessions/${sessionId}/terminate`, {}, true).expect(409)).body.code).toBe('SESSION_ENDED');
    expect((await as(admin).post(`/v1/sessions/${randomUUID()}/terminate`, {}, true)).status).toBe(404);
    expect((await audit('gateway.session_terminated')).find((e) => e.subject_id === sessionId)).toMatchObject({ actor_id: admin.id });
    // the live session is gone from this instance too
    expect(vault.get(SshGatewayServer).liveSessionIds()).not.toContain(sessionId);
  });

  it('a target presenting another host key than its pin: the session is refused and no credential is sent (sshd saw no login attempt)', async () => {
    const account = await newAccount();
    const checkout = await checkOut(account.id);
    const ticket = (await connect(checkout.id)).body.ticket as string;
    const pinned = sshd.hostKeySha256;
    // what an attacker in the path would look like: the pin no longer matches what answers at the address
    await vault.db.query(`UPDATE targets SET options = options || jsonb_build_object('hostKeySha256', $2::text) WHERE id = $1`, [targetId, randomBytes(32).toString('base64').replace(/=+$/, '')]);
    const before = sshd.logs().length;
    try {
      expect(await gatewayRefuses(gw, { username: account.username, password: ticket })).toBe(true);
    } finally {
      await vault.db.query(`UPDATE targets SET options = options || jsonb_build_object('hostKeySha256', $2::text) WHERE id = $1`, [targetId, pinned]);
    }
    // and a target with no pin at all gets no ticket (nothing could be sent to it anyway)
    await vault.db.query(`UPDATE targets SET options = options - 'hostKeySha256' WHERE id = $1`, [targetId]);
    try {
      expect((await as(operator).post(`/v1/checkouts/${checkout.id}/connect`, {}, true).expect(409)).body.code).toBe('TARGET_HOST_KEY_UNPINNED');
    } finally {
      await vault.db.query(`UPDATE targets SET options = options || jsonb_build_object('hostKeySha256', $2::text) WHERE id = $1`, [targetId, pinned]);
    }
    const mismatch = (await audit('gateway.host_key_mismatch')).at(-1);
    expect(mismatch).toMatchObject({ subject_id: targetId, outcome: 'failure', details: { kind: 'host_key_mismatch', presentedHostKeySha256: pinned, checkoutId: checkout.id } });
    expect(sshd.logs().slice(before)).not.toContain(account.username);
    expect(await sessionOf(checkout.id)).toBeUndefined();
  });

  it('brokered only: no credential at checkout, reveal is 409 BROKERED_ONLY, the gateway still connects', async () => {
    const account = await newAccount({ brokeredOnly: true });
    const checkout = await checkOut(account.id);
    expect(checkout.credential).toBeUndefined();
    expect(JSON.stringify(checkout)).not.toContain(account.password);
    expect((await as(operator).post(`/v1/checkouts/${checkout.id}/reveal`, {}, true).expect(409)).body.code).toBe('BROKERED_ONLY');
    const c = await open({ username: account.username, password: (await connect(checkout.id)).body.ticket });
    expect((await execThrough(c, 'echo brokered')).stdout).toBe('brokered\n');
    // brokered only cannot stop a user with a shell from leaving a key behind, and the vault deletes nothing on the target
    // (the account may be root, whose authorized_keys holds its owners' keys): the target's settings close it (README
    // "Brokered only": keys read only from root-owned files). This sshd is set up so: the planted key stays in the
    // home dir, recorded, and does not log in once the checkout ended
    const key = newEd25519Pair(utils);
    expect((await execThrough(c, `umask 077; mkdir -p ~/.ssh && echo '${key.public}' >> ~/.ssh/authorized_keys && echo planted`)).stdout).toBe('planted\n');
    const sessionId = await until(() => sessionOf(checkout.id));
    c.end();
    expect(await until(async () => (await sessionRow(sessionId))?.end_reason)).toBe('client_closed');
    await as(operator).post(`/v1/checkouts/${checkout.id}/checkin`).expect(200);
    expect((await runRaw('test', ['-e', `/home/${account.username}/.ssh/authorized_keys`])).code).toBe(0);
    const direct = new Client();
    const loggedIn = await new Promise<boolean>((resolve) => {
      direct.once('ready', () => resolve(true)).once('error', () => resolve(false));
      direct.connect({ host: sshd.host, port: sshd.port, username: account.username, privateKey: key.private, readyTimeout: 10_000 });
    });
    direct.end();
    expect(loggedIn).toBe(false);
  });

  it("the lease's expiry on the vault clock ends the session (expired)", async () => {
    const account = await newAccount();
    const checkout = await checkOut(account.id);
    const c = await open({ username: account.username, password: (await connect(checkout.id)).body.ticket });
    const sessionId = await until(() => sessionOf(checkout.id));
    const gone = closed(c);
    vault.clock.advance(3600_000 + 1000); // the default lease is an hour; the sweep has not run: the gateway decides alone
    await gone;
    expect(await until(async () => (await sessionRow(sessionId))?.end_reason)).toBe('expired');
  });

  it('housekeeping: a session whose instance died is ended (error, audited); old tickets are forgotten', async () => {
    const account = await newAccount();
    const checkout = await checkOut(account.id);
    await connect(checkout.id);
    const lostId = randomUUID();
    await vault.db.query(
      `INSERT INTO gateway_sessions (id, ticket_id, user_id, checkout_id, target_id, account, instance_id, started_at, seen_at)
       VALUES ($1, $2, $3, $4, $5, $6, 'gone-host:1:dead', now() - interval '1 hour', now() - interval '10 minutes')`,
      [lostId, randomUUID(), operator.id, checkout.id, targetId, account.username],
    );
    await vault.db.query("UPDATE gateway_tickets SET expires_at = now() - interval '2 hours' WHERE checkout_id = $1", [checkout.id]);
    await vault.get(SshGatewayServer).housekeeping();
    expect(await sessionRow(lostId)).toMatchObject({ end_reason: 'error', ended_at: expect.any(Date) });
    expect((await audit('gateway.session_ended')).find((e) => e.subject_id === lostId)?.details).toMatchObject({ reason: 'error', because: 'instance_lost', recording: null });
    expect(await vault.db.query('SELECT id FROM gateway_tickets WHERE checkout_id = $1', [checkout.id])).toEqual([]);
  });

  it('fail closed: a recording that cannot start refuses the session; one that cannot be written ends it (recording_failed, audited)', async () => {
    const account = await newAccount();
    const checkout = await checkOut(account.id);
    const refuse = (table: string) =>
      vault.db.query(`CREATE OR REPLACE FUNCTION gw_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$;
                      CREATE TRIGGER gw_test_refuse BEFORE INSERT ON ${table} FOR EACH ROW EXECUTE FUNCTION gw_test_refuse()`);
    const allow = (table: string) => vault.db.query(`DROP TRIGGER gw_test_refuse ON ${table}`);
    await refuse('session_recordings');
    try {
      expect(await gatewayRefuses(gw, { username: account.username, password: (await connect(checkout.id)).body.ticket })).toBe(true);
    } finally {
      await allow('session_recordings');
    }
    const refusedId = await until(() => sessionOf(checkout.id));
    expect(await until(async () => (await sessionRow(refusedId))?.end_reason)).toBe('recording_failed');
    expect((await audit('gateway.session_ended')).find((e) => e.subject_id === refusedId)).toMatchObject({ outcome: 'failure', details: { reason: 'recording_failed', recording: null } });

    const c = await open({ username: account.username, password: (await connect(checkout.id)).body.ticket });
    const liveId = await until(async () => ((await sessionOf(checkout.id)) !== refusedId ? sessionOf(checkout.id) : undefined));
    await refuse('session_recording_chunks');
    try {
      const gone = closed(c);
      c.exec('head -c 2000000 /dev/zero | tr "\\0" x; sleep 30', (err, stream) => stream?.on('data', () => undefined));
      await gone;
    } finally {
      await allow('session_recording_chunks');
    }
    expect(await until(async () => (await sessionRow(liveId))?.end_reason)).toBe('recording_failed');
  });

  it('a ticket of a user who was disabled since is refused', async () => {
    const account = await newAccount();
    const checkout = await checkOut(account.id, otherOperator);
    const ticket = (await connect(checkout.id, {}, otherOperator)).body.ticket as string;
    await as(admin).patch(`/v1/users/${otherOperator.id}`, { disabled: true }, true).expect(200);
    expect(await gatewayRefuses(gw, { username: account.username, password: ticket })).toBe(true);
    expect((await audit('gateway.ticket_refused')).some((e) => e.details.reason === 'user_disabled')).toBe(true);
  });

  it('the passwords the gateway used are in no answer, audit event or log line', async () => {
    const events = JSON.stringify(await vault.db.query('SELECT * FROM audit_events'));
    const sessions = JSON.stringify(await vault.db.query('SELECT * FROM gateway_sessions'));
    const logs = logLines.join('\n');
    for (const secret of [...passwords, ...tickets]) {
      expect(events).not.toContain(secret);
      expect(sessions).not.toContain(secret);
      expect(logs).not.toContain(secret);
    }
    expect(passwords.length).toBeGreaterThan(5);
  });

  // last: closing the second instance leaves this process's bearer strategy broken for the first (passport keeps one by name)
  it('any instance serves any ticket; an instance that shuts down ends its sessions first (shutdown)', async () => {
    const account = await newAccount();
    const checkout = await checkOut(account.id);
    const ticket = (await connect(checkout.id)).body.ticket as string;
    second ??= await startTestVault({ db: vault.db, masterKey: vault.masterKey, gateway: true });
    const c = await gatewayConnect(second.gateway!, { username: account.username, password: ticket });
    expect((await execThrough(c, 'echo via-second')).stdout).toBe('via-second\n');
    const sessionId = await until(() => sessionOf(checkout.id));
    const gone = closed(c);
    await second.close();
    second = undefined;
    await gone;
    const row = await sessionRow(sessionId);
    expect(row).toMatchObject({ end_reason: 'shutdown' });
    expect((await audit('gateway.session_ended')).find((e) => e.subject_id === sessionId)?.details).toMatchObject({ reason: 'shutdown', recording: { sha256: expect.any(String) } });
  });
});

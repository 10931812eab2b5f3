import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { AddressInfo, connect as tcpConnect, Socket } from 'node:net';
import { Client, ClientChannel, Server, utils } from 'ssh2';
import { newEd25519Pair } from '../../src/common/ssh-keys';
import { sshSessionId } from '../../src/connectors/ssh/ssh-remote';
import { SshGatewayServer } from '../../src/gateway/ssh-gateway.server';
import { collect, execThrough, gatewayConnect, gatewayRefuses, until } from '../support/gateway-client';
import { actingAs } from '../support/http';
import { processGone, SshdHandle, startSshd } from '../support/targets/sshd';
import { startTestVault, TestGateway, TestUser, TestVault } from '../support/vault';

/**
 * Adversarial review of issue 16 (SSH gateway, recordings, live sessions) against a real sshd with a least-privilege
 * sudo admin and the real database. Each test is an attack: a passing test documents the defence; a test named
 * `FINDING n: …` fails while the weakness is there (see /tmp/requests16.md, "REVIEW findings").
 */
describe('review: attacking the SSH gateway, recordings and live sessions (e2e, real sshd)', () => {
  let vault: TestVault;
  let second: TestVault | undefined;
  let gw: TestGateway;
  let admin: TestUser;
  let operator: TestUser;
  let otherOperator: TestUser;
  let auditor: TestUser;
  let vendor: TestUser;
  let sshd: SshdHandle;
  let targetId: string;
  let sudoAdmin: { username: string; password: string };
  const clients: Client[] = [];
  const cleanup: string[] = [];
  const logLines: string[] = [];
  /** Every password and ticket the attacks used: none may show up in a log line, an audit event or a session row. */
  const secrets: string[] = [];

  const as = (u: TestUser) => actingAs(vault, u);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  type SessionRow = { id: string; ended_at: Date | null; end_reason: string | null; instance_id: string };
  const sessionsOf = (checkoutId: string) => vault.db.query<SessionRow>('SELECT id, ended_at, end_reason, instance_id FROM gateway_sessions WHERE checkout_id = $1 ORDER BY seq', [checkoutId]);
  const audits = (type: string) => vault.db.query<{ subject_id: string | null; details: Record<string, unknown> }>('SELECT subject_id, details FROM audit_events WHERE type = $1 ORDER BY at, id', [type]);

  /** A local user on the sshd, vaulted with `policy`, checked out by `user`. */
  const checkedOut = async (policy: Record<string, unknown> = {}, user = operator) => {
    const username = `rv${randomBytes(4).toString('hex')}`;
    const password = `Pw-${randomBytes(12).toString('hex')}`;
    secrets.push(password);
    await sshd.createUser(username, password);
    const account = (await as(admin).post('/v1/accounts', { targetId, username, password, policy }, true).expect(201)).body;
    const checkout = (await as(user).post('/v1/checkouts', { accountId: account.id, justification: 'gateway review' }, true).expect(201)).body;
    return { username, password, accountId: account.id as string, checkoutId: checkout.id as string, checkout };
  };
  const ticket = async (checkoutId: string, body: object = {}, user = operator): Promise<string> => {
    const t: string = (await as(user).post(`/v1/checkouts/${checkoutId}/connect`, body, true).expect(201)).body.ticket;
    secrets.push(t);
    return t;
  };
  const open = async (config: Parameters<typeof gatewayConnect>[1]) => {
    const c = await gatewayConnect(gw, config);
    clients.push(c);
    return c;
  };
  const closed = (c: Client) => new Promise<void>((resolve) => c.once('close', () => resolve()));
  const download = async (sessionId: string, user = auditor) => {
    const res = await vault.http().get(`/v1/sessions/${sessionId}/recording`).set('Authorization', user.auth).buffer(true);
    return { status: res.status, text: res.text ?? '' };
  };
  /** The session of a checkout once it has ended (its recording sealed). */
  const endedSession = async (checkoutId: string) =>
    until(async () => {
      const rows = await sessionsOf(checkoutId);
      return rows.length > 0 && rows.every((r) => r.ended_at) ? rows : null;
    }, 8000);
  const markersOf = (cast: string) =>
    cast
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => JSON.parse(l) as [number, string, string])
      .filter((e) => e[1] === 'm')
      .map((e) => e[2]);
  /** The most bytes any of the gateway's server-side sockets holds unsent (found among the process's handles: no internals of the gateway). */
  const gatewaySocketBacklog = (): number => {
    const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
    const sockets = handles.filter((h): h is Socket => h instanceof Socket && h.localPort === gw.port);
    return Math.max(0, ...sockets.map((sock) => sock.writableLength));
  };
  /** `ps` as the target sees it (the sshd is local): pid → {lstart, ruid, euid, args}. */
  const processTable = () => {
    const out = execFileSync('ps', ['-eo', 'pid=,ruid=,euid=,lstart=,args='], { env: { ...process.env, LC_ALL: 'C' } }).toString();
    const rows = new Map<number, { pid: number; ruid: number; euid: number; started: string; args: string }>();
    for (const line of out.split('\n')) {
      const m = /^\s*(\d+)\s+(\d+)\s+(\d+)\s+([A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}) (.*)$/.exec(line);
      if (m) rows.set(Number(m[1]), { pid: Number(m[1]), ruid: Number(m[2]), euid: Number(m[3]), started: m[4], args: m[5] });
    }
    return rows;
  };
  const idOf = (pid: number) => {
    const p = processTable().get(pid);
    if (!p) throw new Error(`no process ${pid}`);
    return sshSessionId(p);
  };
  const alive = (pid: number) => !processGone(pid);
  /** A direct SSH login to the target (not through the gateway). */
  const direct = (username: string, auth: { password?: string; privateKey?: string }) =>
    new Promise<Client>((resolve, reject) => {
      const c = new Client();
      c.on('ready', () => resolve(c)).on('error', reject);
      c.connect({ host: sshd.host, port: sshd.port, username, ...auth, readyTimeout: 10_000, hostVerifier: () => true });
      clients.push(c);
    });

  beforeAll(async () => {
    vault = await startTestVault({ gateway: true, logLines, env: { VAULT_CHECKOUT_SWEEP_MS: '3600000', VAULT_ROTATION_SWEEP_MS: '3600000', VAULT_EPHEMERAL_SWEEP_MS: '3600000' } });
    gw = vault.gateway!;
    admin = await vault.admin();
    operator = await vault.createUser(['operator']);
    otherOperator = await vault.createUser(['operator']);
    auditor = await vault.createUser(['auditor']);
    vendor = await vault.createUser(['vendor']);
    sshd = await startSshd({ usePam: false, keysInHome: true });
    sudoAdmin = await sshd.createSudoAdmin({ nopasswd: false });
    const body = { name: 'review-sshd', type: 'ssh', host: sshd.host, port: sshd.port, admin: { username: sudoAdmin.username, password: sudoAdmin.password }, options: { hostKeySha256: sshd.hostKeySha256, sudo: true } };
    targetId = (await as(admin).post('/v1/targets', body, true).expect(201)).body.id;
  }, 60_000);
  afterEach(() => {
    for (const c of clients.splice(0)) c.end();
  });
  afterAll(async () => {
    for (const f of cleanup) rmSync(f, { force: true });
    await vault?.close();
    await second?.close();
    await sshd?.stop();
  });

  // ---- live sessions --------------------------------------------------------------------------------------------

  it('live sessions (first, while the target has few managed accounts: each terminate asks every one): ids crafted for pid 1, the sshd listener, the vault process itself, the admin’s own login and an imitation titled as another account: all 404, all still alive', async () => {
    const a = await checkedOut();
    const b = await checkedOut();
    // b's real session (a direct login with the password the vault holds)
    const bLogin = await direct(b.username, { password: b.password });
    void bLogin.exec('sleep 60', () => undefined);
    // a imitates b: a process of a whose whole title is the one sshd gives b's session
    const aLogin = await direct(a.username, { password: a.password });
    void aLogin.exec(`perl -e '$0 = "sshd: ${b.username}\\@notty"; sleep 60'`, () => undefined);
    // the admin's own login holding a command
    const adminLogin = await direct(sudoAdmin.username, { password: sudoAdmin.password });
    void adminLogin.exec('sleep 60', () => undefined);
    await sleep(700);
    const table = processTable();
    const uidOfA = Number(execFileSync('id', ['-u', a.username]).toString().trim());
    const imitation = [...table.values()].find((p) => p.args === `sshd: ${b.username}@notty` && p.ruid === uidOfA);
    expect(imitation).toBeDefined();
    const adminProcs = [...table.values()].filter((p) => p.args.startsWith(`sshd: ${sudoAdmin.username}`));
    expect(adminProcs.length).toBeGreaterThan(0);

    const listed = (await as(admin).get(`/v1/targets/${targetId}/sessions`).expect(200)).body.items as Array<{ id: string; username: string }>;
    expect(listed.filter((s) => s.username === b.username)).toHaveLength(1);
    expect(listed.some((s) => s.id === sshSessionId(imitation!))).toBe(false);
    expect(listed.some((s) => s.username === sudoAdmin.username)).toBe(false);

    const victims = [1, sshd.pid, process.pid, imitation!.pid, ...adminProcs.map((p) => p.pid)];
    for (const pid of victims) {
      const res = await as(admin).post(`/v1/targets/${targetId}/sessions/${idOf(pid)}/terminate`, {}, true);
      expect({ pid, status: res.status, code: res.body.code }).toEqual({ pid, status: 404, code: 'SESSION_NOT_FOUND' });
    }
    for (const pid of victims) expect({ pid, alive: alive(pid) }).toEqual({ pid, alive: true });
    // the holder's view of b shows b's one session; ending it ends that one only
    const bSession = listed.find((s) => s.username === b.username)!;
    await as(admin).post(`/v1/targets/${targetId}/sessions/${bSession.id}/terminate`, {}, true).expect(200);
    expect(alive(imitation!.pid)).toBe(true);
    for (const p of adminProcs) expect(alive(p.pid)).toBe(true);
    // ids that are not ids
    for (const bad of ['ssh-1', 'ssh--1-0000000000000000', `ssh-${process.pid}-../../etc`, 'pg-1-1', 'ssh-1-00000000000000000']) {
      const res = await as(admin).post(`/v1/targets/${targetId}/sessions/${encodeURIComponent(bad)}/terminate`, {}, true);
      expect([400, 404]).toContain(res.status);
    }
    expect(alive(1)).toBe(true);
  }, 60_000);

  // ---- tickets --------------------------------------------------------------------------------------------------

  it('one ticket on two connections at the same instant: exactly one gets in, one session row', async () => {
    const a = await checkedOut();
    const t = await ticket(a.checkoutId);
    const results = await Promise.allSettled([0, 1].map(() => gatewayConnect(gw, { username: a.username, password: t })));
    const inside = results.filter((r): r is PromiseFulfilledResult<Client> => r.status === 'fulfilled').map((r) => r.value);
    clients.push(...inside);
    expect(inside).toHaveLength(1);
    expect(results.filter((r) => r.status === 'rejected')).toHaveLength(1);
    expect(await sessionsOf(a.checkoutId)).toHaveLength(1);
  });

  it("another operator's stolen publickey ticket is useless without its key, and the holder's password-mode ticket from a checked-in checkout is spent and refused", async () => {
    const a = await checkedOut();
    const key = newEd25519Pair(utils);
    const thief = newEd25519Pair(utils);
    const pkTicket = await ticket(a.checkoutId, { publicKey: key.public });
    // the thief presents the ticket with their own key, as a password and through keyboard-interactive
    expect(await gatewayRefuses(gw, { username: pkTicket, privateKey: thief.private })).toBe(true);
    expect(await gatewayRefuses(gw, { username: pkTicket, password: pkTicket })).toBe(true);
    expect(await gatewayRefuses(gw, { username: pkTicket, tryKeyboard: true, authHandler: [{ type: 'keyboard-interactive', username: pkTicket, prompt: (_n: string, _i: string, _l: string, _p: unknown, finish: (r: string[]) => void) => finish([pkTicket]) }] } as never)).toBe(true);
    // the issued one-minute ticket, then a check-in between issue and use
    const pwTicket = await ticket(a.checkoutId);
    await as(operator).post(`/v1/checkouts/${a.checkoutId}/checkin`).expect(200);
    expect(await gatewayRefuses(gw, { username: a.username, password: pwTicket })).toBe(true);
    expect(await gatewayRefuses(gw, { username: pkTicket, privateKey: key.private })).toBe(true);
    expect(await sessionsOf(a.checkoutId)).toHaveLength(0);
    const refused = await audits('gateway.ticket_refused');
    expect(refused.filter((e) => e.details.reason === 'not_active').length).toBeGreaterThanOrEqual(2);
    expect(JSON.stringify(refused)).not.toContain(pwTicket.slice(4));
  });

  it('auth method juggling does not spend a ticket: a password ticket as a publickey user name, hostbased/none, a ticket with a trailing newline or in upper case — all refused, then the ticket still works once', async () => {
    const a = await checkedOut();
    const t = await ticket(a.checkoutId);
    const anyKey = newEd25519Pair(utils);
    expect(await gatewayRefuses(gw, { username: t, privateKey: anyKey.private })).toBe(true);
    expect(await gatewayRefuses(gw, { username: t, authHandler: ['none'] } as never)).toBe(true);
    for (const variant of [`${t}\n`, ` ${t}`, t.toUpperCase(), `${t}\u0000`, t.slice(0, -1)]) {
      expect(await gatewayRefuses(gw, { username: a.username, password: variant })).toBe(true);
    }
    const c = await open({ username: a.username, password: t });
    expect((await execThrough(c, 'id -un')).stdout).toBe(`${a.username}\n`);
    c.end();
    expect(await gatewayRefuses(gw, { username: a.username, password: t })).toBe(true);
  });

  it('FINDING 12 (fixed, 2770e10): a spent publickey ticket presented again is refused at the key query and audited (used) — it used to be refused quietly', async () => {
    const a = await checkedOut();
    const key = newEd25519Pair(utils);
    const t = await ticket(a.checkoutId, { publicKey: key.public });
    (await open({ username: t, privateKey: key.private })).end();
    const issued = (await audits('gateway.ticket_issued')).find((e) => e.subject_id === a.checkoutId);
    const ticketId = issued?.details.ticketId;
    expect(typeof ticketId).toBe('string');
    // the replay, as OpenSSH and ssh2 do it: "is this key acceptable?" first, the signature only after a yes
    expect(await gatewayRefuses(gw, { username: t, privateKey: key.private })).toBe(true);
    const refusedOf = async () => (await audits('gateway.ticket_refused')).filter((e) => e.details.ticketId === ticketId);
    const refused = await until(async () => ((await refusedOf()).length ? refusedOf() : null), 1500).catch(() => []);
    expect(refused.map((e) => e.details.reason)).toEqual(['used']);
  });

  it("user name tricks: the SSH user name is cosmetic in password mode — another account's name, root or the vault admin's name still lands on the ticket's account", async () => {
    const a = await checkedOut();
    const b = await checkedOut();
    for (const username of [b.username, 'root', sudoAdmin.username]) {
      const c = await open({ username, password: await ticket(a.checkoutId) });
      expect((await execThrough(c, 'id -un')).stdout).toBe(`${a.username}\n`);
      c.end();
    }
  });

  it('FINDING 1 (fixed, ef6ce2c): keyboard-interactive abort race — a second auth request while the first ticket is being opened no longer yields a second, orphaned gateway session', async () => {
    const a = await checkedOut();
    const [t1, t2] = [await ticket(a.checkoutId), await ticket(a.checkoutId)];
    const c = new Client();
    clients.push(c);
    let sent = false;
    const ready = new Promise<void>((resolve, reject) => {
      c.on('ready', () => resolve()).on('error', reject);
      c.on('close', () => reject(new Error('closed before ready')));
    });
    c.connect({
      host: gw.host,
      port: gw.port,
      username: a.username,
      readyTimeout: 20_000,
      hostVerifier: () => true,
      authHandler: (_methods: unknown, _partial: unknown, next: (m: unknown) => void) => {
        if (sent) return next(false);
        next({
          type: 'keyboard-interactive',
          username: a.username,
          prompt: (_n: string, _i: string, _l: string, _p: unknown, finish: (r: string[]) => void) => {
            sent = true;
            finish([t1]);
            // at once, before the gateway has decided on the first: a new request (RFC 4252 aborts the first)
            (c as unknown as { _protocol: { authPassword(u: string, p: string): void } })._protocol.authPassword(a.username, t2);
          },
        });
      },
    } as never);
    await ready.catch(() => undefined);
    await sleep(1500);
    c.end();
    await sleep(2500);
    const rows = await sessionsOf(a.checkoutId);
    // the defence: at most one session per connection, and none live once the client is gone
    expect(rows.filter((r) => r.ended_at === null)).toEqual([]);
    expect(rows.length).toBeLessThanOrEqual(1);
  });

  it('FINDING 2 (fixed, ef6ce2c): passwords that are not even ticket-shaped (a scanner) are refused without filling the audit chain', async () => {
    const before = (await audits('gateway.ticket_refused')).length;
    // one after the other (a per-address cap may drop parallel ones: that is a refusal too)
    for (let i = 0; i < 8; i++) {
      const refused = await gatewayRefuses(gw, {
        username: 'root',
        authHandler: ['password', 'password', 'password', 'password'].map((type) => ({ type, username: 'root', password: `hunter${randomBytes(3).toString('hex')}` })),
      } as never).catch(() => true);
      expect(refused).toBe(true);
    }
    const after = (await audits('gateway.ticket_refused')).length;
    // a scanner trying passwords that are not even ticket-shaped: OpenSSH would log, not write 24 chained audit events
    expect(after - before).toBeLessThanOrEqual(10);
  });

  it('FINDING 13 (fixed, a99ea50): ticket-shaped guesses (the format is public) no longer write one chained audit event each — a budget per address', async () => {
    const before = (await audits('gateway.ticket_refused')).length;
    for (let i = 0; i < 8; i++) {
      const guesses = ['password', 'password', 'password', 'password'].map((type) => ({ type, username: 'root', password: `vgt_${randomBytes(32).toString('base64url')}` }));
      expect(await gatewayRefuses(gw, { username: 'root', authHandler: guesses } as never).catch(() => true)).toBe(true);
    }
    const after = (await audits('gateway.ticket_refused')).length;
    // the defence: guesses of tickets that never existed are audited within a budget per address (or counted, not chained one by one)
    expect(after - before).toBeLessThanOrEqual(10);
  });

  /** `n` raw TCP connections to the gateway from `localAddress`, each sending `hello` (or nothing); resolves once all are open. */
  const rawConnections = async (n: number, localAddress: string, hello?: string) => {
    const socks = await Promise.all(
      Array.from(
        { length: n },
        () =>
          new Promise<Socket>((resolve, reject) => {
            const s = tcpConnect({ host: gw.host, port: gw.port, localAddress }, () => resolve(s));
            s.on('error', reject);
          }),
      ),
    );
    const open = new Set(socks);
    for (const s of socks) {
      s.on('error', () => undefined);
      s.on('close', () => open.delete(s));
      s.on('data', () => undefined);
      if (hello) s.write(hello);
    }
    return { open, close: () => socks.forEach((s) => s.destroy()) };
  };

  it('FINDING 7 (fixed, ff57f2d): TCP connections that never send an SSH identification are counted and capped from accept (they used to be kept for ever)', async () => {
    const silent = await rawConnections(250, '127.0.0.3');
    try {
      await sleep(1000);
      // the defence: counted against the unauthenticated cap (200) from the first byte, and dropped after the grace time
      expect(silent.open.size).toBeLessThanOrEqual(200);
    } finally {
      silent.close();
    }
  });

  it('FINDING 8 (fixed, ff57f2d): 200 idle connections from one address (127.0.0.2) no longer lock everyone else out of the gateway', async () => {
    const a = await checkedOut();
    const t = await ticket(a.checkoutId);
    const hog = await rawConnections(200, '127.0.0.2', 'SSH-2.0-hog\r\n');
    try {
      await sleep(500);
      // the defence: a per-address share of the slots, so another address still gets in
      const inside = await gatewayConnect(gw, { username: a.username, password: t }).then(
        (c) => (clients.push(c), true),
        () => false,
      );
      expect(inside).toBe(true);
    } finally {
      hog.close();
    }
  });

  // ---- channels ---------------------------------------------------------------------------------------------------

  it('two exec requests on ONE session channel (the second right behind the first): the second never reaches the target, the recording shows the one that ran', async () => {
    const a = await checkedOut();
    const c = await open({ username: a.username, password: await ticket(a.checkoutId) });
    const proof = `/tmp/review-unrecorded-${randomBytes(6).toString('hex')}`;
    cleanup.push(proof);
    const proto = (c as unknown as { _protocol: { exec(chan: number, cmd: string, wantReply: boolean): void } })._protocol;
    const exec = proto.exec.bind(proto);
    proto.exec = (chan, cmd, wantReply) => {
      exec(chan, cmd, wantReply);
      exec(chan, `touch ${proof}`, wantReply); // same channel, before the gateway answered the first
      proto.exec = exec;
    };
    const r = await execThrough(c, 'echo visible');
    expect(r.stdout).toBe('visible\n');
    await sleep(500);
    c.end();
    const [s] = await endedSession(a.checkoutId);
    const cast = (await download(s.id)).text;
    expect({ ran: existsSync(proof), recorded: cast.includes(proof) }).toEqual({ ran: false, recorded: false });
    expect(markersOf(cast)).toEqual(['exec: echo visible', 'channel closed']);
    expect(sshd.logs().split('\n').filter((l) => l.includes(`Starting session: command for ${a.username} `))).toHaveLength(1);
  });

  it('FINDING 3 (fixed): an exec command longer than 1000 characters is in the recording whole (its tail used to be cut)', async () => {
    const a = await checkedOut();
    const c = await open({ username: a.username, password: await ticket(a.checkoutId) });
    const proof = `/tmp/review-tail-${randomBytes(6).toString('hex')}`;
    cleanup.push(proof);
    const command = `: ${'x'.repeat(1000)}; touch ${proof}`;
    expect((await execThrough(c, command)).code).toBe(0);
    expect(existsSync(proof)).toBe(true);
    c.end();
    const [s] = await endedSession(a.checkoutId);
    const markers = markersOf((await download(s.id)).text);
    expect(markers.some((m) => m.includes(proof))).toBe(true);
  });

  it('FINDING 4 (fixed): a client that opens a huge window and never reads its socket — the gateway holds the target back instead of buffering without bound', async () => {
    const a = await checkedOut();
    const c = await open({ username: a.username, password: await ticket(a.checkoutId) });
    await until(async () => ((await sessionsOf(a.checkoutId)).length ? sessionsOf(a.checkoutId) : null));
    const internals = c as unknown as { _sock: { pause(): void; destroy(): void }; _protocol: { channelWindowAdjust(chan: number, n: number): void } };
    const stream = await new Promise<ClientChannel>((resolve, reject) => c.exec('head -c 300000000 /dev/zero', (err, s) => (err ? reject(err) : resolve(s))));
    internals._sock.pause(); // never read again …
    internals._protocol.channelWindowAdjust((stream as unknown as { outgoing: { id: number } }).outgoing.id, 0x7fffffff); // … but say 2 GiB may come
    let most = 0;
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline && most < 4 * 1024 * 1024) {
      await sleep(100);
      most = Math.max(most, gatewaySocketBacklog());
    }
    internals._sock.destroy();
    // the defence: the gateway holds the target back (it waits for the client socket to drain above 1 MiB); was 16 MB+ and growing
    expect(most).toBeLessThan(4 * 1024 * 1024);
  }, 30_000);

  it('FINDING 6 (fixed): a PTY of 4,294,967,295 columns does not make the recording unplayable — resize events are clamped like the header (10,000)', async () => {
    const a = await checkedOut();
    const c = await open({ username: a.username, password: await ticket(a.checkoutId) });
    const huge = 0xffffffff;
    const stream = await new Promise<ClientChannel>((resolve, reject) =>
      c.exec('echo ready; sleep 0.5; echo sized', { pty: { rows: huge, cols: huge, width: 0, height: 0, term: 'xterm' } }, (err, s) => (err ? reject(err) : resolve(s))),
    );
    // resized once output was shown (the header is written by then): a resize event, not the header's size
    stream.once('data', () => stream.setWindow(huge, huge, 0, 0));
    await collect(stream);
    c.end();
    const [s] = await endedSession(a.checkoutId);
    const lines = (await download(s.id)).text.trim().split('\n').map((l) => JSON.parse(l) as unknown);
    const header = lines[0] as { width: number; height: number };
    const sizes = (lines.slice(1) as Array<[number, string, string]>).filter((e) => e[1] === 'r').map((e) => e[2].split('x').map(Number));
    expect(sizes.length).toBeGreaterThan(0);
    // the defence: every size a player is asked to draw is within the bound the header already has
    for (const [w, h] of [[header.width, header.height], ...sizes]) expect({ w: w <= 10_000, h: h <= 10_000 }).toEqual({ w: true, h: true });
  });

  it('refused channel requests: env (LD_PRELOAD), agent, X11, remote forwarding, unix-socket forwarding, direct-tcpip to the gateway itself, other subsystems; the connection stays usable', async () => {
    const a = await checkedOut();
    const c = await open({ username: a.username, password: await ticket(a.checkoutId), strictVendor: false } as never);
    // env is not applied
    const env = await execThrough(c, 'echo "[$LD_PRELOAD][$BASH_ENV]"', { pty: undefined });
    expect(env.stdout).toBe('[][]\n');
    const withEnv = await new Promise<string>((resolve, reject) =>
      c.exec('echo "[$LD_PRELOAD]"', { env: { LD_PRELOAD: '/tmp/evil.so', BASH_ENV: '/tmp/evil.sh' } }, (err, s) => (err ? reject(err) : collect(s).then((r) => resolve(r.stdout)))),
    );
    expect(withEnv).toBe('[]\n');
    const fails = (p: (cb: (err?: Error) => void) => void) => new Promise<Error | undefined>((resolve) => p((err) => resolve(err)));
    // direct-tcpip (policy off) to the gateway's own port, and to the target's sshd
    expect(await fails((cb) => c.forwardOut('127.0.0.1', 40000, '127.0.0.1', gw.port, (err) => cb(err)))).toBeInstanceOf(Error);
    expect(await fails((cb) => c.forwardOut('127.0.0.1', 40000, '127.0.0.1', sshd.port, (err) => cb(err)))).toBeInstanceOf(Error);
    // remote forwarding, unix sockets both ways
    expect(await fails((cb) => c.forwardIn('127.0.0.1', 0, (err) => cb(err)))).toBeInstanceOf(Error);
    expect(await fails((cb) => c.openssh_forwardOutStreamLocal('/run/sshd.pid', (err) => cb(err)))).toBeInstanceOf(Error);
    expect(await fails((cb) => c.openssh_forwardInStreamLocal(`/tmp/review-${randomBytes(4).toString('hex')}.sock`, (err) => cb(err ?? undefined)))).toBeInstanceOf(Error);
    // subsystems other than sftp
    expect(await fails((cb) => c.subsys('netconf', (err) => cb(err)))).toBeInstanceOf(Error);
    // agent and X11 requests: refused, the command does not see a forwarded agent or display
    const x = await new Promise<string>((resolve, reject) =>
      c.exec('echo "[$SSH_AUTH_SOCK][$DISPLAY]"', { x11: true, agentForward: true } as never, (err, s) => (err ? reject(err) : collect(s).then((r) => resolve(r.stdout)))),
    ).catch((e: Error) => `refused: ${e.message}`);
    expect(x).toMatch(/^(\[\]\[\]\n|refused: .*)$/);
    expect((await execThrough(c, 'echo still-usable')).stdout).toBe('still-usable\n');
  });

  it('a thousand session channels opened at once on one connection: the gateway stays up, sshd limits what reaches it, the connection still works and ends cleanly', async () => {
    const a = await checkedOut();
    const c = await open({ username: a.username, password: await ticket(a.checkoutId) });
    const proto = c as unknown as { _chanMgr: unknown };
    expect(proto._chanMgr).toBeDefined();
    const results = await Promise.allSettled(Array.from({ length: 1000 }, () => execThrough(c, 'true')));
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    expect(ok).toBeGreaterThan(0);
    expect((await execThrough(c, 'echo after')).stdout).toBe('after\n');
    c.end();
    const [s] = await endedSession(a.checkoutId);
    expect(s.end_reason).toBe('client_closed');
    expect(vault.get(SshGatewayServer).liveSessionIds()).not.toContain(s.id);
  }, 60_000);

  // ---- upstream ---------------------------------------------------------------------------------------------------

  it('an impostor at the target address (another host key): it never sees an authentication request, let alone the password', async () => {
    const a = await checkedOut();
    const impostorKey = newEd25519Pair(utils);
    const seen: string[] = [];
    const impostor = new Server({ hostKeys: [impostorKey.private] }, (conn) => {
      conn.on('authentication', (ctx) => {
        seen.push(`${ctx.method}:${ctx.username}:${(ctx as { password?: string }).password ?? ''}`);
        ctx.reject();
      });
      conn.on('error', () => undefined);
    });
    await new Promise<void>((r) => impostor.listen(0, '127.0.0.1', () => r()));
    const port = (impostor.address() as AddressInfo).port;
    await vault.db.query('UPDATE targets SET port = $2 WHERE id = $1', [targetId, port]);
    try {
      expect(await gatewayRefuses(gw, { username: a.username, password: await ticket(a.checkoutId) })).toBe(true);
      // the pin removed after the ticket was issued (no ticket is issued for an unpinned target): refused the same
      const pin = sshd.hostKeySha256;
      const issued = await ticket(a.checkoutId);
      await vault.db.query(`UPDATE targets SET options = options - 'hostKeySha256' WHERE id = $1`, [targetId]);
      try {
        expect((await as(operator).post(`/v1/checkouts/${a.checkoutId}/connect`, {}, true).expect(409)).body.code).toBe('TARGET_HOST_KEY_UNPINNED');
        expect(await gatewayRefuses(gw, { username: a.username, password: issued })).toBe(true);
      } finally {
        await vault.db.query(`UPDATE targets SET options = options || jsonb_build_object('hostKeySha256', $2::text) WHERE id = $1`, [targetId, pin]);
      }
    } finally {
      await vault.db.query('UPDATE targets SET port = $2 WHERE id = $1', [targetId, sshd.port]);
      impostor.close();
    }
    expect(seen).toEqual([]);
    expect(await sessionsOf(a.checkoutId)).toHaveLength(0);
    const kinds = (await audits('gateway.host_key_mismatch')).map((e) => e.details.kind);
    expect(kinds).toEqual(expect.arrayContaining(['host_key_mismatch', 'host_key_unpinned']));
  });

  // ---- brokered only --------------------------------------------------------------------------------------------

  it('brokered only: the password is in no answer the operator gets (checkout, read, reveal, connect, sessions, live sessions), nor the audit log', async () => {
    const a = await checkedOut({ brokeredOnly: true });
    const answers: unknown[] = [a.checkout];
    answers.push((await as(operator).get(`/v1/checkouts/${a.checkoutId}`).expect(200)).body);
    const reveal = await as(operator).post(`/v1/checkouts/${a.checkoutId}/reveal`, {}, true);
    expect(reveal.body.code).toBe('BROKERED_ONLY');
    answers.push(reveal.body);
    answers.push((await as(operator).post(`/v1/checkouts/${a.checkoutId}/connect`, {}, true).expect(201)).body);
    const c = await open({ username: a.username, password: await ticket(a.checkoutId) });
    // what the operator can see from inside the session: its environment and process list
    const inside = await execThrough(c, 'env; ps -eo args');
    answers.push(inside.stdout);
    answers.push((await as(operator).get(`/v1/checkouts/${a.checkoutId}/sessions`).expect(200)).body);
    answers.push((await as(operator).get('/v1/sessions').query({ checkoutId: a.checkoutId }).expect(200)).body);
    answers.push((await as(admin).get(`/v1/accounts/${a.accountId}`).expect(200)).body);
    const events = await vault.db.query('SELECT * FROM audit_events');
    expect(JSON.stringify(answers)).not.toContain(a.password);
    expect(JSON.stringify(events)).not.toContain(a.password);
  });

  it('FINDING 5 (documented limit, README "Brokered only"): on a target whose sshd reads ~/.ssh/authorized_keys, a key planted through the gateway still logs in after check-in; the vault deletes nothing on the target, the planting is in the recording, and the target setting closes it (gateway-core)', async () => {
    const a = await checkedOut({ brokeredOnly: true });
    const key = newEd25519Pair(utils);
    const c = await open({ username: a.username, password: await ticket(a.checkoutId) });
    const plant = await execThrough(c, `umask 077; mkdir -p ~/.ssh && echo '${key.public}' >> ~/.ssh/authorized_keys && echo planted`);
    expect(plant.stdout).toBe('planted\n');
    c.end();
    await as(operator).post(`/v1/checkouts/${a.checkoutId}/checkin`).expect(200);
    const directLogin = await direct(a.username, { privateKey: key.private }).then(
      async (d) => (await execThrough(d, 'id -un')).stdout === `${a.username}\n`,
      () => false,
    );
    // the limit, as documented: this sshd reads keys from the home dir (stock OpenSSH); the README's target settings
    // (keys only from root-owned files, or Match User + AuthenticationMethods password) are what stop it — gateway-core
    // proves that on a target set up so. The vault did not delete the file (it deletes nothing on a target).
    expect(directLogin).toBe(true);
    expect(existsSync(`/home/${a.username}/.ssh/authorized_keys`)).toBe(true);
    const sessionId = (await endedSession(a.checkoutId))[0].id;
    const cast = (await as(auditor).get(`/v1/sessions/${sessionId}/recording`).buffer(true).expect(200)).text;
    expect(cast).toContain('authorized_keys');
  });

  // ---- recordings ---------------------------------------------------------------------------------------------

  it("recordings: operators and vendors cannot download any (even their own), another operator's session is 404, an auditor's read is audited; a chunk swapped in from another session fails verify", async () => {
    const a = await checkedOut();
    const b = await checkedOut({}, otherOperator);
    for (const [x, who] of [
      [a, operator],
      [b, otherOperator],
    ] as const) {
      const c = await open({ username: x.username, password: await ticket(x.checkoutId, {}, who) });
      await execThrough(c, `echo recorded-${x.username}`);
      c.end();
    }
    const [sa] = await endedSession(a.checkoutId);
    const [sb] = await endedSession(b.checkoutId);
    expect((await download(sa.id, operator)).status).toBe(403);
    expect((await download(sa.id, vendor)).status).toBe(403);
    expect((await as(otherOperator).get(`/v1/sessions/${sa.id}`)).status).toBe(404);
    expect((await as(otherOperator).get('/v1/sessions').query({ userId: operator.id }).expect(200)).body.items).toEqual([]);
    expect((await as(operator).post(`/v1/sessions/${sa.id}/verify`, {})).status).toBe(403);
    const read = await download(sa.id);
    expect(read.status).toBe(200);
    expect(read.text).toContain(`recorded-${a.username}`);
    expect((await audits('session.recording_read')).some((e) => e.subject_id === sa.id)).toBe(true);
    expect((await as(auditor).post(`/v1/sessions/${sb.id}/verify`, {}).expect(200)).body.ok).toBe(true);
    // swap: session B's chunk 0 replaced by session A's (a valid ciphertext under the same key)
    await vault.db.query(
      `UPDATE session_recording_chunks SET data = (SELECT data FROM session_recording_chunks WHERE session_id = $1 AND seq = 0),
              size = (SELECT size FROM session_recording_chunks WHERE session_id = $1 AND seq = 0)
        WHERE session_id = $2 AND seq = 0`,
      [sa.id, sb.id],
    );
    const v = (await as(auditor).post(`/v1/sessions/${sb.id}/verify`, {}).expect(200)).body;
    expect(v.ok).toBe(false);
    expect(v.problems.join(' ')).toMatch(/does not decrypt/);
    // and the whole set moved (every chunk of A copied over B's): still refused, each chunk is bound to its session
    await vault.db.query('DELETE FROM session_recording_chunks WHERE session_id = $1', [sb.id]);
    await vault.db.query('INSERT INTO session_recording_chunks (session_id, seq, data, size) SELECT $2, seq, data, size FROM session_recording_chunks WHERE session_id = $1', [sa.id, sb.id]);
    expect((await as(auditor).post(`/v1/sessions/${sb.id}/verify`, {}).expect(200)).body.ok).toBe(false);
  });

  // ---- ending -------------------------------------------------------------------------------------------------------

  it("terminate of a session held by another instance: that instance closes it within a couple of seconds", async () => {
    second = await startTestVault({ db: vault.db, masterKey: vault.masterKey, gateway: true });
    const a = await checkedOut();
    const c = await gatewayConnect(second.gateway!, { username: a.username, password: await ticket(a.checkoutId) });
    clients.push(c);
    const [row] = await until(async () => ((await sessionsOf(a.checkoutId)).length ? sessionsOf(a.checkoutId) : null));
    expect(second.get(SshGatewayServer).liveSessionIds()).toContain(row.id);
    expect(vault.get(SshGatewayServer).liveSessionIds()).not.toContain(row.id);
    const gone = closed(c);
    await as(admin).post(`/v1/sessions/${row.id}/terminate`, {}, true).expect(200);
    const t0 = Date.now();
    await gone;
    expect(Date.now() - t0).toBeLessThan(4000);
    expect((await until(async () => (await sessionsOf(a.checkoutId))[0]?.end_reason)) as string).toBe('terminated');
  });

  it('the end poll: an admin revoke and a lease that runs out (nothing swept, only the clock) both cut the session', async () => {
    const a = await checkedOut();
    const c1 = await open({ username: a.username, password: await ticket(a.checkoutId) });
    const gone1 = closed(c1);
    c1.exec('sleep 60', () => undefined);
    await as(admin).post(`/v1/checkouts/${a.checkoutId}/revoke`, { reason: 'review' }, true).expect(200);
    await gone1;
    expect((await endedSession(a.checkoutId))[0].end_reason).toBe('revoked');

    const b = await checkedOut();
    const c2 = await open({ username: b.username, password: await ticket(b.checkoutId) });
    const gone2 = closed(c2);
    c2.exec('sleep 60', () => undefined);
    const lease = new Date(b.checkout.expiresAt as string).getTime() - vault.clock.now().getTime();
    vault.clock.advance(lease + 1000);
    await gone2;
    expect((await endedSession(b.checkoutId))[0].end_reason).toBe('expired');
  });

  it('after all of the above: no password or ticket in any log line, audit event, session row or recording', async () => {
    const stored = JSON.stringify([
      await vault.db.query('SELECT * FROM audit_events'),
      await vault.db.query('SELECT * FROM gateway_sessions'),
      await vault.db.query('SELECT * FROM gateway_tickets'),
      await vault.db.query('SELECT * FROM session_recordings'),
    ]);
    const logs = logLines.join('\n');
    expect(secrets.length).toBeGreaterThan(30);
    expect(logLines.length).toBeGreaterThan(0);
    for (const secret of secrets) expect({ secret, inLogs: logs.includes(secret), stored: stored.includes(secret) }).toEqual({ secret, inLogs: false, stored: false });
  });
});

import { randomBytes } from 'node:crypto';
import { AddressInfo } from 'node:net';
import { Client as PgClient } from 'pg';
import { createConnection } from 'mysql2/promise';
import { Client as SshClient } from 'ssh2';
import { Connector, ConnectorTarget, SESSION_ID_PATTERNS, TargetSession } from '../../src/connectors/connector.interface';
import { ConnectorRegistry } from '../../src/connectors/connector.registry';
import { sshSessionId } from '../../src/connectors/ssh/ssh-remote';
import { connectTlsMariaDb, TlsMariaHandle } from '../support/targets/mariadb-tls';
import { PgHandle, startScramPostgres } from '../support/targets/postgres';
import { run } from '../support/targets/run';
import { connectorCodeOf, processGone, sshConnect, SshdHandle, sshExecHold, sshExecOut, startSshd, SudoAdmin } from '../support/targets/sshd';

/**
 * Live sessions through the connectors (issue 16): listSessions and endSession on a real OpenSSH sshd (UsePAM yes), a
 * scram PostgreSQL and the TLS MariaDB, each with its least-privilege administrator. A session the test holds open is
 * listed (client address, since, database/state where the type has them) and ending it closes exactly that session;
 * the admin's own is never listed nor ended; a session of another account, an id crafted to hit pid 1, the listener or
 * the admin's own backend, or a stale id ends nothing.
 */

const hex = () => randomBytes(4).toString('hex');
const pw = () => `Pw-${randomBytes(12).toString('base64url')}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const alive = (pid: number) => !processGone(pid);
const waitGone = async (pid: number) => {
  for (let i = 0; i < 60 && alive(pid); i++) await sleep(50);
  return !alive(pid);
};
const recent = (iso: string | null) => !!iso && Math.abs(Date.now() - Date.parse(iso)) < 120_000;

describe('live sessions: SSH (real sshd, sudo admin with a password)', () => {
  let sshd: SshdHandle;
  let admin: SudoAdmin;
  const connector: Connector = new ConnectorRegistry().get('ssh');
  const held: SshClient[] = [];
  const target = (): ConnectorTarget => ({ type: 'ssh', host: sshd.host, port: sshd.port, adminUsername: admin.username, adminPassword: admin.password, options: { hostKeySha256: sshd.hostKeySha256 } });
  async function user() {
    const name = `vt_ls_${hex()}`;
    const password = pw();
    await sshd.createUser(name, password);
    return { name, password };
  }
  async function login(name: string, password: string) {
    const conn = await sshConnect({ host: sshd.host, port: sshd.port, username: name, password });
    conn.on('error', () => undefined);
    let closed = false;
    conn.on('close', () => (closed = true));
    held.push(conn);
    return { conn, closed: () => closed, localPort: (conn as unknown as { _sock: { localPort: number } })._sock.localPort };
  }
  /** What `ps` says about a process on this machine (the sshd is local): what the connector's id is made of. */
  async function idOf(pid: number): Promise<string> {
    const out = (await run('ps', ['-o', 'ruid=,euid=,lstart=', '-p', String(pid)])).stdout.trim();
    const m = /^(\d+)\s+(\d+)\s+(.*)$/.exec(out)!;
    return sshSessionId({ pid, ruid: Number(m[1]), euid: Number(m[2]), started: m[3] });
  }

  beforeAll(async () => {
    sshd = await startSshd({ usePam: true });
    admin = await sshd.createSudoAdmin({ nopasswd: false });
  }, 60_000);
  afterAll(async () => {
    for (const c of held) c.end();
    await sshd?.stop();
  }, 60_000);

  it('lists each login of the account (since, terminal, processes) and ends exactly the one asked for: its connection closes, its processes are gone, the other session runs on', async () => {
    const a = await user();
    const one = await login(a.name, a.password);
    const sleeper = Number((await sshExecOut(one.conn, 'sleep 701 </dev/null >/dev/null 2>&1 & echo $!')).trim());
    await sshExecHold(one.conn, 'sleep 702');
    const two = await login(a.name, a.password);
    await new Promise<void>((resolve, reject) => two.conn.shell({ term: 'xterm', rows: 24, cols: 80 }, (err, stream) => (err ? reject(err) : (stream.on('data', () => undefined), resolve()))));
    await sleep(500);

    const list = await connector.listSessions(target(), { username: a.name });
    expect(list).toHaveLength(2);
    for (const s of list) {
      expect(s).toMatchObject({ username: a.name, kind: 'ssh', state: 'active', clientAddress: null });
      expect(s.id).toMatch(SESSION_ID_PATTERNS.ssh);
      expect(recent(s.since)).toBe(true);
      expect(s.processes!.length).toBeGreaterThanOrEqual(2);
    }
    const withTty = list.find((s) => s.tty)!;
    const noTty = list.find((s) => !s.tty)!;
    expect(withTty.tty).toMatch(/^pts\/\d+$/);
    expect(noTty.processes!.map((p) => p.pid)).toContain(sleeper); // left the tree (setsid-less &): still the session's
    expect(noTty.processes!.some((p) => p.command.startsWith('sleep 702'))).toBe(true);
    // the admin's own session (the one that listed) is not there: no process of the admin's uid
    const adminUid = Number((await run('id', ['-u', admin.username])).stdout.trim());
    const listed = list.flatMap((s) => s.processes!.map((p) => p.pid));
    const uids = (await run('ps', ['-o', 'ruid=', '-p', listed.join(',')])).stdout.split('\n').filter((line) => line.trim()).map((line) => Number(line.trim()));
    expect(uids).not.toContain(adminUid);

    expect(await connector.endSession(target(), { username: a.name, sessionId: noTty.id })).toBe(true);
    for (let i = 0; i < 40 && !one.closed(); i++) await sleep(50);
    expect(one.closed()).toBe(true);
    expect(await waitGone(sleeper)).toBe(true);
    expect(two.closed()).toBe(false);
    expect((await sshExecOut(two.conn, 'echo still-here')).trim()).toBe('still-here');
    const after = await connector.listSessions(target(), { username: a.name });
    expect(after.map((s) => s.id)).toEqual([withTty.id]);
    // the same id again: nothing of the account's matches it any more
    expect(await connector.endSession(target(), { username: a.name, sessionId: noTty.id })).toBe(false);
  }, 90_000);

  it("imitations end nothing: another account's processes titled as this account's sessions are not listed and not ended; pid 1, the listener and another account's real session are out of reach", async () => {
    const a = await user();
    const b = await user();
    const victim = await login(a.name, a.password);
    await sshExecHold(victim.conn, 'sleep 703');
    const attacker = await login(b.name, b.password);
    const fakes = (
      await sshExecOut(
        attacker.conn,
        `for t in "sshd: ${a.name}@pts/77" "sshd: ${a.name} [priv]" "sshd-session: ${a.name}@notty"; do setsid bash -c "exec -a \\"$t\\" sleep 704" </dev/null >/dev/null 2>&1 & echo $!; done`,
      )
    )
      .trim()
      .split('\n')
      .map(Number);
    await sleep(300);
    const list = await connector.listSessions(target(), { username: a.name });
    expect(list).toHaveLength(1);
    const listedPids = list.flatMap((s) => s.processes!.map((p) => p.pid));
    for (const f of fakes) expect(listedPids).not.toContain(f);

    // ids built exactly as the connector builds them, for processes that are not sessions of a
    for (const pid of [...fakes, 1, sshd.pid, process.pid]) {
      expect(await connector.endSession(target(), { username: a.name, sessionId: await idOf(pid) })).toBe(false);
    }
    // a's real session through b: b has no session with that id
    expect(await connector.endSession(target(), { username: b.name, sessionId: list[0].id })).toBe(false);
    // b's own session does not end a's either, and a's session ended as a leaves b's session and fakes running
    await sleep(200);
    for (const pid of [...fakes, 1, sshd.pid]) expect(alive(pid)).toBe(true);
    expect(victim.closed()).toBe(false);
    expect(await connector.endSession(target(), { username: a.name, sessionId: list[0].id })).toBe(true);
    for (let i = 0; i < 40 && !victim.closed(); i++) await sleep(50);
    expect(victim.closed()).toBe(true);
    for (const pid of fakes) expect(alive(pid)).toBe(true);
    expect(attacker.closed()).toBe(false);
    for (const f of fakes) process.kill(f, 'SIGKILL');
  }, 90_000);

  it("refuses the admin's own name and ids that are not SSH session ids before anything reaches the target", async () => {
    const a = await user();
    expect(await connectorCodeOf(connector.listSessions(target(), { username: admin.username }))).toBe('TARGET_INVALID_NAME');
    expect(await connectorCodeOf(connector.listSessions(target(), { username: 'root' }))).toBe('TARGET_INVALID_NAME');
    expect(await connectorCodeOf(connector.endSession(target(), { username: admin.username, sessionId: await idOf(process.pid) }))).toBe('TARGET_INVALID_NAME');
    for (const bad of ['ssh-0-0123456789abcdef', 'ssh-1', 'ssh-1-0123456789ABCDEF', 'ssh-99999999-0123456789abcdef', 'pg-1-1', '../1', 'ssh-1-0123456789abcdef\n', '']) {
      expect(await connectorCodeOf(connector.endSession(target(), { username: a.name, sessionId: bad }))).toBe('TARGET_INVALID_NAME');
    }
    expect(await connector.listSessions(target(), { username: a.name })).toEqual([]);
    expect(await connector.listSessions(target(), { username: `vt_none_${hex()}` })).toEqual([]);
  }, 60_000);
});

describe('live sessions: PostgreSQL (scram, least-privilege admin)', () => {
  let pg: PgHandle;
  let target: ConnectorTarget;
  const connector: Connector = new ConnectorRegistry().get('postgres');
  const clients: PgClient[] = [];
  async function hold(user: string, password: string) {
    const c = new PgClient({ host: pg.host, port: pg.port, user, password, database: 'postgres', application_name: 'held-by-test' });
    c.on('error', () => undefined);
    await c.connect();
    clients.push(c);
    const { rows } = await c.query<{ pid: number; port: number }>('SELECT pg_backend_pid() AS pid, inet_client_port() AS port');
    return { c, pid: rows[0].pid, port: rows[0].port };
  }

  beforeAll(async () => {
    pg = await startScramPostgres({ version: 15 });
    const admin = await pg.leastPrivilegeAdmin();
    target = { type: 'postgres', host: pg.host, port: pg.port, adminUsername: admin.username, adminPassword: admin.password, options: { database: 'postgres', tls: false } };
  }, 60_000);
  afterAll(async () => {
    for (const c of clients) await c.end().catch(() => undefined);
    await pg?.stop();
  });

  it('lists the role\'s session the test holds (address, since, database, state) and pg_terminate_backend ends it: a query on it fails', async () => {
    const name = `vt_ls_${hex()}`;
    const password = pw();
    await pg.createRole(name, password);
    const s = await hold(name, password);
    const list = await connector.listSessions(target, { username: name });
    expect(list).toHaveLength(1);
    const [got] = list as [TargetSession];
    expect(got).toMatchObject({ username: name, kind: 'postgres', clientAddress: `127.0.0.1:${s.port}`, database: 'postgres', state: 'idle' });
    expect(got.id).toMatch(new RegExp(`^pg-${s.pid}-\\d+$`));
    expect(recent(got.since)).toBe(true);
    // the same pid with another start time is another (older or newer) session: nothing ended
    expect(await connector.endSession(target, { username: name, sessionId: `pg-${s.pid}-1` })).toBe(false);
    expect((await s.c.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    expect(await connector.endSession(target, { username: name, sessionId: got.id })).toBe(true);
    await expect(s.c.query('SELECT 1')).rejects.toThrow();
    expect(await connector.listSessions(target, { username: name })).toEqual([]);
    expect(await connector.endSession(target, { username: name, sessionId: got.id })).toBe(false);
  }, 60_000);

  it("a role named like the admin reaches none of the admin's sessions; the admin's name is refused; bad ids are refused", async () => {
    const adminName = target.adminUsername;
    const lookalike = 'Vault_admin';
    const password = pw();
    await pg.query(`CREATE ROLE "${lookalike}" LOGIN PASSWORD '${password}'`);
    const adminHeld = await hold(adminName, target.adminPassword!);
    const own = await hold(lookalike, password);
    const { rows } = await adminHeld.c.query<{ us: string }>('SELECT (extract(epoch FROM backend_start) * 1000000)::bigint::text AS us FROM pg_stat_activity WHERE pid = pg_backend_pid()');
    const adminSessionId = `pg-${adminHeld.pid}-${rows[0].us}`;
    const list = await connector.listSessions(target, { username: lookalike });
    expect(list.map((x) => x.id)).toEqual([expect.stringMatching(new RegExp(`^pg-${own.pid}-`))]);
    expect(await connector.endSession(target, { username: lookalike, sessionId: adminSessionId })).toBe(false);
    expect(await connectorCodeOf(connector.listSessions(target, { username: adminName }))).toBe('TARGET_INVALID_NAME');
    expect(await connectorCodeOf(connector.endSession(target, { username: adminName, sessionId: adminSessionId }))).toBe('TARGET_INVALID_NAME');
    // pid 1 and the postmaster: not client backends of the role
    expect(await connector.endSession(target, { username: lookalike, sessionId: 'pg-1-0' })).toBe(false);
    expect(await connector.endSession(target, { username: lookalike, sessionId: `pg-${pg.pid}-0` })).toBe(false);
    for (const bad of ['pg-0-1', 'pg-1', 'pg-99999999-1', 'pg-1-1.5', 'pg-1--1', 'my-1', "pg-1-1' OR '1'='1"]) {
      expect(await connectorCodeOf(connector.endSession(target, { username: lookalike, sessionId: bad }))).toBe('TARGET_INVALID_NAME');
    }
    expect((await adminHeld.c.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    expect((await own.c.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    expect(alive(pg.pid)).toBe(true);
  }, 60_000);

  it('without pg_read_all_stats the listing fails loudly and says what to grant', async () => {
    const bare = `vt_bare_${hex()}`;
    const bpw = pw();
    await pg.query(`CREATE ROLE ${bare} LOGIN CREATEROLE PASSWORD '${bpw}'`);
    await pg.query(`GRANT pg_signal_backend TO ${bare}`);
    const name = `vt_ls_${hex()}`;
    const password = pw();
    await pg.createRole(name, password);
    await hold(name, password);
    const e = connector.listSessions({ ...target, adminUsername: bare, adminPassword: bpw }, { username: name });
    await expect(e).rejects.toMatchObject({ connectorCode: 'TARGET_ERROR', message: expect.stringContaining(`GRANT pg_read_all_stats TO "${bare}"`) });
  }, 60_000);
});

describe('live sessions: MariaDB (TLS, least-privilege admin)', () => {
  let my: TlsMariaHandle;
  let target: ConnectorTarget;
  const connector: Connector = new ConnectorRegistry().get('mysql');
  const conns: Array<Awaited<ReturnType<typeof createConnection>>> = [];
  async function hold(user: string, password: string) {
    const c = await createConnection({ host: my.host, port: my.port, user, password, ssl: { ca: my.tlsCa } });
    c.on('error', () => undefined);
    conns.push(c);
    const port = ((c as unknown as { connection: { stream: { address(): AddressInfo } } }).connection.stream.address()).port;
    return { c, id: c.threadId, port };
  }

  beforeAll(async () => {
    my = await connectTlsMariaDb();
    target = { type: 'mysql', host: my.host, port: my.port, adminUsername: my.adminUsername, adminPassword: my.adminPassword, options: { tlsCa: my.tlsCa } };
  }, 60_000);
  afterAll(async () => {
    for (const c of conns) await c.end().catch(() => undefined);
    await my?.stop();
  });

  it('lists the connection the test holds (address, database, state) and KILL CONNECTION ends it: a query on it fails', async () => {
    const name = `vt_ls_${hex()}`;
    const password = pw();
    await my.createUser(name, password);
    const s = await hold(name, password);
    const list = await connector.listSessions(target, { username: name });
    expect(list).toEqual([{ id: `my-${s.id}`, username: name, kind: 'mysql', clientAddress: `127.0.0.1:${s.port}`, since: null, state: 'Sleep', database: null }]);
    expect(await connector.endSession(target, { username: name, sessionId: list[0].id })).toBe(true);
    await expect(s.c.query('SELECT 1')).rejects.toThrow();
    expect(await connector.listSessions(target, { username: name })).toEqual([]);
    expect(await connector.endSession(target, { username: name, sessionId: list[0].id })).toBe(false);
  }, 60_000);

  it("another account's connection (its name differing only in case, or the admin's own) is out of reach; bad ids are refused", async () => {
    const name = `vt_ls_${hex()}`;
    const other = name.toUpperCase().replace('VT_LS_', 'vt_LS_');
    const password = pw();
    await my.createUser(name, password);
    await my.rootQuery("CREATE USER ?@'%' IDENTIFIED BY ?", [other, password]);
    try {
      const mine = await hold(name, password);
      const theirs = await hold(other, password);
      const adminConn = await hold(my.adminUsername, my.adminPassword);
      expect((await connector.listSessions(target, { username: name })).map((x) => x.id)).toEqual([`my-${mine.id}`]);
      for (const id of [theirs.id, adminConn.id]) expect(await connector.endSession(target, { username: name, sessionId: `my-${id}` })).toBe(false);
      expect(await connector.endSession(target, { username: name, sessionId: 'my-1' })).toBe(false);
      for (const bad of ['my-0', 'my-', 'my-1 OR 1', 'my-99999999999999999', 'pg-1-1']) {
        expect(await connectorCodeOf(connector.endSession(target, { username: name, sessionId: bad }))).toBe('TARGET_INVALID_NAME');
      }
      expect(await connectorCodeOf(connector.listSessions(target, { username: my.adminUsername }))).toBe('TARGET_INVALID_NAME');
      for (const c of [mine, theirs, adminConn]) expect(await c.c.query('SELECT 1 AS one').then(([rows]) => rows)).toEqual([{ one: 1 }]);
    } finally {
      await my.rootQuery("DROP USER IF EXISTS ?@'%'", [other]);
    }
  }, 60_000);
});

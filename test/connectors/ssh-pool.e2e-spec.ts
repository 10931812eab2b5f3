import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { inspect } from 'node:util';
import { AddressInfo, createServer, Socket } from 'node:net';
import { Global, Module } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { APP_CONFIG, loadConfig } from '../../src/config/config';
import { CallOptions, Connector, ConnectorTarget } from '../../src/connectors/connector.interface';
import { ConnectorRegistry } from '../../src/connectors/connector.registry';
import { ConnectorsModule } from '../../src/connectors/connectors.module';
import { SafeConnector } from '../../src/connectors/safe-connector';
import { SshLease, SshPoolSettings } from '../../src/connectors/ssh/ssh-pool';
import { AdminShell } from '../../src/connectors/ssh/ssh-session';
import { SshConnector } from '../../src/connectors/ssh/ssh.connector';
import { failure } from '../support/connector-failure';
import { freePort } from '../support/process';
import { run, runRaw } from '../support/targets/run';
import { SSHD_BINARY, SshdHandle, startSshd, SudoAdmin } from '../support/targets/sshd';

/**
 * Pooled admin SSH connections (issue 17) against a real OpenSSH sshd (UsePAM yes) with least-privilege sudo admins:
 * one connection per target shared by concurrent calls on channels of their own. What the server sees is counted on the
 * server: authentications from sshd's own log ("Accepted publickey/password for <admin>"), open connections from its
 * per-connection processes (`sshd: <admin>@notty`) — never inferred from the pool alone.
 *
 * Waits are polls with generous deadlines (the machine is shared): nothing here asserts how long anything took.
 */

async function until(what: string, probe: () => Promise<boolean> | boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The private pooled admin path, for tests that must run a command the public API never would. */
type AdminPath = { asAdmin<T>(target: ConnectorTarget, opts: CallOptions | undefined, work: (shell: AdminShell, lease: SshLease) => Promise<T>): Promise<T> };

/** The process tree below `root` (pids), from ps. */
async function descendants(root: number): Promise<number[]> {
  const kids = new Map<number, number[]>();
  for (const line of (await run('ps', ['-eo', 'pid=,ppid='])).stdout.split('\n')) {
    const [pid, ppid] = line.trim().split(/\s+/).map(Number);
    if (pid) kids.set(ppid, [...(kids.get(ppid) ?? []), pid]);
  }
  const out: number[] = [];
  for (const queue = [root]; queue.length; ) {
    for (const k of kids.get(queue.shift()!) ?? []) {
      out.push(k);
      queue.push(k);
    }
  }
  return out;
}

describe('pooled admin SSH connections: real sshd, least-privilege sudo admin', () => {
  let sshd: SshdHandle;
  let admin: SudoAdmin;
  let target: ConnectorTarget;
  /** A listener started by the restart test on the same port and config (sshd.stop() only knows its own). */
  let restarted: ChildProcess | undefined;
  let restartedLog = '';
  const made: SshConnector[] = [];

  const pooled = (settings: Partial<SshPoolSettings> = {}) => {
    const raw = new SshConnector({ size: 4, idleMs: 60_000, ...settings });
    made.push(raw);
    return { raw, connector: new SafeConnector(raw) as Connector, path: raw as unknown as AdminPath };
  };
  /** The admin's open connections, as the server's processes show them. */
  const connections = async () => (await run('ps', ['-eo', 'pid=,args='])).stdout.split('\n').filter((l) => new RegExp(`^\\s*\\d+ sshd: ${admin.username}@`).test(l)).map((l) => Number(l.trim().split(/\s+/)[0]));
  /** Authentications of `name` the server accepted so far (sshd -e logs to stderr, LogLevel VERBOSE). */
  const logins = (name = admin.username) => ((sshd.logs() + restartedLog).match(new RegExp(`Accepted (?:publickey|password) for ${name} from`, 'g')) ?? []).length;
  const setPassword = (name: string, password: string) => run('chpasswd', [], { input: `${name}:${password}\n` });

  beforeAll(async () => {
    sshd = await startSshd({ usePam: true });
    admin = await sshd.createSudoAdmin({ nopasswd: true });
    target = { type: 'ssh', host: sshd.host, port: sshd.port, adminUsername: admin.username, adminPrivateKey: admin.privateKey, options: { hostKeySha256: sshd.hostKeySha256 } };
  }, 60_000);
  afterEach(async () => {
    for (const c of made.splice(0)) await c.closeAll();
    await until('no connection of the admin is left', async () => (await connections()).length === 0);
  });
  afterAll(async () => {
    if (restarted?.pid) {
      for (const pid of await descendants(restarted.pid)) await runRaw('kill', ['-KILL', String(pid)]);
      restarted.kill('SIGKILL');
    }
    await sshd?.stop();
  });

  it('repeated operations authenticate once and run on one connection; the admin uid is read once per connection', async () => {
    const { raw, connector } = pooled();
    const before = logins();
    for (let i = 0; i < 10; i++) {
      const res = await connector.verify(target);
      expect(res.privilege).toBe('sudo-nopasswd');
      expect(await connector.isAdmin(target, 'root')).toBe(false);
      expect(await connector.listSessions(target, { username: 'nobody' })).toEqual([]);
    }
    expect(logins() - before).toBe(1);
    expect(await connections()).toHaveLength(1);
    expect(raw.pool.opened).toBe(1);
    expect(raw.pool.stats()).toMatchObject({ identities: 1, idle: 1, busy: 0 });
    // the pooled client keeps the admin's key in its config: never printed with the connector or its pool
    const byPassword: ConnectorTarget = { ...target, adminPrivateKey: undefined, adminPassword: admin.password };
    await connector.isAdmin(byPassword, 'root');
    for (const text of [inspect(raw, { depth: 20 }), inspect(raw.pool, { depth: 20 })]) {
      expect(text).not.toContain(admin.password);
      expect(text).not.toContain('PRIVATE KEY');
    }
  });

  it('concurrent operations share the one connection, each on channels of its own', async () => {
    const { raw, connector } = pooled();
    const before = logins();
    let most = 0;
    const results = await Promise.all(Array.from({ length: 8 }, async (_, i) => {
      const r = await connector.isAdmin(target, i % 2 ? admin.username : 'root');
      most = Math.max(most, raw.pool.stats().channels);
      return r;
    }));
    expect(results).toEqual([false, true, false, true, false, true, false, true]);
    expect(logins() - before).toBe(1);
    expect(await connections()).toHaveLength(1);
    expect(most).toBeLessThanOrEqual(8);
  });

  it('64 concurrent operations never open more connections than the pool size, nor more channels than allowed on each', async () => {
    const { raw, connector } = pooled({ size: 3, channels: 2 });
    let most = 0;
    let mostChannels = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        most = Math.max(most, (await connections()).length);
        const s = raw.pool.stats();
        most = Math.max(most, s.idle + s.busy + s.opening);
        mostChannels = Math.max(mostChannels, s.channels);
      }
    })();
    const results = await Promise.all(Array.from({ length: 64 }, async (_, i) => {
      // a generous deadline: 64 calls queue for 6 channels on a shared machine (the bound is tested, not the speed)
      const r = await connector.isAdmin(target, i % 2 ? admin.username : 'root', { timeoutMs: 120_000 });
      mostChannels = Math.max(mostChannels, raw.pool.stats().channels);
      return r;
    })).finally(() => (sampling = false));
    await sampler;
    expect(results.filter(Boolean)).toHaveLength(32);
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(3);
    expect(mostChannels).toBeLessThanOrEqual(6);
    expect(raw.pool.opened).toBeLessThanOrEqual(3);
  });

  it('a changed admin password moves the next operation to a fresh connection, the old one is closed, and the old password is refused (a fresh login, not the pool)', async () => {
    const { connector } = pooled();
    const byPassword: ConnectorTarget = { ...target, adminPrivateKey: undefined, adminPassword: admin.password };
    await connector.verify(byPassword);
    const [old] = await connections();
    const newPassword = `Adm-${randomBytes(12).toString('base64url')}`;
    await setPassword(admin.username, newPassword);
    try {
      const before = logins();
      await connector.verify({ ...byPassword, adminPassword: newPassword });
      expect(logins() - before).toBe(1);
      await until('the connection opened with the old password is closed', async () => !(await connections()).includes(old));
      expect(await connections()).toHaveLength(1);
      const e = await failure(connector.verify(byPassword));
      expect(e.code).toBe('TARGET_AUTH_FAILED');
      expect(e.message).not.toContain(admin.password);
      expect(e.message).not.toContain(newPassword);
    } finally {
      await setPassword(admin.username, admin.password);
    }
  });

  it("rotating the admin's own password through the connector retires the connection it ran on: the old stored password then fails at once instead of riding the pool", async () => {
    const { raw, connector } = pooled();
    const byPassword: ConnectorTarget = { ...target, adminPrivateKey: undefined, adminPassword: admin.password };
    await connector.verify(byPassword);
    const newPassword = `Adm-${randomBytes(12).toString('base64url')}`;
    try {
      await connector.updatePassword(byPassword, { username: admin.username, password: newPassword });
      await until('the connection opened with the old password is closed', async () => (await connections()).length === 0);
      expect(raw.pool.stats()).toMatchObject({ idle: 0, busy: 0 });
      // the same (now stale) stored credential: a fresh login, refused
      expect((await failure(connector.verify(byPassword))).code).toBe('TARGET_AUTH_FAILED');
      await connector.verify({ ...byPassword, adminPassword: newPassword });
    } finally {
      await setPassword(admin.username, admin.password);
    }
  });

  it('a changed pin is never answered from the pool: the verified idle connection is closed at once and the new one refused before authenticating; the right pin works again on a fresh connection', async () => {
    const { raw, connector } = pooled();
    await connector.verify(target);
    expect(await connections()).toHaveLength(1);
    const wrongPin = sshd.hostKeySha256.replace(/^../, sshd.hostKeySha256.startsWith('AA') ? 'BB' : 'AA');
    const before = logins();
    const e = await failure(connector.verify({ ...target, options: { hostKeySha256: wrongPin } }));
    expect(e.code).toBe('TARGET_HOST_KEY_MISMATCH');
    expect(logins()).toBe(before);
    expect(raw.pool.stats()).toMatchObject({ idle: 0, busy: 0 });
    await until('the connection verified under the old pin is gone', async () => (await connections()).length === 0);
    await connector.verify(target);
    expect(logins() - before).toBe(1);
  });

  it('an impostor: the target moved to another server presenting another key is refused before any credential is sent, and the connection to its old address is closed at once', async () => {
    const other = await startSshd({ usePam: false });
    try {
      const { raw, connector } = pooled();
      const mine: ConnectorTarget & { id: string } = { ...target, id: 'target-one' };
      await connector.verify(mine);
      expect(await connections()).toHaveLength(1);
      const e = await failure(connector.verify({ ...mine, port: other.port }));
      expect(e.code).toBe('TARGET_HOST_KEY_MISMATCH');
      expect(other.logs()).not.toMatch(/Accepted|Failed|Postponed/);
      await until('the connection to the old address is closed', async () => (await connections()).length === 0);
      expect(raw.pool.stats()).toMatchObject({ idle: 0, busy: 0 });
      // two targets at the same address never share a connection
      await connector.verify(mine);
      await connector.verify({ ...target, id: 'target-two' });
      expect(await connections()).toHaveLength(2);
    } finally {
      await other.stop();
    }
  });

  it("the admin's own connections ended on the target (its sessions ended, as terminateSessions of the admin's name does) are survived: the pool forgets them and the next call opens a new one", async () => {
    const { raw, connector, path } = pooled({ channels: 1 });
    // two connections: one call holds the first while another opens the second
    let release!: () => void;
    const held = path.asAdmin(target, undefined, (shell) => new Promise<void>((r) => (release = r)).then(() => shell.run('true')).then(() => undefined));
    await until('the first connection is busy', () => raw.pool.stats().busy === 1);
    await connector.isAdmin(target, 'root');
    expect(await connections()).toHaveLength(2);
    release();
    await held;
    // ending the admin's sessions from one pooled connection ends the other (never the caller's own). SafeConnector
    // refuses the admin's name, and the vault an account with the admin's uid; what is left is another name for the
    // admin made on the target later, or another vault instance's pool: the connector itself is called here
    await raw.terminateSessions(target, { username: admin.username });
    await until('one connection is left on the server', async () => (await connections()).length === 1);
    await until('the pool forgot the ended one', () => raw.pool.stats().idle === 1);
    // and the server killing every session of the admin: the next calls open a new connection and work
    for (const pid of await connections()) await runRaw('kill', ['-KILL', String(pid)]);
    await until('the pool noticed', () => raw.pool.stats().idle === 0);
    const before = logins();
    expect(await connector.isAdmin(target, admin.username)).toBe(true);
    expect(await connector.isAdmin(target, 'root')).toBe(false);
    expect(logins() - before).toBe(1);
  });

  it('an idle pool closes after its idle time: no connection of the admin is left and the pool forgets the target', async () => {
    const { raw, connector } = pooled({ idleMs: 300 });
    await Promise.all([connector.verify(target), connector.verify(target), connector.verify(target)]);
    expect((await connections()).length).toBeGreaterThan(0);
    await until('the idle connection is closed', async () => (await connections()).length === 0 && raw.pool.stats().identities === 0);
  });

  it('a connection idle past checkAfterMs runs a check first and is reused when it passes', async () => {
    const { raw, connector } = pooled({ checkAfterMs: 0 });
    await connector.isAdmin(target, 'root');
    await new Promise((r) => setTimeout(r, 5));
    await connector.isAdmin(target, 'root');
    expect(raw.pool.opened).toBe(1);
    expect(await connections()).toHaveLength(1);
  });

  it('an aborted call closes its own channels and retires the connection: a call sharing it finishes, new calls get a new connection, and the old one closes', async () => {
    const { raw, connector, path } = pooled();
    const ac = new AbortController();
    let release!: () => void;
    const other = path.asAdmin(target, undefined, (shell) => new Promise<void>((r) => (release = r)).then(() => shell.run('id -u')));
    await until('a call holds the connection', () => raw.pool.stats().busy === 1);
    const [first] = await connections();
    const sleeping = path.asAdmin(target, { signal: ac.signal }, (shell) => shell.run('sleep 7'));
    await until('the sleep runs on a channel', () => raw.pool.stats().channels === 1);
    ac.abort();
    await expect(sleeping).rejects.toThrow(/aborted/);
    // a new call does not join the retired connection
    await connector.isAdmin(target, 'root');
    expect(raw.pool.opened).toBe(2);
    // the call sharing it was not harmed
    release();
    expect((await other).stdout.trim()).toMatch(/^\d+$/);
    await until('the retired connection is closed', async () => !(await connections()).includes(first));
    expect(await connections()).toHaveLength(1);
  });

  it('a call aborted while its connection is being opened to a server that never answers frees the room at once', async () => {
    const sockets: Socket[] = [];
    const silent = createServer((s) => void sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const { raw, path } = pooled({ size: 1 });
      const mute: ConnectorTarget = { ...target, port: (silent.address() as AddressInfo).port };
      for (let i = 0; i < 3; i++) {
        const ac = new AbortController();
        const call = path.asAdmin(mute, { signal: ac.signal }, async () => undefined);
        await until('the connection is being opened', () => raw.pool.stats().opening === 1);
        ac.abort();
        await expect(call).rejects.toThrow(/aborted/);
        expect(raw.pool.stats()).toMatchObject({ opening: 0, idle: 0, busy: 0, waiting: 0 });
      }
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
    }
  });

  it('a server allowing fewer sessions per connection (MaxSessions 2) than the pool opens channels: the refused channels wait for one of the connection\'s own instead of failing', async () => {
    // the same host key and users, another listener with MaxSessions 2
    const port = await freePort();
    const file = `${sshd.dir}/sshd_config_maxsessions`;
    writeFileSync(file, readFileSync(`${sshd.dir}/sshd_config`, 'utf8').replace(/^ListenAddress .*$/m, `ListenAddress 127.0.0.1:${port}`).replace(/^MaxSessions .*$/m, 'MaxSessions 2').replace(/^PidFile .*$/m, `PidFile ${sshd.dir}/sshd-maxsessions.pid`));
    let log = '';
    const narrow = spawn(SSHD_BINARY, ['-D', '-e', '-f', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    narrow.stderr!.on('data', (d) => (log += d));
    try {
      await until('the second listener listens', () => log.includes(`Server listening on 127.0.0.1 port ${port}`));
      const { raw, connector } = pooled({ channels: 8 });
      // eight calls join one connection and each asks for a channel at once (the admin's uid is not known yet either)
      const results = await Promise.all(Array.from({ length: 8 }, (_, i) => connector.isAdmin({ ...target, port }, i % 2 ? admin.username : 'root')));
      expect(results).toEqual([false, true, false, true, false, true, false, true]);
      expect(raw.pool.opened).toBe(1);
      expect(log).toMatch(/no more sessions|open failed|session limit/i);
    } finally {
      for (const pid of await descendants(narrow.pid!)) await runRaw('kill', ['-KILL', String(pid)]);
      narrow.kill('SIGKILL');
    }
  });

  it('a failing call retires its connection (any error): the next call opens a new one', async () => {
    const { raw, connector } = pooled();
    await connector.isAdmin(target, 'root');
    const e = await failure(connector.updatePassword(target, { username: 'vt_nobody_here', password: 'x-Long-enough-1' }));
    expect(e.code).toBe('TARGET_ERROR');
    await until('the connection of the failed call is closed', async () => (await connections()).length === 0);
    await connector.isAdmin(target, 'root');
    expect(raw.pool.opened).toBe(2);
  });

  it('a login as an account is never pooled: each one authenticates afresh', async () => {
    const { connector } = pooled();
    const name = `vt_pool_${randomBytes(3).toString('hex')}`;
    const password = `Pw-${randomBytes(12).toString('base64url')}`;
    await sshd.createUser(name, password);
    try {
      const before = logins(name);
      await connector.login(target, { username: name, password });
      await connector.login(target, { username: name, password });
      expect(logins(name) - before).toBe(2);
      expect((await failure(connector.login(target, { username: name, password: `${password}x` }))).code).toBe('TARGET_AUTH_FAILED');
    } finally {
      await sshd.deleteUser(name);
    }
  });

  it('app shutdown closes every pooled SSH connection (ConnectorRegistry with the VAULT_TARGET_POOL_* settings)', async () => {
    const config = loadConfig({ DATABASE_URL: 'postgres://unused@127.0.0.1/unused', VAULT_MASTER_KEY: randomBytes(32).toString('base64'), VAULT_TARGET_POOL_SIZE: '2', VAULT_TARGET_POOL_IDLE_MS: '600000' });
    @Global()
    @Module({ providers: [{ provide: APP_CONFIG, useValue: config }], exports: [APP_CONFIG] })
    class ConfigModule {}
    const module = await Test.createTestingModule({ imports: [ConfigModule, ConnectorsModule] }).compile();
    const app = module.createNestApplication();
    await app.init();
    const connector = app.get(ConnectorRegistry).get('ssh');
    await Promise.all(Array.from({ length: 24 }, (_, i) => connector.listSessions(target, { username: `nobody_${i}` })));
    const open = (await connections()).length;
    expect(open).toBeGreaterThan(0);
    expect(open).toBeLessThanOrEqual(2);
    await app.close();
    await until('no connection survives shutdown', async () => (await connections()).length === 0, 5000);
  });

  it('a restart of sshd (listener and every session) is survived: the next operation opens and verifies a new connection', async () => {
    const { raw, connector } = pooled();
    await connector.verify(target);
    const [old] = await connections();
    // the server goes down with every session (a reboot; `systemctl restart ssh` alone keeps sessions) and comes back with the same configuration and host key
    const listener = restarted?.pid ?? sshd.pid;
    const tree = await descendants(listener);
    await runRaw('kill', ['-STOP', String(listener)]);
    for (const pid of tree) await runRaw('kill', ['-KILL', String(pid)]);
    await runRaw('kill', ['-KILL', String(listener)]);
    await until('the pool noticed', () => raw.pool.stats().idle === 0);
    restarted = spawn(SSHD_BINARY, ['-D', '-e', '-f', `${sshd.dir}/sshd_config`], { stdio: ['ignore', 'ignore', 'pipe'] });
    restarted.stderr!.on('data', (d) => (restartedLog += d));
    await until('sshd listens again', () => restartedLog.includes(`Server listening on 127.0.0.1 port ${sshd.port}`));
    const before = logins();
    const res = await connector.verify(target);
    expect(res.hostKeySha256).toBe(sshd.hostKeySha256);
    const now = await connections();
    expect(now).toHaveLength(1);
    expect(now).not.toContain(old);
    expect(logins() - before).toBe(1);
  });
});

import { createHash } from 'node:crypto';
import { Client, ClientChannel, ConnectConfig, PseudoTtyOptions } from 'ssh2';
import { actingAs } from './http';
import { SshdHandle, startSshd } from './targets/sshd';
import type { TestGateway, TestUser, TestVault } from './vault';

/**
 * The ssh2 client as an SSH client of the vault's gateway (the OpenSSH client's proofs are H4's
 * test/support/openssh-client.ts). It checks the gateway's host key against what GET /v1/gateway says.
 */
export function gatewayConnect(gw: TestGateway, config: Omit<ConnectConfig, 'host' | 'port'>): Promise<Client> {
  return new Promise((resolve, reject) => {
    const c = new Client();
    c.on('ready', () => resolve(c)).on('error', reject);
    c.on('close', () => reject(new Error('closed before ready')));
    c.connect({
      host: gw.host,
      port: gw.port,
      readyTimeout: 20_000,
      hostVerifier: (key: Buffer) => createHash('sha256').update(key).digest('base64').replace(/=+$/, '') === gw.hostKeySha256,
      ...config,
    });
  });
}

/** Whether the gateway refuses this login (an authentication failure), or lets it in (the connection is closed again). */
export async function gatewayRefuses(gw: TestGateway, config: Omit<ConnectConfig, 'host' | 'port'>): Promise<boolean> {
  try {
    const c = await gatewayConnect(gw, config);
    c.end();
    return false;
  } catch (e) {
    const err = e as Error & { level?: string };
    if (err.level === 'client-authentication' || /closed before ready|All configured authentication methods failed/.test(err.message)) return true;
    throw e;
  }
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number | null;
  signal?: string;
}

/** Runs a command through a connection and collects everything it answered until the channel closed. */
export function execThrough(c: Client, command: string, o: { pty?: PseudoTtyOptions; input?: string | Buffer } = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    c.exec(command, o.pty ? { pty: o.pty } : {}, (err, stream) => {
      if (err) return reject(err);
      collect(stream, o.input).then(resolve, reject);
    });
  });
}

export function collect(stream: ClientChannel, input?: string | Buffer): Promise<ExecResult> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    const errs: Buffer[] = [];
    let code: number | null = null;
    let signal: string | undefined;
    stream.on('data', (d: Buffer) => out.push(d));
    stream.stderr.on('data', (d: Buffer) => errs.push(d));
    stream.on('exit', (c: number | null, s?: string) => {
      code = c;
      signal = s;
    });
    stream.on('close', () => resolve({ stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(errs).toString(), code, signal }));
    if (input !== undefined) stream.end(input);
  });
}

/** Polls `what` every 50 ms until it answers something truthy (or fails after `ms`). */
export async function until<T>(what: () => Promise<T | undefined | null | false>, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await what();
    if (v) return v;
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A real sshd (no PAM: wrong passwords fail fast) registered in the vault as an SSH target with a least-privilege sudo admin. */
export async function sshTargetFor(vault: TestVault, admin: TestUser, name: string): Promise<{ sshd: SshdHandle; targetId: string }> {
  const sshd = await startSshd({ usePam: false });
  const sudoAdmin = await sshd.createSudoAdmin({ nopasswd: false });
  const body = { name, type: 'ssh', host: sshd.host, port: sshd.port, admin: { username: sudoAdmin.username, password: sudoAdmin.password }, options: { hostKeySha256: sshd.hostKeySha256, sudo: true } };
  const targetId = (await actingAs(vault, admin).post('/v1/targets', body, true).expect(201)).body.id as string;
  return { sshd, targetId };
}

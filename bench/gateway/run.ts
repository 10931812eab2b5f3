/**
 * bench/gateway: the vault's SSH gateway beside direct `ssh` to the same sshd, in one run, with the real OpenSSH client.
 *
 *   npx ts-node --transpile-only bench/gateway/run.ts [--mb 50] [--rounds 5] [--n 1000] [--block 50] [--cipher <name>] [--what-if nodelay]
 *
 * Target: a throwaway sshd (test/support/targets/sshd.ts, PAM off) with one local account, registered in the vault with a
 * least-privilege sudo admin and its pinned host key, the account with a known password (policy: no rotation after
 * check-in). Vault: the real application (startTestVault: a fresh database on the machine's PostgreSQL) with the gateway
 * on a free port (VAULT_SSH_GATEWAY_PORT=0), in this process. An operator checks the account out, asks
 * `POST /v1/checkouts/:id/connect` for a ticket bound to a fresh ed25519 key, and `/usr/bin/ssh` connects to the gateway
 * with it; the gateway opens the upstream connection with the vaulted password and records every session channel.
 *
 * Two ssh ControlMaster connections are opened (test/support/openssh-client.ts: `ssh -M -N -S <socket>`), one to the
 * gateway and one directly to the sshd as the same account (its own key in the sshd's authorized keys), and every
 * measured operation is a new session channel over one of them (`ssh -S <socket> host <command>`), so connection set-up
 * and authentication are out of the figures on both sides, as they are for a person at a terminal:
 * - transfer: `cat > bench.bin` with `--mb` MB of random bytes as ssh's stdin (the file itself, ssh's fd 0: nothing passes
 *   through this process, which is the vault's), timed from
 *   the mux client's start to its exit; then `sha256sum bench.bin` on the target must equal the local file's. `--rounds`
 *   rounds, direct and gateway alternating (the order flipped every round); MB/s is the median round's, the ratio the
 *   median of each round's direct/gateway time ratio (a pair runs back to back, so a busy machine disturbs it least), and
 *   the CPU this process (the vault) spent per upload is printed.
 * - round trips: `--n` runs of `ssh -S <socket> host true` each way, in blocks of `--block` alternating between the two
 *   (so drift hits both alike); the latency of one = the mux client's start to its exit (an ssh process start, a
 *   channel open, exec, exit-status, close). p50/p99 both ways; added = gateway p50 − direct p50.
 * The aims (the issue's): transfer ≥ 0.7× direct; added p50 latency per round trip ≤ 2 ms.
 *
 * `--cipher` sets the client's cipher (`-c`) on both connections (default: OpenSSH's choice, chacha20-poly1305 today).
 * `--what-if nodelay` turns Nagle's algorithm off (TCP_NODELAY, as OpenSSH does for interactive sessions) on every socket
 * this process opens or accepts — the gateway's client and upstream connections among them: what that would change,
 * printed as such.
 * Everything (vault, database, sshd, clients) shares this machine's CPUs: figures are noisy on a shared machine.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { registerSshTarget } from '../../test/support/gateway-target';
import { actingAs } from '../../test/support/http';
import { OpenSshClient, SshEndpoint, SshMaster } from '../../test/support/openssh-client';
import { SshdHandle, startSshd } from '../../test/support/targets/sshd';
import { startTestVault, TestVault } from '../../test/support/vault';
import { pct } from '../checkout/run';
import { arg, runMain } from '../cli';
import { machineBusySeconds } from '../machine';

const MB = Number(arg('mb', '50'));
const ROUNDS = Number(arg('rounds', '5'));
const N = Number(arg('n', '1000'));
const BLOCK = Number(arg('block', '50'));
const CIPHER = arg('cipher', '');
/** What-if, this process only: TCP_NODELAY on every socket (see the header). */
const NODELAY = arg('what-if', '') === 'nodelay';
if (![MB, ROUNDS, N, BLOCK].every((x) => Number.isInteger(x) && x > 0)) throw new Error('--mb, --rounds, --n and --block must be positive integers');

const log = (s: string) => process.stderr.write(`${s}\n`);
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

type Mode = 'direct' | 'gateway';

interface Setup {
  vault: TestVault;
  sshd: SshdHandle;
  client: OpenSshClient;
  masters: Record<Mode, SshMaster>;
  close(): Promise<void>;
}

/** The `[host]:port type key` line of the sshd's own host key (read from its dir). */
function sshdKnownHostsLine(sshd: SshdHandle): string {
  const [type, blob] = readFileSync(join(sshd.dir, 'ssh_host_ed25519_key.pub'), 'utf8').trim().split(/\s+/);
  return `[${sshd.host}]:${sshd.port} ${type} ${blob}`;
}

/** `--what-if nodelay`: every socket this process connects or accepts gets TCP_NODELAY. */
function noDelayEverywhere(): void {
  const connect = net.Socket.prototype.connect;
  net.Socket.prototype.connect = function (this: net.Socket, ...args: unknown[]) {
    this.setNoDelay(true);
    return (connect as (...a: unknown[]) => net.Socket).apply(this, args);
  } as typeof connect;
  const emit = net.Server.prototype.emit as (this: net.Server, event: string | symbol, ...args: unknown[]) => boolean;
  net.Server.prototype.emit = function (this: net.Server, event: string | symbol, ...args: unknown[]) {
    if (event === 'connection') (args[0] as net.Socket).setNoDelay(true);
    return emit.call(this, event, ...args);
  } as typeof net.Server.prototype.emit;
}

async function setUp(): Promise<Setup> {
  if (NODELAY) noDelayEverywhere();
  const sshd = await startSshd({ usePam: false });
  const client = OpenSshClient.create();
  let vault: TestVault | undefined;
  const masters: Partial<Record<Mode, SshMaster>> = {};
  const close = async () => {
    for (const m of Object.values(masters)) await m.close().catch(() => undefined);
    await vault?.close().catch((e: unknown) => log(`vault close: ${(e as Error).message}`));
    await sshd.stop();
    client.close();
  };
  try {
    vault = await startTestVault({
      gateway: true,
      env: { VAULT_ROTATION_SWEEP_MS: '3600000', VAULT_EPHEMERAL_SWEEP_MS: '3600000', VAULT_TOKEN_TTL_SECONDS: '86400' },
    });
    const admin = await vault.admin();
    const asAdmin = actingAs(vault, admin);
    const targetId = await registerSshTarget(vault, admin, sshd, 'bench-gateway');
    const username = `vt_bgw_${randomBytes(3).toString('hex')}`;
    const password = `Bench-${randomBytes(12).toString('hex')}`;
    await sshd.createUser(username, password);
    const account = await asAdmin.post('/v1/accounts', { targetId, username, password, policy: { rotateAfterCheckin: false } }, true).expect(201);

    const operator = await vault.createUser(['operator']);
    const asOperator = actingAs(vault, operator);
    const checkout = await asOperator.post('/v1/checkouts', { accountId: account.body.id, justification: 'bench/gateway' }, true).expect(201);
    const extra = CIPHER ? ['-c', CIPHER] : [];

    // the gateway: a ticket bound to a fresh key
    const gatewayKey = await client.newKey();
    const connect = await asOperator.post(`/v1/checkouts/${checkout.body.id}/connect`, { publicKey: gatewayKey.publicKey }, true).expect(201);
    const gateway: SshEndpoint = { host: connect.body.gateway.host, port: connect.body.gateway.port, knownHostsLine: connect.body.gateway.knownHostsLine };
    masters.gateway = await client.master({ endpoint: gateway, user: connect.body.sshUser, key: gatewayKey, extra });

    // direct: the same account with a key of its own (sshd reads <dir>/authorized_keys/<user>)
    const directKey = await client.newKey();
    writeFileSync(join(sshd.dir, 'authorized_keys', username), `${directKey.publicKey}\n`, { mode: 0o644 });
    masters.direct = await client.master({ endpoint: { host: sshd.host, port: sshd.port, knownHostsLine: sshdKnownHostsLine(sshd) }, user: username, key: directKey, extra });

    for (const m of Object.values(masters)) {
      const who = await m.exec('whoami');
      if (who.code !== 0 || who.stdout.trim() !== username) throw new Error(`expected to be ${username}, got ${JSON.stringify(who)}`);
    }
    return { vault, sshd, client, masters: masters as Record<Mode, SshMaster>, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/**
 * One upload of `file` over `master`, checked by sha256 on the target: seconds, the CPU seconds of this process (the
 * vault's), and the whole machine's (ssh client, sshd, cat and the vault together).
 */
async function upload(master: SshMaster, file: string, sha256: string): Promise<{ seconds: number; cpu: number; machine: number }> {
  const start = nowMs();
  const cpu0 = process.cpuUsage();
  const busy0 = machineBusySeconds();
  const put = await master.exec('cat > bench.bin', { input: { file }, timeoutMs: 600_000 });
  const seconds = (nowMs() - start) / 1000;
  const used = process.cpuUsage(cpu0);
  const machine = machineBusySeconds() - busy0;
  if (put.code !== 0) throw new Error(`upload failed (exit ${put.code ?? put.signal}): ${put.stderr.trim()}`);
  const sum = await master.exec('sha256sum bench.bin && rm -f bench.bin');
  if (sum.code !== 0 || sum.stdout.split(/\s+/)[0] !== sha256) throw new Error(`the file on the target differs: ${sum.stdout.trim()} ${sum.stderr.trim()} (expected ${sha256})`);
  return { seconds, cpu: (used.user + used.system) / 1e6, machine };
}

async function roundTrip(master: SshMaster): Promise<number> {
  const start = nowMs();
  const r = await master.exec('true');
  const ms = nowMs() - start;
  if (r.code !== 0) throw new Error(`true exited ${r.code ?? r.signal}: ${r.stderr.trim()}`);
  return ms;
}

async function main(): Promise<void> {
  const s = await setUp();
  const scratch = mkdtempSync(join(tmpdir(), 'bench-gateway-'));
  try {
    const file = join(scratch, 'payload.bin');
    const bytes = MB * 1024 * 1024;
    writeFileSync(file, randomBytes(bytes));
    const sha256 = createHash('sha256').update(readFileSync(file)).digest('hex');
    const modes: Mode[] = ['direct', 'gateway'];

    const seconds: Record<Mode, number[]> = { direct: [], gateway: [] };
    const cpu: Record<Mode, number[]> = { direct: [], gateway: [] };
    const machine: Record<Mode, number[]> = { direct: [], gateway: [] };
    await upload(s.masters.gateway, file, sha256); // warm-up (and the first proof that the bytes arrive intact)
    for (let round = 0; round < ROUNDS; round++) {
      for (const mode of round % 2 ? [...modes].reverse() : modes) {
        const { seconds: t, cpu: c, machine: m } = await upload(s.masters[mode], file, sha256);
        seconds[mode].push(t);
        cpu[mode].push(c);
        machine[mode].push(m);
        log(`transfer round ${round + 1} ${mode}: ${MB} MB in ${t.toFixed(2)} s (${(MB / t).toFixed(1)} MB/s), vault process CPU ${c.toFixed(2)} s, machine ${m.toFixed(2)} s`);
      }
    }

    const latency: Record<Mode, number[]> = { direct: [], gateway: [] };
    for (const mode of modes) for (let i = 0; i < 20; i++) await roundTrip(s.masters[mode]); // warm-up
    for (let done = 0, block = 0; done < N; block++) {
      const size = Math.min(BLOCK, N - done);
      for (const mode of block % 2 ? [...modes].reverse() : modes) for (let i = 0; i < size; i++) latency[mode].push(await roundTrip(s.masters[mode]));
      done += size;
      if (block % 4 === 3 || done === N) log(`round trips: ${done}/${N} each way`);
    }

    const [{ recorded }] = await s.vault.db.query<{ recorded: number }>('SELECT count(*)::int AS recorded FROM gateway_sessions');
    process.stdout.write(report(seconds, cpu, machine, latency, recorded));
  } finally {
    rmSync(scratch, { recursive: true, force: true });
    await s.close();
  }
}

function report(seconds: Record<Mode, number[]>, cpu: Record<Mode, number[]>, machine: Record<Mode, number[]>, latency: Record<Mode, number[]>, sessions: number): string {
  const rate = (m: Mode) => MB / median(seconds[m]);
  // each round's pair ran back to back: the median of their ratios is the least disturbed by a busy machine
  const ratio = median(seconds.direct.map((d, i) => d / seconds.gateway[i]));
  const sorted = (m: Mode) => [...latency[m]].sort((a, b) => a - b);
  const [d, g] = [sorted('direct'), sorted('gateway')];
  const added = pct(g, 0.5) - pct(d, 0.5);
  const f = (x: number) => x.toFixed(2).padStart(8);
  return [
    '',
    `bench/gateway: ${MB} MB upload × ${ROUNDS} rounds, ${N} round trips each way over one ControlMaster connection${CIPHER ? `, cipher ${CIPHER}` : ''}${NODELAY ? ' — WHAT-IF: TCP_NODELAY on the gateway\'s sockets' : ''}`,
    '',
    `transfer (median round)   direct ${rate('direct').toFixed(1).padStart(6)} MB/s   gateway ${rate('gateway').toFixed(1).padStart(6)} MB/s   gateway/direct ${ratio.toFixed(2)}× (median of the rounds' ratios)`,
    `  rounds (s): direct ${seconds.direct.map((x) => x.toFixed(2)).join(' ')}; gateway ${seconds.gateway.map((x) => x.toFixed(2)).join(' ')}`,
    `  the vault process's CPU per upload (median): gateway ${median(cpu.gateway).toFixed(2)} s (${((median(cpu.gateway) / MB) * 1000).toFixed(1)} ms/MB), direct ${median(cpu.direct).toFixed(2)} s (this process's own share of a direct round)`,
    `  the whole machine's CPU per upload (median; ${cpus().length} cores, /proc/stat): direct ${median(machine.direct).toFixed(2)} s (${((median(machine.direct) / MB) * 1000).toFixed(1)} ms/MB), gateway ${median(machine.gateway).toFixed(2)} s (${((median(machine.gateway) / MB) * 1000).toFixed(1)} ms/MB); busy while uploading: direct ${((100 * median(machine.direct)) / median(seconds.direct)).toFixed(0)}%, gateway ${((100 * median(machine.gateway)) / median(seconds.gateway)).toFixed(0)}%`,
    '',
    'round trip (ms)       p50      p90      p99      max',
    `  direct        ${f(pct(d, 0.5))} ${f(pct(d, 0.9))} ${f(pct(d, 0.99))} ${f(d[d.length - 1])}`,
    `  gateway       ${f(pct(g, 0.5))} ${f(pct(g, 0.9))} ${f(pct(g, 0.99))} ${f(g[g.length - 1])}`,
    `  added p50 ${added.toFixed(2)} ms, p99 ${(pct(g, 0.99) - pct(d, 0.99)).toFixed(2)} ms`,
    '',
    `aims: transfer ≥ 0.7× direct: ${ratio.toFixed(2)}× ${ratio >= 0.7 ? 'met' : 'NOT met'}`,
    `      added p50 per round trip ≤ 2 ms: ${added.toFixed(2)} ms ${added <= 2 ? 'met' : 'NOT met'}`,
    `(${sessions} gateway session(s) recorded; every exec a channel of one recorded session; process maxRSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB)`,
    '',
  ].join('\n');
}

runMain(module, main);

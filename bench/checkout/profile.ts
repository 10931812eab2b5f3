/**
 * bench/checkout/profile: where the time of one checkout + check-in cycle goes inside the vault (companion of run.ts).
 *
 *   npx ts-node --transpile-only bench/checkout/profile.ts [--n 200] [--c 1,16]
 *   [--cpuprof /tmp/checkout.cpuprofile]: a V8 CPU profile of the measured cycles only (open in Chrome DevTools)
 *   [--floor]: also the HTTP floor of the vault at each concurrency: GET /health/live (no database) and GET /v1/me
 *   (bearer token check: one query), requests/s and this process's CPU ms per request
 *   [--stub terminate,mfa]: what-if runs, in this process only: `terminate` makes the check-in's session termination on
 *   the target a no-op, `mfa` makes the MFA guard's verification a no-op (the code is still sent, never checked)
 *
 * Wraps the services a cycle passes through (prototype methods, timed wall-clock, nested phases overlap) and every
 * pg query, runs the same cycles as run.ts, and prints per-cycle counts and mean milliseconds of each phase, the
 * process's CPU use and the machine's CPU use over the run.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { AuditSealer } from '../../src/audit/audit-sealer.service';
import { CheckoutLifecycleService } from '../../src/checkouts/checkout-lifecycle.service';
import { UnitOfWork } from '../../src/database/unit-of-work';
import { CheckoutsService } from '../../src/checkouts/checkouts.service';
import { PostgresConnector } from '../../src/connectors/postgres/postgres.connector';
import { IdentityService } from '../../src/identity/identity.service';
import { MfaService } from '../../src/identity/mfa.service';
import { ThrottleService } from '../../src/identity/throttle.service';
import { TotpService } from '../../src/identity/totp.service';
import { add, clusterCpu, inspectorPost, phases, wrap, wrapPg } from '../profile-kit';
import { pct, startBenchVault, vaultLevel } from './run';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const N = Number(arg('n', '200'));
const CONCURRENCY = arg('c', '1,16').split(',').map(Number);
const CPUPROF = arg('cpuprof', '');
const STUB = arg('stub', '').split(',').filter(Boolean);
const FLOOR = process.argv.includes('--floor');
/** --trace: prints every SQL statement (in order) of one cycle at c=1 after the warm-up, then goes on. */
const TRACE = process.argv.includes('--trace');
let trace: string[] | null = null;

/** `n` GETs of `path` from `c` keep-alive workers: requests/s and CPU ms of this process per request. */
async function getLoop(port: number, path: string, auth: string, c: number, n: number): Promise<{ rps: number; cpuMsPerReq: number }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: c });
  const get = () =>
    new Promise<void>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path, agent, headers: { Authorization: auth } }, (res) => {
          res.resume();
          res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`GET ${path} → ${res.statusCode}`))));
        })
        .on('error', reject);
    });
  let started = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: c }, async () => {
    while (started < n) {
      started++;
      await get();
    }
  }));
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  agent.destroy();
  return { rps: n / seconds, cpuMsPerReq: (cpu.user + cpu.system) / 1000 / n };
}

const machineCpu = () => {
  const [, ...f] = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/);
  const n = f.map(Number);
  return { idle: n[3] + n[4], total: n.reduce((a, b) => a + b, 0) };
};

async function main(): Promise<void> {
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const bench = await startBenchVault(Math.max(...CONCURRENCY), 128, log);
  try {
    const [{ pid }] = await bench.vault.db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const vaultPm = Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
    wrap(IdentityService.prototype, 'authenticate', 'bearer: IdentityService.authenticate');
    wrap(MfaService.prototype, 'verify', 'MFA guard: MfaService.verify');
    wrap(TotpService.prototype, 'matchStep', '  MFA: TotpService.matchStep (otplib)');
    wrap(CheckoutsService.prototype, 'request', 'handler: CheckoutsService.request');
    wrap(CheckoutLifecycleService.prototype, 'checkin', 'handler: CheckoutLifecycleService.checkin');
    wrap(PostgresConnector.prototype, 'terminateSessions', '  checkin: PostgresConnector.terminateSessions (target)');
    wrap(MfaService.prototype, 'stepUp', 'MFA step-up + action: MfaService.stepUp');
    wrap(ThrottleService.prototype, 'reserve', '  MFA: ThrottleService.reserve');
    wrap(UnitOfWork.prototype, 'run', 'UnitOfWork.run (BEGIN..COMMIT)');
    wrap(AuditSealer.prototype, 'sealPending', 'background: AuditSealer.sealPending');
    wrapPg({ onQuery: (text) => trace?.push(`  ${text.slice(0, 110)}`) });
    if (STUB.includes('terminate')) (PostgresConnector.prototype as unknown as Record<string, unknown>).terminateSessions = async () => undefined;
    if (STUB.includes('mfa')) (MfaService.prototype as unknown as Record<string, unknown>).verify = async () => undefined;
    if (STUB.length) log(`STUBBED (what-if, not the real vault): ${STUB.join(', ')}`);
    const server = bench.vault.app.getHttpServer() as import('node:http').Server;
    server.prependListener('request', (req, res) => {
      const t0 = performance.now();
      const route = `HTTP ${req.method} ${String(req.url).replace(/[0-9a-f-]{36}/, ':id')}`;
      res.on('finish', () => add(route, performance.now() - t0));
    });

    await vaultLevel(bench.vault, bench.port, bench.book, bench.accounts, Math.min(4, Math.max(...CONCURRENCY)), 50); // warm-up
    if (TRACE) {
      trace = [];
      await vaultLevel(bench.vault, bench.port, bench.book, bench.accounts, 1, 1);
      await new Promise((r) => setTimeout(r, 500)); // the sealer's pass after the cycle
      process.stdout.write(`one cycle at c=1: ${trace.length} statements (the target's included)\n${trace.join('\n')}\n`);
      trace = null;
    }
    if (FLOOR) {
      const auth = bench.book.anyAuth();
      for (const c of CONCURRENCY) {
        for (const path of ['/health/live', '/v1/me']) {
          await getLoop(bench.port, path, auth, c, 200);
          const r = await getLoop(bench.port, path, auth, c, 4 * N);
          process.stdout.write(`floor c=${c} GET ${path}: ${r.rps.toFixed(0)} req/s, ${r.cpuMsPerReq.toFixed(2)} ms CPU of this process per request\n`);
        }
      }
    }
    for (const c of CONCURRENCY) {
      phases.clear();
      if (CPUPROF) {
        await inspectorPost('Profiler.enable');
        await inspectorPost('Profiler.setSamplingInterval', { interval: 200 });
        await inspectorPost('Profiler.start');
      }
      const m0 = machineCpu();
      const v0 = clusterCpu(vaultPm);
      const t0 = clusterCpu(bench.targetPid);
      const r = await vaultLevel(bench.vault, bench.port, bench.book, bench.accounts, c, N);
      const m1 = machineCpu();
      const vaultPgMs = ((clusterCpu(vaultPm) - v0) * 1000) / N;
      const targetPgMs = ((clusterCpu(bench.targetPid) - t0) * 1000) / N;
      const nodeMs = (r.cpuPct / 100) * r.seconds * 1000 / N;
      if (CPUPROF) {
        const { profile } = (await inspectorPost('Profiler.stop')) as { profile: object };
        const file = CONCURRENCY.length > 1 ? CPUPROF.replace(/(\.cpuprofile)?$/, `.c${c}.cpuprofile`) : CPUPROF;
        writeFileSync(file, JSON.stringify(profile));
        log(`CPU profile of c=${c}: ${file}`);
      }
      const busy = 100 * (1 - (m1.idle - m0.idle) / (m1.total - m0.total));
      const lines = [...phases.entries()]
        .sort((a, b) => b[1].ms - a[1].ms)
        .map(([k, p]) => `${(p.count / N).toFixed(2).padStart(6)}/cycle ${(p.ms / p.count).toFixed(2).padStart(8)} ms mean ${(p.ms / N).toFixed(2).padStart(8)} ms/cycle  ${k}`);
      process.stdout.write(
        [
          `c=${c}: ${r.cyclesPerSec.toFixed(1)} cycles/s, cycle p50 ${pct(r.cycle, 0.5).toFixed(1)} ms p99 ${pct(r.cycle, 0.99).toFixed(1)} ms; ` +
            `checkout p50 ${pct(r.checkout, 0.5).toFixed(1)} ms, checkin p50 ${pct(r.checkin, 0.5).toFixed(1)} ms; node CPU ${r.cpuPct.toFixed(0)}%, machine CPU busy ${busy.toFixed(0)}% (2 cores)\n` +
            `  CPU per cycle: node (vault + client) ${nodeMs.toFixed(1)} ms, vault's PostgreSQL ${vaultPgMs.toFixed(1)} ms, target PostgreSQL ${targetPgMs.toFixed(1)} ms ` +
            `(machine: ${((busy / 100) * 2 * r.seconds * 1000 / N).toFixed(1)} ms of 2 cores' time per cycle, everything included)`,
          '  calls       mean          total/cycle  phase (wall time; phases nest and overlap under concurrency)',
          ...lines,
          '',
        ].join('\n'),
      );
    }
  } finally {
    await bench.close();
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`profile failed: ${(e as Error).stack}\n`);
    process.exit(1);
  },
);

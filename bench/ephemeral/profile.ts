/**
 * bench/ephemeral/profile: where a one-time account cycle's time and statements go inside the vault (companion of run.ts).
 *
 *   npx ts-node --transpile-only bench/ephemeral/profile.ts [--n 100] [--c 1,4] [--access db+role|role|none]
 *   [--cpuprof /tmp/ephemeral.cpuprofile]: a V8 CPU profile of the measured cycles only (open in Chrome DevTools)
 *
 * Runs run.ts's vault cycles (request → approve → claim → revoke) with the services they pass through wrapped (prototype
 * methods, wall time; nested phases overlap) and every pg statement counted and timed by where it went — the TARGET
 * (the connector's admin connections) or the VAULT's own database — plus new connections opened to each. Prints, per
 * cycle: calls and mean ms of each phase and statement, and the CPU of this process (vault + client), the vault's
 * PostgreSQL and the target's PostgreSQL.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { UnitOfWork } from '../../src/database/unit-of-work';
import { PostgresConnector } from '../../src/connectors/postgres/postgres.connector';
import { EphemeralProvisioner } from '../../src/ephemeral/ephemeral-provisioner.service';
import { EphemeralService } from '../../src/ephemeral/ephemeral.service';
import { IdentityService } from '../../src/identity/identity.service';
import { MfaService } from '../../src/identity/mfa.service';
import { startScramPostgres } from '../../test/support/targets/postgres';
import { arg, runMain } from '../cli';
import { add, clusterCpu, inspectorPost, phases, wrap, wrapPg } from '../profile-kit';
import { machineBusySeconds } from '../machine';
import { setUp, vaultLevel, VaultSide } from './run';

const N = Number(arg('n', '100'));
const CONCURRENCY = arg('c', '1,4').split(',').map(Number);
const CPUPROF = arg('cpuprof', '');

async function main(): Promise<void> {
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const pg = await startScramPostgres({ durable: true, tls: true });
  let side: VaultSide | undefined;
  try {
    const admin = await pg.leastPrivilegeAdmin();
    side = await setUp(pg, admin, log);
    const [{ pid }] = await side.vault.db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const vaultPm = Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
    wrap(IdentityService.prototype, 'authenticate', 'bearer: IdentityService.authenticate');
    wrap(MfaService.prototype, 'verify', 'MFA guard: MfaService.verify');
    wrap(EphemeralService.prototype, 'request', 'handler: EphemeralService.request');
    wrap(EphemeralService.prototype, 'approve', 'handler: EphemeralService.approve');
    wrap(EphemeralProvisioner.prototype, 'claim', 'handler: EphemeralProvisioner.claim');
    wrap(EphemeralProvisioner.prototype, 'checkTargetStillAllows', '  claim: checkTargetStillAllows (inspectAccess)');
    wrap(EphemeralProvisioner.prototype, 'revoke', 'handler: EphemeralProvisioner.revoke');
    wrap(EphemeralProvisioner.prototype, 'removeClaimed', '  revoke: removeClaimed (deleteUser + settle)');
    wrap(PostgresConnector.prototype, 'inspectAccess', '  target: PostgresConnector.inspectAccess');
    wrap(PostgresConnector.prototype, 'newUser', '  target: PostgresConnector.newUser');
    wrap(PostgresConnector.prototype, 'deleteUser', '  target: PostgresConnector.deleteUser');
    for (const m of ['checkAccess', 'restoreDefaultAcls', 'inDatabase', 'awaitBackendsGone', 'endSessions']) {
      wrap(PostgresConnector.prototype, m, `    connector: ${m}`);
    }
    wrap(UnitOfWork.prototype, 'run', 'UnitOfWork.run (BEGIN..COMMIT)');
    wrapPg({ where: (c) => ((c as { port?: number }).port === pg.port ? 'TARGET' : 'vault '), width: 70 });
    const server = side.vault.app.getHttpServer() as import('node:http').Server;
    server.prependListener('request', (req, res) => {
      const t0 = performance.now();
      const route = `HTTP ${req.method} ${String(req.url).replace(/[0-9a-f-]{36}/, ':id')}`;
      res.on('finish', () => add(route, performance.now() - t0));
    });
    await vaultLevel(side, Math.min(4, Math.max(...CONCURRENCY)), 10); // warm-up
    for (const c of CONCURRENCY) {
      phases.clear();
      if (CPUPROF) {
        await inspectorPost('Profiler.enable');
        await inspectorPost('Profiler.setSamplingInterval', { interval: 200 });
        await inspectorPost('Profiler.start');
      }
      const m0 = machineBusySeconds();
      const n0 = process.cpuUsage();
      const v0 = clusterCpu(vaultPm);
      const t0 = clusterCpu(pg.pid);
      const r = await vaultLevel(side, c, N);
      const perCycle = (s: number) => ((s * 1000) / N).toFixed(1);
      const node = process.cpuUsage(n0);
      const cpu = {
        machine: perCycle(machineBusySeconds() - m0),
        node: perCycle((node.user + node.system) / 1e6),
        vaultPg: perCycle(clusterCpu(vaultPm) - v0),
        targetPg: perCycle(clusterCpu(pg.pid) - t0),
      };
      if (CPUPROF) {
        const { profile } = (await inspectorPost('Profiler.stop')) as { profile: object };
        const file = CONCURRENCY.length > 1 ? CPUPROF.replace(/(\.cpuprofile)?$/, `.c${c}.cpuprofile`) : CPUPROF;
        writeFileSync(file, JSON.stringify(profile));
        log(`CPU profile of c=${c}: ${file}`);
      }
      const count = (prefix: string) => [...phases.entries()].filter(([k]) => k.startsWith(prefix)).reduce((n, [, p]) => n + p.count, 0) / N;
      const lines = [...phases.entries()]
        .sort((a, b) => b[1].ms - a[1].ms)
        .map(([k, p]) => `${(p.count / N).toFixed(2).padStart(6)}/cycle ${(p.ms / p.count).toFixed(2).padStart(8)} ms mean ${(p.ms / N).toFixed(2).padStart(8)} ms/cycle  ${k}`);
      process.stdout.write(
        [
          `c=${c}: ${(N / r.seconds).toFixed(1)} cycles/s; CPU ms per cycle: machine ${cpu.machine}, node (vault + client) ${cpu.node}, vault's PostgreSQL ${cpu.vaultPg}, target PostgreSQL ${cpu.targetPg}`,
          `  statements per cycle: target ${count('TARGET sql').toFixed(1)}, vault ${count('vault  sql').toFixed(1)}; new connections per cycle: target ${count('TARGET new').toFixed(2)}, vault ${count('vault  new').toFixed(2)}`,
          '  calls       mean          total/cycle  phase (wall time; phases nest and overlap under concurrency)',
          ...lines,
          '',
        ].join('\n'),
      );
    }
  } finally {
    await side?.vault.close().catch(() => undefined);
    await pg.stop().catch(() => undefined);
  }
}

runMain(module, main);

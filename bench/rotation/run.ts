/**
 * bench/rotation: rotations through the vault beside a raw script doing the same target work, in one run.
 *
 *   npx ts-node --transpile-only bench/rotation/run.ts [--pg 1000] [--ssh 200] [--c 1,4,16]
 *
 * PostgreSQL: N roles on a scram-sha-256 cluster with durable commits (fsync on, like the vault's database). Raw: per role, an admin connection runs ALTER ROLE with a
 * SCRAM verifier computed client-side, then a login as the role. Vault: RotationService.request → write-ahead
 * row, the connector's ALTER ROLE, the login check, the commit and its audit events, on the vault's own
 * PostgreSQL (127.0.0.1:5432). SSH: the same with chpasswd over ssh2 against a local sshd (PAM off), root by key on both
 * sides. The raw SSH script opens an admin connection per rotation (what the aim is measured against) and, as a second
 * baseline, runs on one admin connection per worker kept open (what the vault's pooled connection does).
 * Prints seconds per 1000 rotations and vault/raw for each concurrency; for SSH also the CPU per rotation of this
 * process (the bench client, or the in-process vault) and of the sshd tree (the listener and every process below it,
 * reaped ones included), since wall time on a shared machine says little. The vault's own PostgreSQL is not counted.
 * Every SSH command runs through the admin's login shell (`bash -c`, which reads ~/.bashrc when sshd starts it): where
 * root's .bashrc is heavy (the test machine's runs `pyenv init`, ≈ 1 s of CPU), commands, not handshakes, dominate —
 * which is why the vault's one extra command per rotation (`id -u`, now read once per pooled connection) cost 1.3–1.4×.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { Client as PgClient } from 'pg';
import { Client as SshClient } from 'ssh2';
import { scramSha256Verifier } from '../../src/connectors/postgres/scram';
import { RotationService } from '../../src/rotation/rotation.service';
import { startScramPostgres } from '../../test/support/targets/postgres';
import { startSshd } from '../../test/support/targets/sshd';
import { startTestVault } from '../../test/support/vault';
import { arg } from '../cli';
import { actingAs } from '../../test/support/http';

const PG_N = Number(arg('pg', '1000'));
const SSH_N = Number(arg('ssh', '200'));
const CONCURRENCY = arg('c', '1,4,16').split(',').map(Number);

async function pool<T>(items: T[], c: number, work: (item: T) => Promise<void>): Promise<number> {
  const start = process.hrtime.bigint();
  let next = 0;
  await Promise.all(
    Array.from({ length: c }, async () => {
      while (next < items.length) await work(items[next++]);
    }),
  );
  return Number(process.hrtime.bigint() - start) / 1e9;
}

const BENCH_ACTOR = { id: 'bench', kind: 'service' as const, name: 'bench', roles: ['scheduler' as const], mfaEnrolled: false };
const pw = () => `Bench-${randomBytes(12).toString('hex')}`;

async function sshExec(conn: SshClient, cmd: string, stdin: string): Promise<void> {
  await new Promise<void>((resolve, reject) =>
    conn.exec(cmd, (err, stream) => {
      if (err) return reject(err);
      stream.on('close', (code: number) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited ${code}`))));
      stream.on('data', () => undefined);
      stream.stderr.on('data', () => undefined);
      stream.end(stdin);
    }),
  );
}

async function sshConnect(opts: Record<string, unknown>): Promise<SshClient> {
  const c = new SshClient();
  await new Promise<void>((resolve, reject) => c.on('ready', () => resolve()).on('error', reject).connect({ ...opts, hostVerifier: () => true }));
  return c;
}

/** CPU seconds (user + system) of `root` and every process below it, reaped children included (cutime/cstime). */
function treeCpuSeconds(root: number): number {
  const stats = new Map<number, { ppid: number; ticks: number }>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // after the comm, counting from the state as 0: ppid 1, utime 11, stime 12, cutime 13, cstime 14
      stats.set(Number(entry), { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) });
    } catch {
      // exited meanwhile: its parent has reaped it (or will), cutime counts it then
    }
  }
  let ticks = 0;
  const queue = [root];
  while (queue.length) {
    const pid = queue.shift()!;
    ticks += stats.get(pid)?.ticks ?? 0;
    for (const [child, s] of stats) if (s.ppid === pid) queue.push(child);
  }
  return ticks / 100; // USER_HZ
}

interface Run {
  s: number;
  /** CPU seconds of this process and of the sshd tree during the run. */
  own: number;
  sshd: number;
}

async function measured(sshdPid: number, run: () => Promise<number>): Promise<Run> {
  const cpu0 = process.cpuUsage();
  const t0 = treeCpuSeconds(sshdPid);
  const s = await run();
  const cpu = process.cpuUsage(cpu0);
  return { s, own: (cpu.user + cpu.system) / 1e6, sshd: treeCpuSeconds(sshdPid) - t0 };
}

async function main(): Promise<void> {
  const rows: string[] = [];
  const sshRows: string[] = [];
  const vault = await startTestVault({ env: { VAULT_ROTATION_SWEEP_MS: '3600000', VAULT_AUDIT_SEAL_INTERVAL_MS: '1000' } });
  const rotation = vault.get(RotationService);
  // as the admin, with a fresh step-up code on every change (registering targets and accounts needs one)
  const admin = actingAs(vault, await vault.admin());
  const api = (path: string, body: object) => admin.post(path, body, true);

  // --- PostgreSQL
  if (PG_N > 0) {
    // TLS (the vault's default for PostgreSQL) and the least-privilege admin the README recommends, on both sides
    const pg = await startScramPostgres({ durable: true, tls: true });
    const pgAdmin = await pg.leastPrivilegeAdmin();
    const ssl = { ca: pg.tls!.caPem, servername: undefined };
    const target = (await api('/v1/targets', { name: 'bench-pg', type: 'postgres', host: pg.host, port: pg.port, admin: { username: pgAdmin.username, password: pgAdmin.password }, options: { database: pg.database, tlsCa: pg.tls!.caPem } }).expect(201)).body;
    const roles: Array<{ name: string; id?: string }> = [];
    for (let i = 0; i < PG_N; i++) {
      const name = `b_${i}`;
      const p = pw();
      await pg.createRole(name, p);
      roles.push({ name, id: (await api('/v1/accounts', { targetId: target.id, username: name, password: p }).expect(201)).body.id });
    }
    for (const c of CONCURRENCY) {
      const raw = await pool(roles, c, async (r) => {
        const p = pw();
        const admin = new PgClient({ host: pg.host, port: pg.port, user: pgAdmin.username, password: pgAdmin.password, database: pg.database, ssl });
        await admin.connect();
        await admin.query(`ALTER ROLE ${admin.escapeIdentifier(r.name)} WITH PASSWORD ${admin.escapeLiteral(scramSha256Verifier(p))}`);
        await admin.end();
        const login = new PgClient({ host: pg.host, port: pg.port, user: r.name, password: p, database: pg.database, ssl });
        await login.connect();
        await login.query('SELECT 1');
        await login.end();
      });
      const viaVault = await pool(roles, c, async (r) => {
        await rotation.request(BENCH_ACTOR, r.id!, { wait: true });
      });
      rows.push(row('postgres', PG_N, c, raw, viaVault));
      process.stderr.write(rows[rows.length - 1] + '\n');
    }
    const [{ failed }] = await vault.db.query<{ failed: number }>("SELECT count(*)::int AS failed FROM rotations WHERE status <> 'succeeded'");
    if (failed) throw new Error(`${failed} vault rotations did not succeed`);
    await pg.stop();
  }

  // --- SSH
  if (SSH_N > 0) {
    const sshd = await startSshd({ usePam: false });
    const target = (await api('/v1/targets', { name: 'bench-ssh', type: 'ssh', host: sshd.host, port: sshd.port, admin: { username: 'root', privateKey: sshd.adminPrivateKey }, options: { hostKeySha256: sshd.hostKeySha256 } }).expect(201)).body;
    const users: Array<{ name: string; id?: string }> = [];
    for (let i = 0; i < SSH_N; i++) {
      const name = `bs_${i}_${randomBytes(2).toString('hex')}`;
      const p = pw();
      await sshd.createUser(name, p);
      users.push({ name, id: (await api('/v1/accounts', { targetId: target.id, username: name, password: p }).expect(201)).body.id });
    }
    const rawRotation = async (admin: SshClient, u: { name: string }) => {
      const p = pw();
      await sshExec(admin, `id -u -- '${u.name}'`, '');
      await sshExec(admin, 'chpasswd', `${u.name}:${p}\n`);
      const login = await sshConnect({ host: sshd.host, port: sshd.port, username: u.name, password: p });
      login.end();
    };
    const adminConnect = () => sshConnect({ host: sshd.host, port: sshd.port, username: 'root', privateKey: sshd.adminPrivateKey });
    for (const c of CONCURRENCY) {
      // a new admin connection per rotation (as the vault did before its pool)
      const raw = await measured(sshd.pid, () => pool(users, c, async (u) => {
        const admin = await adminConnect();
        await rawRotation(admin, u);
        admin.end();
      }));
      // one admin connection per worker, kept open
      const admins = await Promise.all(Array.from({ length: c }, adminConnect));
      let worker = 0;
      const kept = await measured(sshd.pid, () => pool(users, c, async (u) => rawRotation(admins[worker++ % c], u)));
      for (const a of admins) a.end();
      const viaVault = await measured(sshd.pid, () => pool(users, c, async (u) => {
        await rotation.request(BENCH_ACTOR, u.id!, { wait: true });
      }));
      rows.push(row('ssh', SSH_N, c, raw.s, viaVault.s));
      sshRows.push(sshRow(SSH_N, c, raw, kept, viaVault));
      process.stderr.write(rows[rows.length - 1] + '\n' + sshRows[sshRows.length - 1] + '\n');
    }
    await sshd.stop();
  }

  await vault.close();
  process.stdout.write(['target    n     c   raw s/1000   vault s/1000   vault/raw', ...rows].join('\n') + '\n');
  if (sshRows.length) {
    process.stdout.write(
      [
        '',
        'SSH, CPU ms per rotation (this process + the sshd tree); raw = a new admin connection per rotation (the aim: vault <= 1.1x it), kept = one admin connection per worker',
        'c     raw own+sshd    kept own+sshd   vault own+sshd   vault/raw CPU   vault/kept CPU   wall vault/raw   wall vault/kept',
        ...sshRows,
      ].join('\n') + '\n',
    );
  }
}

function sshRow(n: number, c: number, raw: Run, kept: Run, vault: Run): string {
  const ms = (r: Run) => `${((r.own / n) * 1000).toFixed(1)}+${((r.sshd / n) * 1000).toFixed(1)}`.padEnd(16);
  const total = (r: Run) => r.own + r.sshd;
  return `${String(c).padEnd(5)} ${ms(raw)} ${ms(kept)} ${ms(vault)} ${(total(vault) / total(raw)).toFixed(2).padEnd(15)} ${(total(vault) / total(kept)).toFixed(2).padEnd(16)} ${(vault.s / raw.s).toFixed(2).padEnd(16)} ${(vault.s / kept.s).toFixed(2)}`;
}

function row(type: string, n: number, c: number, raw: number, viaVault: number): string {
  const per = (s: number) => ((s / n) * 1000).toFixed(1).padStart(10);
  return `${type.padEnd(9)} ${String(n).padEnd(5)} ${String(c).padEnd(3)} ${per(raw)}   ${per(viaVault)}     ${(viaVault / raw).toFixed(2)}`;
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`bench failed: ${(e as Error).stack}\n`);
    process.exit(1);
  },
);

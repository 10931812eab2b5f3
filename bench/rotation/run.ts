/**
 * bench/rotation: rotations through the vault beside a raw script doing the same target work, in one run.
 *
 *   npx ts-node --transpile-only bench/rotation/run.ts [--pg 1000] [--ssh 200] [--c 1,4,16]
 *
 * PostgreSQL: N roles on a scram-sha-256 cluster with durable commits (fsync on, like the vault's database). Raw: per role, an admin connection runs ALTER ROLE with a
 * SCRAM verifier computed client-side, then a login as the role. Vault: RotationService.request → write-ahead
 * row, the connector's ALTER ROLE, the login check, the commit and its audit events, on the vault's own
 * PostgreSQL (127.0.0.1:5432). SSH: the same with chpasswd over ssh2 against a local sshd (PAM off).
 * Prints seconds per 1000 rotations and vault/raw for each concurrency.
 */
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

async function main(): Promise<void> {
  const rows: string[] = [];
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
    for (const c of CONCURRENCY) {
      const raw = await pool(users, c, async (u) => {
        const p = pw();
        const admin = await sshConnect({ host: sshd.host, port: sshd.port, username: 'root', privateKey: sshd.adminPrivateKey });
        await sshExec(admin, `id -u -- '${u.name}'`, '');
        await sshExec(admin, 'chpasswd', `${u.name}:${p}\n`);
        admin.end();
        const login = await sshConnect({ host: sshd.host, port: sshd.port, username: u.name, password: p });
        login.end();
      });
      const viaVault = await pool(users, c, async (u) => {
        await rotation.request(BENCH_ACTOR, u.id!, { wait: true });
      });
      rows.push(row('ssh', SSH_N, c, raw, viaVault));
      process.stderr.write(rows[rows.length - 1] + '\n');
    }
    await sshd.stop();
  }

  await vault.close();
  process.stdout.write(['target    n     c   raw s/1000   vault s/1000   vault/raw', ...rows].join('\n') + '\n');
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

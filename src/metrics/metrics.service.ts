import { Injectable } from '@nestjs/common';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { DataSource } from 'typeorm';

/** One gauge fed by two owners: checkouts and one-time account requests waiting for approvers. */
export const PENDING_APPROVALS_GAUGE = {
  name: 'vault_pending_approvals',
  help: 'Requests waiting for approvers, by kind (checkout, ephemeral: a one-time account)',
  label: 'kind',
  values: ['checkout', 'ephemeral'],
} as const;

/**
 * Prometheus metrics (prom-client). Counters are per instance; gauges that describe shared state (accounts by
 * status, e.g. `needs_attention`) are read from the database at scrape time, so every instance reports the same —
 * each by the module that owns the table, through `stateGauge` (this module names no other module's table).
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
  }

  /** Per state gauge: its readers by source (several owners may feed one gauge, each its own label values). */
  private readonly stateReaders = new Map<string, Map<string, () => Promise<Record<string, number>>>>();

  /**
   * A gauge of shared state, read from the database at scrape time by the module that owns the table (so every
   * instance reports the same and no statement here names another module's table). `read` answers a value per label
   * value; known `values` start at 0. Several owners may feed one gauge (`source` tells them apart; registering the
   * same source again replaces its reader). While the database does not answer, the gauge keeps its last values.
   */
  stateGauge<L extends string>(def: { name: string; help: string; label: L; values: readonly string[]; source?: string; read: () => Promise<Record<string, number>> }): void {
    const known = this.stateReaders.get(def.name);
    if (known) {
      known.set(def.source ?? def.name, def.read);
      return;
    }
    const readers = new Map([[def.source ?? def.name, def.read]]);
    this.stateReaders.set(def.name, readers);
    const values = new Set(def.values);
    new Gauge({
      name: def.name,
      help: def.help,
      labelNames: [def.label],
      registers: [this.registry],
      collect: whileDatabaseAnswers(async function (this: Gauge<L>) {
        const counts: Record<string, number> = {};
        for (const read of readers.values()) Object.assign(counts, await read());
        for (const value of new Set([...values, ...Object.keys(counts)])) this.set({ [def.label]: value } as Record<L, string>, counts[value] ?? 0);
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

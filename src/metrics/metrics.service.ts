import { Injectable } from '@nestjs/common';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { DataSource } from 'typeorm';

/**
 * Prometheus metrics (prom-client). Counters are per instance; gauges that describe shared state (accounts by
 * status, e.g. `needs_attention`) are read from the database at scrape time, so every instance reports the same.
 * No label ever carries a secret or a user-supplied name.
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

  constructor(dataSource: DataSource) {
    collectDefaultMetrics({ register: this.registry, prefix: 'vault_process_' });
    new Gauge({
      name: 'vault_accounts',
      help: 'Accounts by status (needs_attention: rotation kept failing, someone must look)',
      labelNames: ['status'] as const,
      registers: [this.registry],
      async collect() {
        const rows: Array<{ status: string; n: number }> = await dataSource.query('SELECT status, count(*)::int AS n FROM accounts GROUP BY status');
        this.reset();
        for (const status of ['available', 'checked_out', 'rotating', 'needs_attention']) this.set({ status }, rows.find((r) => r.status === status)?.n ?? 0);
      },
    });
    new Gauge({
      name: 'vault_checkouts',
      help: 'Checkouts that need watching: open (active, pending_approval), break-glass not yet reviewed, and cleanup that failed (sessions not ended)',
      labelNames: ['state'] as const,
      registers: [this.registry],
      async collect() {
        const [row]: Array<Record<string, number>> = await dataSource.query(
          `SELECT count(*) FILTER (WHERE status = 'active')::int AS active,
                  count(*) FILTER (WHERE status = 'pending_approval')::int AS pending_approval,
                  count(*) FILTER (WHERE break_glass AND reviewed_at IS NULL)::int AS break_glass_unreviewed,
                  count(*) FILTER (WHERE cleanup = 'failed')::int AS cleanup_failed
             FROM checkouts WHERE status IN ('active', 'pending_approval') OR (break_glass AND reviewed_at IS NULL) OR cleanup = 'failed'`,
        );
        for (const [state, n] of Object.entries(row)) this.set({ state }, n);
      },
    });
    new Gauge({
      name: 'vault_ephemeral_accounts',
      help: 'One-time accounts that exist or may exist on targets, by status (needs_attention: removal kept failing)',
      labelNames: ['status'] as const,
      registers: [this.registry],
      async collect() {
        const rows: Array<{ status: string; n: number }> = await dataSource.query(
          "SELECT status, count(*)::int AS n FROM ephemeral_accounts WHERE status IN ('creating', 'active', 'revoking', 'needs_attention') GROUP BY status",
        );
        for (const status of ['creating', 'active', 'revoking', 'needs_attention']) this.set({ status }, rows.find((r) => r.status === status)?.n ?? 0);
      },
    });
    new Gauge({
      name: 'vault_rotations_pending',
      help: 'Rotations written ahead and not settled yet (a growing number means targets are slow or instances died)',
      registers: [this.registry],
      async collect() {
        const [{ n }] = await dataSource.query("SELECT count(*)::int AS n FROM rotations WHERE status = 'pending'");
        this.set(n);
      },
    });
  }
}

import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { AuditSealer } from '../audit/audit-sealer.service';
import { CheckoutLifecycleService } from '../checkouts/checkout-lifecycle.service';
import { CheckoutNotices } from '../checkouts/checkout-notices';
import { EphemeralNotices } from '../ephemeral/ephemeral-notices';
import { EphemeralProvisioner } from '../ephemeral/ephemeral-provisioner.service';
import { HeartbeatService } from '../rotation/heartbeat.service';
import { RotationService } from '../rotation/rotation.service';
import { NotificationDeliverer } from '../notifications/deliverer';
import { IdentityService } from '../identity/identity.service';
import { OidcRecheckService } from '../identity/oidc/oidc-recheck.service';
import { APP_CONFIG, AppConfig } from '../config/config';

/**
 * Thin timers that call services. The audit sealer is also nudged after every audited commit;
 * this interval picks up anything another instance or a failed pass left behind.
 */
/** What one pass of the checkout expiry and of the one-time account reaper takes at most before it takes again. */
const BATCH = 50;
/**
 * A pass that found a full batch takes the next one at once, for up to this long (then the sweep's other steps run and
 * the next tick goes on): a storm of leases ending in the same second is worked off at the rotation concurrency, not
 * 50 per tick (bench/storm: 2,000 checkouts and 2,000 one-time accounts due at once took 270–290 s at 50 per 5 s).
 */
const DRAIN_BUDGET_MS = 60_000;

@Injectable()
export class SchedulerService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(SchedulerService.name);
  private stopping = false;

  constructor(
    private readonly registry: SchedulerRegistry,
    private readonly sealer: AuditSealer,
    private readonly rotation: RotationService,
    private readonly heartbeat: HeartbeatService,
    private readonly checkouts: CheckoutLifecycleService,
    private readonly ephemeral: EphemeralProvisioner,
    private readonly checkoutNotices: CheckoutNotices,
    private readonly ephemeralNotices: EphemeralNotices,
    private readonly notifications: NotificationDeliverer,
    private readonly identity: IdentityService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly oidcRecheck: OidcRecheckService,
  ) {}

  /** After every module is initialised: a start that fails (wrong master key) leaves no timer behind. */
  onApplicationBootstrap(): void {
    this.registry.addInterval('audit-seal', setInterval(() => this.sealer.nudge(), this.config.auditSealIntervalMs));
    this.registry.addInterval('rotation-sweep', setInterval(() => void this.sweep(), this.config.rotation.sweepMs));
    this.registry.addInterval('checkout-sweep', setInterval(() => void this.checkoutSweep(), this.config.checkout.sweepMs));
    this.registry.addInterval('ephemeral-reaper', setInterval(() => void this.reaper(), this.config.ephemeral.sweepMs));
    this.registry.addInterval('notifications', setInterval(() => void this.deliver(), this.config.notify.sweepMs));
    // single sign-on sessions: the groups at the provider are looked at again (a tick of at most a minute finds those due)
    const recheck = this.config.signIn.oidcRecheckSeconds;
    if (recheck > 0) this.registry.addInterval('oidc-recheck', setInterval(() => void this.once('oidc-recheck', () => this.oidcRecheck.sweep()), Math.min(recheck, 60) * 1000));
    void this.sweep(); // recovery at start-up: pending rotations left by a dead instance
    void this.reaper(); // and one-time accounts a dead instance may have left on a target
    void this.deliver(); // and notifications a dead instance committed but did not send
  }

  /** No new sweep starts while the services finish what is running (their beforeApplicationShutdown). */
  beforeApplicationShutdown(): void {
    this.stopping = true;
    for (const name of this.registry.getIntervals()) this.registry.deleteInterval(name);
  }

  /** Runs `pass` again while it did a full batch, within DRAIN_BUDGET_MS and until shutdown begins. */
  private async drained(pass: () => Promise<number>): Promise<void> {
    const until = Date.now() + DRAIN_BUDGET_MS;
    while ((await pass()) >= BATCH && Date.now() < until && !this.stopping);
  }

  private readonly busy = new Set<string>();

  /** Runs `work` unless the same sweep is still running on this instance; a failure is logged and retried next time. */
  private async once(name: string, work: () => Promise<unknown>): Promise<void> {
    if (this.busy.has(name)) return;
    this.busy.add(name);
    try {
      await work();
    } catch (e) {
      this.logger.warn({ sweep: name, err: { type: (e as Error)?.name } }, 'sweep failed; will retry');
    } finally {
      this.busy.delete(name);
    }
  }

  /**
   * Recovery of abandoned rotations, due rotations, the drift heartbeat, then (hourly) the purge of ended login tokens
   * and browser sessions — each on its own: one that fails is logged and never keeps the others from running.
   */
  sweep(): Promise<void> {
    return this.once('rotation', () =>
      this.steps([
        ['rotation-recovery', () => this.rotation.recoverStale()],
        ['rotation-due', () => this.rotation.rotateDue()],
        ['heartbeat', () => this.heartbeat.run()],
        ['token-purge', () => this.identity.purgeEndedTokens()],
      ]),
    );
  }

  /** Runs the steps of one sweep in order; a step that fails is logged and the next ones still run. */
  private async steps(steps: Array<readonly [string, () => Promise<unknown>]>): Promise<void> {
    for (const [step, work] of steps) {
      await work().catch((e: unknown) => this.logger.warn({ sweep: step, err: { type: (e as Error)?.name } }, 'sweep step failed; the next steps still run'));
    }
  }

  /** Notifications: delivers what the outbox holds (also nudged after every commit that wrote to it). */
  deliver(): Promise<void> {
    return this.once('notifications', () => this.notifications.sweep());
  }

  /**
   * One-time accounts: lapses unclaimed requests, removes expired accounts and abandoned intents, retries removals;
   * then reminds the vendors of accounts about to expire (VAULT_NOTIFY_EXPIRY_LEAD_SECONDS), once each.
   */
  reaper(): Promise<void> {
    return this.once('ephemeral', () =>
      this.steps([
        ['ephemeral-reaper', () => this.drained(async () => { const r = await this.ephemeral.reap(BATCH); return Math.max(r.lapsed, r.removed); })],
        ['ephemeral-reminders', () => this.ephemeralNotices.remindExpiring()],
      ]),
    );
  }

  /**
   * Ends expired checkouts (rotating their passwords) and lapsed approval requests; retries owed session cleanup;
   * reminds the holders of leases about to end (VAULT_NOTIFY_EXPIRY_LEAD_SECONDS), once each.
   */
  checkoutSweep(): Promise<void> {
    return this.once('checkout', () =>
      this.steps([
        ['checkout-expiry', () => this.drained(() => this.checkouts.expireDue(BATCH))],
        ['checkout-cleanup', () => this.checkouts.finishStale()],
        ['checkout-reminders', () => this.checkoutNotices.remindExpiring()],
      ]),
    );
  }
}

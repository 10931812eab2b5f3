import { Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { AuditSealer } from '../audit/audit-sealer.service';
import { CheckoutLifecycleService } from '../checkouts/checkout-lifecycle.service';
import { HeartbeatService } from '../rotation/heartbeat.service';
import { RotationService } from '../rotation/rotation.service';
import { APP_CONFIG, AppConfig } from '../config/config';

/**
 * Thin timers that call services. The audit sealer is also nudged after every audited commit;
 * this interval picks up anything another instance or a failed pass left behind.
 */
@Injectable()
export class SchedulerService implements OnApplicationBootstrap {
  private readonly logger = new Logger(SchedulerService.name);

  constructor(
    private readonly registry: SchedulerRegistry,
    private readonly sealer: AuditSealer,
    private readonly rotation: RotationService,
    private readonly heartbeat: HeartbeatService,
    private readonly checkouts: CheckoutLifecycleService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** After every module is initialised: a start that fails (wrong master key) leaves no timer behind. */
  onApplicationBootstrap(): void {
    this.registry.addInterval('audit-seal', setInterval(() => this.sealer.nudge(), this.config.auditSealIntervalMs));
    this.registry.addInterval('rotation-sweep', setInterval(() => void this.sweep(), this.config.rotation.sweepMs));
    this.registry.addInterval('checkout-sweep', setInterval(() => void this.checkoutSweep(), this.config.checkout.sweepMs));
    void this.sweep(); // recovery at start-up: pending rotations left by a dead instance
  }

  private checkoutSweeping = false;

  /** Ends expired checkouts (rotating their passwords) and lapsed approval requests; retries owed session cleanup. */
  async checkoutSweep(): Promise<void> {
    if (this.checkoutSweeping) return;
    this.checkoutSweeping = true;
    try {
      await this.checkouts.expireDue();
      await this.checkouts.finishStale();
    } catch (e) {
      this.logger.warn({ err: { type: (e as Error)?.name } }, 'checkout sweep failed; will retry');
    } finally {
      this.checkoutSweeping = false;
    }
  }

  private sweeping = false;

  /** Recovery of abandoned rotations, due rotations, then the drift heartbeat; one sweep at a time per instance. */
  async sweep(): Promise<void> {
    if (this.sweeping) return;
    this.sweeping = true;
    try {
      await this.rotation.recoverStale();
      await this.rotation.rotateDue();
      await this.heartbeat.run();
    } catch (e) {
      this.logger.warn({ err: { type: (e as Error)?.name } }, 'rotation sweep failed; will retry');
    } finally {
      this.sweeping = false;
    }
  }
}

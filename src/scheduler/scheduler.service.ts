import { Inject, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { AuditSealer } from '../audit/audit-sealer.service';
import { APP_CONFIG, AppConfig } from '../config/config';

/**
 * Thin timers that call services. The audit sealer is also nudged after every audited commit;
 * this interval picks up anything another instance or a failed pass left behind.
 */
@Injectable()
export class SchedulerService implements OnApplicationBootstrap {
  constructor(
    private readonly registry: SchedulerRegistry,
    private readonly sealer: AuditSealer,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** After every module is initialised: a start that fails (wrong master key) leaves no timer behind. */
  onApplicationBootstrap(): void {
    this.registry.addInterval('audit-seal', setInterval(() => this.sealer.nudge(), this.config.auditSealIntervalMs));
  }
}

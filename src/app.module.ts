import { DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER, APP_GUARD, APP_PIPE } from '@nestjs/core';
import { ScheduleModule } from '@nestjs/schedule';
import { TypeOrmModule } from '@nestjs/typeorm';
import { LoggerModule } from 'nestjs-pino';
import { DataSource } from 'typeorm';
import { AccountAdminModule } from './account-admin/account-admin.module';
import { AuditModule } from './audit/audit.module';
import { CheckoutsModule } from './checkouts/checkouts.module';
import { EphemeralModule } from './ephemeral/ephemeral.module';
import { GatewayModule } from './gateway/gateway.module';
import { LiveSessionsModule } from './live-sessions/live-sessions.module';
import { RecordingModule } from './gateway/recording/recording.module';
import { Clock } from './common/clock';
import { AllExceptionsFilter } from './http/exception.filter';
import { AuthenticationGuard, MfaGuard, RolesGuard } from './identity/guards';
import { loggerParams } from './common/logging';
import { createValidationPipe } from './common/validation';
import { APP_CONFIG, AppConfig } from './config/config';
import { ConnectorsModule } from './connectors/connectors.module';
import { CryptoModule } from './crypto/crypto.module';
import { ClaimedWorkModule } from './database/claimed-work';
import { UnitOfWorkModule } from './database/unit-of-work';
import { MetricsModule } from './metrics/metrics.module';
import { MASTER_KEY } from './crypto/keyring.service';
import { HealthController } from './health/health.controller';
import { IdentityModule } from './identity/identity.module';
import { OidcModule } from './identity/oidc/oidc.module';
import { NotificationsModule } from './notifications/notifications.module';
import { SchedulerService } from './scheduler/scheduler.service';
import { RotationModule } from './rotation/rotation.module';
import { TargetsModule } from './targets/targets.module';

export interface VaultRuntime {
  config: AppConfig;
  masterKey: Buffer;
  /** Initialised and migrated by the caller. */
  dataSource: DataSource;
  /** Tests hold time still or move it on. */
  clock?: Clock;
}

/** What every feature module runs on (global modules): the module tier's harness builds the same platform. */
export const PLATFORM_MODULES = [UnitOfWorkModule, ClaimedWorkModule, CryptoModule, ConnectorsModule, MetricsModule, AuditModule, IdentityModule, NotificationsModule];

@Module({})
export class AppModule {
  static forRoot(runtime: VaultRuntime): DynamicModule {
    return {
      module: AppModule,
      global: true,
      imports: [
        LoggerModule.forRoot(loggerParams(runtime.config)),
        TypeOrmModule.forRootAsync({
          useFactory: () => runtime.dataSource.options,
          dataSourceFactory: async () => runtime.dataSource,
        }),
        ScheduleModule.forRoot(),
        ...PLATFORM_MODULES,
        TargetsModule,
        AccountAdminModule,
        OidcModule,
        RotationModule,
        CheckoutsModule,
        EphemeralModule,
        LiveSessionsModule,
        RecordingModule,
        GatewayModule,
      ],
      controllers: [HealthController],
      providers: [
        { provide: APP_CONFIG, useValue: runtime.config },
        { provide: MASTER_KEY, useValue: runtime.masterKey },
        { provide: Clock, useValue: runtime.clock ?? new Clock() },
        SchedulerService,
        { provide: APP_GUARD, useClass: AuthenticationGuard },
        { provide: APP_GUARD, useClass: RolesGuard },
        { provide: APP_GUARD, useClass: MfaGuard },
        { provide: APP_FILTER, useClass: AllExceptionsFilter },
        { provide: APP_PIPE, useFactory: createValidationPipe },
      ],
      exports: [APP_CONFIG, MASTER_KEY, Clock],
    };
  }
}

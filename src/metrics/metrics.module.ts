import { Global, Module } from '@nestjs/common';
import { HttpMetrics } from './http-metrics';
import { MetricsController } from './metrics.controller';
import { MetricsService } from './metrics.service';

/** Global: any service may count (MetricsService); HttpMetrics times every HTTP request once the app starts. */
@Global()
@Module({ controllers: [MetricsController], providers: [MetricsService, HttpMetrics], exports: [MetricsService] })
export class MetricsModule {}

import { Controller, Get, Header } from '@nestjs/common';
import { z } from 'zod';
import { ApiAnswer } from '../common/api-responses';
import { Public } from '../common/auth.decorators';
import { MetricsService } from './metrics.service';

@Controller('metrics')
export class MetricsController {
  constructor(private readonly metrics: MetricsService) {}

  /** Prometheus text format. Public like the health checks: restrict it at the network edge if needed. */
  @ApiAnswer(z.string().describe('Prometheus text exposition format 0.0.4.'), { contentType: 'text/plain' })
  @Public()
  @Get()
  @Header('Content-Type', 'text/plain; version=0.0.4; charset=utf-8')
  scrape(): Promise<string> {
    return this.metrics.registry.metrics();
  }
}

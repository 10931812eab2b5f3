import { Controller, Get } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { DataSource } from 'typeorm';
import { z } from 'zod';
import { Public } from '../common/auth.decorators';
import { Errors } from '../common/errors';
import { ApiErrors } from '../common/api-errors';
import { ApiAnswer, apiView } from '../common/api-responses';

const HealthView = apiView('HealthView', z.object({ status: z.literal('ok') }));

@ApiTags('Operations')
@Controller('health')
export class HealthController {
  constructor(private readonly dataSource: DataSource) {}

  /** The process is up. */
  @ApiOperation({ summary: 'Liveness: the process is up' })
  @ApiAnswer(HealthView)
  @Public()
  @Get('live')
  live(): { status: 'ok' } {
    return { status: 'ok' };
  }

  /** The database answers. */
  @ApiOperation({ summary: 'Readiness: the database answers' })
  @ApiErrors('UNAVAILABLE')
  @ApiAnswer(HealthView)
  @Public()
  @Get('ready')
  async ready(): Promise<{ status: 'ok' }> {
    try {
      await this.dataSource.query('SELECT 1');
    } catch {
      throw Errors.unavailable('database is not reachable');
    }
    return { status: 'ok' };
  }
}

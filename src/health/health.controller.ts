import { Controller, Get } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { DataSource } from 'typeorm';
import { Public } from '../common/auth.decorators';
import { Errors } from '../common/errors';
import { ApiErrors } from '../common/api-errors';

@ApiTags('Operations')
@Controller('health')
export class HealthController {
  constructor(private readonly dataSource: DataSource) {}

  /** The process is up. */
  @ApiOperation({ summary: 'Liveness: the process is up' })
  @Public()
  @Get('live')
  live(): { status: 'ok' } {
    return { status: 'ok' };
  }

  /** The database answers. */
  @ApiOperation({ summary: 'Readiness: the database answers' })
  @ApiErrors('UNAVAILABLE')
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

import { Controller, Get, Query } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { Roles } from '../common/auth.decorators';
import { Page } from '../common/pagination';
import { ApiErrors } from '../openapi/error-codes';
import { VerifyResult } from './audit-chain';
import { AuditEventView, AuditListQuery, VerifyQuery } from './audit.dto';
import { AuditQueryService } from './audit-query.service';

@ApiTags('Audit')
@Controller('v1/audit-events')
export class AuditController {
  constructor(private readonly audit: AuditQueryService) {}

  @ApiOperation({ summary: 'List audit events, newest first' })
  @Roles('auditor', 'admin')
  @Get()
  list(@Query() q: AuditListQuery): Promise<Page<AuditEventView>> {
    return this.audit.list(q);
  }

  @ApiOperation({ summary: 'Seal and verify the audit hash chain (optionally against a head recorded earlier)' })
  @ApiErrors('UNAVAILABLE')
  @Roles('auditor', 'admin')
  @Get('verify')
  verify(@Query() q: VerifyQuery): Promise<VerifyResult> {
    return this.audit.verify(q);
  }
}

import { Controller, Get, Query } from '@nestjs/common';
import { Roles } from '../common/auth.decorators';
import { Page } from '../common/pagination';
import { VerifyResult } from './audit-chain';
import { AuditEventView, AuditListQuery, VerifyQuery } from './audit.dto';
import { AuditQueryService } from './audit-query.service';

@Controller('v1/audit-events')
export class AuditController {
  constructor(private readonly audit: AuditQueryService) {}

  @Roles('auditor', 'admin')
  @Get()
  list(@Query() q: AuditListQuery): Promise<Page<AuditEventView>> {
    return this.audit.list(q);
  }

  @Roles('auditor', 'admin')
  @Get('verify')
  verify(@Query() q: VerifyQuery): Promise<VerifyResult> {
    return this.audit.verify(q);
  }
}

import { Controller, Get, Param, Query, Res } from '@nestjs/common';
import type { Response } from 'express';
import { DomainException } from '../common/errors';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { Roles } from '../common/auth.decorators';
import { Page } from '../common/pagination';
import { ApiErrors } from '../common/api-errors';
import { ApiAnswer, pageOf } from '../common/api-responses';
import { VerifyResult } from './audit-chain';
import { AuditEventView, AuditListQuery, AuditVerifyView, VerifyQuery } from './audit.dto';
import { AuditQueryService } from './audit-query.service';

@ApiTags('Audit')
@Controller('v1/audit-events')
export class AuditController {
  constructor(private readonly audit: AuditQueryService) {}

  @ApiOperation({ summary: 'List audit events, newest first' })
  @ApiAnswer(pageOf(AuditEventView))
  @Roles('auditor', 'admin')
  @Get()
  list(@Query() q: AuditListQuery): Promise<Page<AuditEventView>> {
    return this.audit.list(q);
  }

  @ApiOperation({
    summary: 'Seal and verify the audit hash chain (optionally against a head recorded earlier)',
    description:
      'One verification at a time per instance: while one runs, or while another session holds the sealing lock longer than VAULT_AUDIT_VERIFY_LOCK_WAIT_MS, the answer is 503 UNAVAILABLE with `Retry-After` (and `retryAfterSeconds`).',
  })
  @ApiErrors('UNAVAILABLE')
  @ApiAnswer(AuditVerifyView)
  @Roles('auditor', 'admin')
  @Get('verify')
  async verify(@Query() q: VerifyQuery, @Res({ passthrough: true }) res: Response): Promise<VerifyResult> {
    try {
      return await this.audit.verify(q);
    } catch (e) {
      const wait = e instanceof DomainException ? e.extra?.retryAfterSeconds : undefined;
      if (typeof wait === 'number') res.setHeader('Retry-After', String(wait));
      throw e;
    }
  }

  @ApiOperation({
    summary: 'One audit event by id (the web portal links /portal/audit/<id> here)',
    description: 'The id is the decimal id the list answers; any other id is 404 NOT_FOUND.',
  })
  @ApiAnswer(AuditEventView)
  @Roles('auditor', 'admin')
  @Get(':id')
  get(@Param('id') id: string): Promise<AuditEventView> {
    return this.audit.get(id);
  }
}

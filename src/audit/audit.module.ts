import { Global, Module } from '@nestjs/common';
import { AuditQueryService } from './audit-query.service';
import { AuditSealer } from './audit-sealer.service';
import { AuditController } from './audit.controller';
import { AuditService } from './audit.service';

@Global()
@Module({
  controllers: [AuditController],
  providers: [AuditService, AuditSealer, AuditQueryService],
  exports: [AuditService, AuditSealer, AuditQueryService],
})
export class AuditModule {}

import { Body, Controller, Get, HttpCode, Param, Post, Put, Query } from '@nestjs/common';
import { DecisionDto } from '../approvals/approvals.dto';
import { CurrentActor, RequiresMfa, Roles } from '../common/auth.decorators';
import { Page } from '../common/pagination';
import { UuidPipe } from '../common/validation';
import { Actor } from '../identity/actor';
import { EphemeralProvisioner } from './ephemeral-provisioner.service';
import { EphemeralPolicy, EphemeralPolicyDto } from './ephemeral-policy';
import { ClaimView, CreateEphemeralDto, EphemeralListQuery, EphemeralView } from './ephemeral.dto';
import { EphemeralService } from './ephemeral.service';

@Controller('v1/ephemeral-accounts')
export class EphemeralController {
  constructor(
    private readonly ephemeral: EphemeralService,
    private readonly provisioner: EphemeralProvisioner,
  ) {}

  @Roles('operator', 'admin')
  @Post()
  create(@CurrentActor() actor: Actor, @Body() dto: CreateEphemeralDto): Promise<EphemeralView> {
    return this.ephemeral.request(actor, dto);
  }

  /** Requesters see what they asked for, vendors their own; approvers, admins and auditors see all. */
  @Roles('operator', 'vendor', 'approver', 'admin', 'auditor')
  @Get()
  list(@CurrentActor() actor: Actor, @Query() q: EphemeralListQuery): Promise<Page<EphemeralView>> {
    return this.ephemeral.list(actor, q);
  }

  @Roles('operator', 'vendor', 'approver', 'admin', 'auditor')
  @Get(':id')
  get(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<EphemeralView> {
    return this.ephemeral.get(actor, id);
  }

  @Roles('approver')
  @RequiresMfa()
  @Post(':id/approve')
  @HttpCode(200)
  approve(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string, @Body() dto: DecisionDto): Promise<EphemeralView> {
    return this.ephemeral.approve(actor, id, dto);
  }

  @Roles('approver')
  @RequiresMfa()
  @Post(':id/deny')
  @HttpCode(200)
  deny(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string, @Body() dto: DecisionDto): Promise<EphemeralView> {
    return this.ephemeral.deny(actor, id, dto);
  }

  @Roles('vendor')
  @RequiresMfa()
  @Post(':id/claim')
  @HttpCode(200)
  claim(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<ClaimView> {
    return this.provisioner.claim(actor, id);
  }

  @Roles('vendor', 'operator', 'admin')
  @Post(':id/revoke')
  @HttpCode(200)
  revoke(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<EphemeralView> {
    return this.provisioner.revoke(actor, id);
  }
}

/** A target's ephemeral policy: what one-time accounts on it may have, and how many approvals they need. */
@Controller('v1/targets/:id/ephemeral-policy')
export class EphemeralPolicyController {
  constructor(private readonly ephemeral: EphemeralService) {}

  @Roles('admin', 'operator', 'approver')
  @Get()
  get(@Param('id', UuidPipe) id: string): Promise<EphemeralPolicy> {
    return this.ephemeral.getPolicy(id);
  }

  @Roles('admin')
  @Put()
  set(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string, @Body() dto: EphemeralPolicyDto): Promise<EphemeralPolicy> {
    return this.ephemeral.setPolicy(actor, id, dto);
  }
}

import { Body, Controller, Get, HttpCode, Param, Post, Put, Query } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { DecisionDto } from '../approvals/approvals.dto';
import { CurrentActor, RequiresMfa, Roles } from '../common/auth.decorators';
import { Page } from '../common/pagination';
import { UuidPipe } from '../common/validation';
import { Actor } from '../common/actor';
import { ApiErrors, DECISION_REFUSALS, TARGET_FAILURES } from '../common/api-errors';
import { ApiAnswer, pageOf } from '../common/api-responses';
import { EphemeralProvisioner } from './ephemeral-provisioner.service';
import { EphemeralPolicy, EphemeralPolicyDto } from './ephemeral-policy';
import { ClaimView, CreateEphemeralDto, EphemeralListQuery, EphemeralPolicyView, EphemeralView } from './ephemeral.dto';
import { EphemeralService } from './ephemeral.service';

@ApiTags('One-time accounts')
@Controller('v1/ephemeral-accounts')
export class EphemeralController {
  constructor(
    private readonly ephemeral: EphemeralService,
    private readonly provisioner: EphemeralProvisioner,
  ) {}

  @ApiOperation({ summary: 'Request a one-time account on a target for a vendor' })
  @ApiErrors('SELF_APPROVAL', 'TTL_EXCEEDS_POLICY', 'ACCESS_NOT_ALLOWED')
  @ApiAnswer(EphemeralView)
  @Roles('operator', 'admin')
  @Post()
  create(@CurrentActor() actor: Actor, @Body() dto: CreateEphemeralDto): Promise<EphemeralView> {
    return this.ephemeral.request(actor, dto);
  }

  /** Requesters see what they asked for, vendors their own; approvers, admins and auditors see all. */
  @ApiOperation({ summary: 'List one-time accounts (requesters and vendors: their own; never the password)' })
  @ApiAnswer(pageOf(EphemeralView))
  @Roles('operator', 'vendor', 'approver', 'admin', 'auditor')
  @Get()
  list(@CurrentActor() actor: Actor, @Query() q: EphemeralListQuery): Promise<Page<EphemeralView>> {
    return this.ephemeral.list(actor, q);
  }

  @ApiOperation({ summary: 'Read a one-time account (never the password)' })
  @ApiAnswer(EphemeralView)
  @Roles('operator', 'vendor', 'approver', 'admin', 'auditor')
  @Get(':id')
  get(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<EphemeralView> {
    return this.ephemeral.get(actor, id);
  }

  @ApiOperation({ summary: 'Approve a one-time account request (never your own)' })
  @ApiErrors('REQUEST_NOT_PENDING', 'WEBAUTHN_REQUIRED', ...DECISION_REFUSALS)
  @ApiAnswer(EphemeralView)
  @Roles('approver')
  @RequiresMfa()
  @Post(':id/approve')
  @HttpCode(200)
  approve(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string, @Body() dto: DecisionDto): Promise<EphemeralView> {
    return this.ephemeral.approve(actor, id, dto);
  }

  @ApiOperation({ summary: 'Deny a one-time account request (never your own)' })
  @ApiErrors('REQUEST_NOT_PENDING', 'WEBAUTHN_REQUIRED', ...DECISION_REFUSALS)
  @ApiAnswer(EphemeralView)
  @Roles('approver')
  @RequiresMfa()
  @Post(':id/deny')
  @HttpCode(200)
  deny(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string, @Body() dto: DecisionDto): Promise<EphemeralView> {
    return this.ephemeral.deny(actor, id, dto);
  }

  @ApiOperation({ summary: 'Claim your one-time account: created on the target now, credential answered once' })
  @ApiErrors('ALREADY_CLAIMED', 'EXPIRED', 'NOT_APPROVED', 'REQUEST_ENDED', 'REVOKED', 'ACCESS_NOT_ALLOWED', ...TARGET_FAILURES)
  @ApiAnswer(ClaimView)
  @Roles('vendor')
  @RequiresMfa()
  @Post(':id/claim')
  @HttpCode(200)
  claim(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<ClaimView> {
    return this.provisioner.claim(actor, id);
  }

  @ApiOperation({ summary: 'Revoke a one-time account: removed from the target, its sessions ended' })
  @ApiAnswer(EphemeralView)
  @Roles('vendor', 'operator', 'admin')
  @Post(':id/revoke')
  @HttpCode(200)
  revoke(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<EphemeralView> {
    return this.provisioner.revoke(actor, id);
  }
}

/** A target's ephemeral policy: what one-time accounts on it may have, and how many approvals they need. */
@ApiTags('Targets')
@Controller('v1/targets/:id/ephemeral-policy')
export class EphemeralPolicyController {
  constructor(private readonly ephemeral: EphemeralService) {}

  @ApiOperation({ summary: "Read a target's ephemeral policy" })
  @ApiAnswer(EphemeralPolicyView)
  @Roles('admin', 'operator', 'approver')
  @Get()
  get(@Param('id', UuidPipe) id: string): Promise<EphemeralPolicy> {
    return this.ephemeral.getPolicy(id);
  }

  @ApiOperation({ summary: "Set a target's ephemeral policy (an allow-list, checked against the target's own catalog)" })
  @ApiErrors('POLICY_NOT_ALLOWED', 'TARGET_IN_USE', ...TARGET_FAILURES)
  @ApiAnswer(EphemeralPolicyView)
  @Roles('admin')
  @RequiresMfa()
  @Put()
  set(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string, @Body() dto: EphemeralPolicyDto): Promise<EphemeralPolicy> {
    return this.ephemeral.setPolicy(actor, id, dto);
  }
}

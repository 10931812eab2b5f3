import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { CurrentActor, RequiresMfa, Roles } from '../common/auth.decorators';
import { Page } from '../common/pagination';
import { UuidPipe } from '../common/validation';
import { Actor } from '../common/actor';
import { ApiErrors, TARGET_FAILURES } from '../common/api-errors';
import { ApiAnswer, pageOf } from '../common/api-responses';
import { CreateTargetDto, TargetListQuery, TargetView, UpdateTargetDto, VerifyTargetDto, VerifyView } from './targets.dto';
import { TargetsService } from './targets.service';

@ApiTags('Targets')
@Controller('v1/targets')
export class TargetsController {
  constructor(private readonly targets: TargetsService) {}

  @ApiOperation({ summary: 'Register a target (its admin credential is stored encrypted, never returned)' })
  @ApiErrors('TARGET_NAME_TAKEN')
  @ApiAnswer(TargetView)
  @Roles('admin')
  @RequiresMfa()
  @Post()
  create(@CurrentActor() actor: Actor, @Body() dto: CreateTargetDto): Promise<TargetView> {
    return this.targets.create(actor, dto);
  }

  @ApiOperation({ summary: 'List targets' })
  @ApiAnswer(pageOf(TargetView))
  @Roles('admin', 'operator', 'approver', 'auditor')
  @Get()
  list(@Query() q: TargetListQuery): Promise<Page<TargetView>> {
    return this.targets.list(q);
  }

  @ApiOperation({ summary: 'Read a target' })
  @ApiAnswer(TargetView)
  @Roles('admin', 'operator', 'approver', 'auditor')
  @Get(':id')
  get(@Param('id', UuidPipe) id: string): Promise<TargetView> {
    return this.targets.get(id);
  }

  @ApiOperation({
    summary: 'Change a target',
    description: 'Moving it (host, port, admin username, MySQL accountHost) or changing how its identity is checked (host key pin, TLS, CA, certificate pin) needs its admin credential again in `admin` (else 400 ADMIN_CREDENTIAL_REQUIRED, nothing changed): the stored credential is never sent to a new place.',
  })
  @ApiErrors('ADMIN_CREDENTIAL_REQUIRED', 'TARGET_NAME_TAKEN', 'TARGET_IN_USE', 'ACCOUNT_IS_TARGET_ADMIN')
  @ApiAnswer(TargetView)
  @Roles('admin')
  @RequiresMfa()
  @Patch(':id')
  update(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string, @Body() dto: UpdateTargetDto): Promise<TargetView> {
    return this.targets.update(actor, id, dto);
  }

  @ApiOperation({
    summary: "Log in with the target's admin credential and report every capability the vault needs",
    description: 'An SSH target without a pinned host key answers 409 TARGET_HOST_KEY_UNPINNED with `presentedHostKeySha256`; verify again with that `hostKeySha256`, once compared with the server, to pin it.',
  })
  @ApiErrors('TARGET_CREDENTIAL_UNREADABLE', ...TARGET_FAILURES.filter((c) => c !== 'TARGET_INVALID_NAME' && c !== 'TARGET_UNSUPPORTED'))
  @ApiAnswer(VerifyView)
  @Roles('admin')
  @RequiresMfa()
  @Post(':id/verify')
  @HttpCode(200)
  verify(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string, @Body() dto: VerifyTargetDto): Promise<VerifyView> {
    return this.targets.verify(actor, id, dto);
  }

  @ApiOperation({ summary: 'Delete a target without accounts or open one-time accounts' })
  @ApiErrors('TARGET_IN_USE')
  @Roles('admin')
  @RequiresMfa()
  @Delete(':id')
  @HttpCode(204)
  remove(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<void> {
    return this.targets.remove(actor, id);
  }
}

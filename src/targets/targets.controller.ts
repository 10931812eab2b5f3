import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query } from '@nestjs/common';
import { CurrentActor, Roles } from '../common/auth.decorators';
import { Page } from '../common/pagination';
import { UuidPipe } from '../common/validation';
import { Actor } from '../identity/actor';
import { CreateTargetDto, TargetListQuery, TargetView, UpdateTargetDto } from './targets.dto';
import { TargetsService } from './targets.service';

@Controller('v1/targets')
export class TargetsController {
  constructor(private readonly targets: TargetsService) {}

  @Roles('admin')
  @Post()
  create(@CurrentActor() actor: Actor, @Body() dto: CreateTargetDto): Promise<TargetView> {
    return this.targets.create(actor, dto);
  }

  @Roles('admin', 'operator')
  @Get()
  list(@Query() q: TargetListQuery): Promise<Page<TargetView>> {
    return this.targets.list(q);
  }

  @Roles('admin', 'operator')
  @Get(':id')
  get(@Param('id', UuidPipe) id: string): Promise<TargetView> {
    return this.targets.get(id);
  }

  @Roles('admin')
  @Patch(':id')
  update(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string, @Body() dto: UpdateTargetDto): Promise<TargetView> {
    return this.targets.update(actor, id, dto);
  }

  @Roles('admin')
  @Post(':id/verify')
  @HttpCode(200)
  verify(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<{ ok: true; serverVersion?: string }> {
    return this.targets.verify(actor, id);
  }

  @Roles('admin')
  @Delete(':id')
  @HttpCode(204)
  remove(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<void> {
    return this.targets.remove(actor, id);
  }
}

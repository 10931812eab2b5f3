import { Body, Controller, Delete, Get, HttpCode, Param, Post, Query } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { CurrentActor, RequiresMfa, Roles } from '../common/auth.decorators';
import { Page, PageQuery } from '../common/pagination';
import { UuidPipe } from '../common/validation';
import { Actor } from '../common/actor';
import { ApiAnswer, pageOf } from '../common/api-responses';
import { ServiceTokensService } from './service-tokens.service';
import { CreateServiceTokenDto, ServiceTokenCreated, ServiceTokenView } from './users.dto';

@ApiTags('Service tokens')
@Controller('v1/service-tokens')
export class ServiceTokensController {
  constructor(private readonly tokens: ServiceTokensService) {}

  @ApiOperation({ summary: 'Create a service token (shown once)' })
  @ApiAnswer(ServiceTokenCreated)
  @Roles('admin')
  @RequiresMfa()
  @Post()
  create(@CurrentActor() actor: Actor, @Body() dto: CreateServiceTokenDto): Promise<ServiceTokenView & { token: string }> {
    return this.tokens.create(actor, dto);
  }

  @ApiOperation({ summary: 'List service tokens (never the token)' })
  @ApiAnswer(pageOf(ServiceTokenView))
  @Roles('admin')
  @Get()
  list(@Query() q: PageQuery): Promise<Page<ServiceTokenView>> {
    return this.tokens.list(q);
  }

  @ApiOperation({ summary: 'Revoke a service token' })
  @Roles('admin')
  @RequiresMfa()
  @Delete(':id')
  @HttpCode(204)
  revoke(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<void> {
    return this.tokens.revoke(actor, id);
  }
}

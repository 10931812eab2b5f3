import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query } from '@nestjs/common';
import { CurrentActor, Roles } from '../common/auth.decorators';
import { Page } from '../common/pagination';
import { UuidPipe } from '../common/validation';
import { Actor } from '../identity/actor';
import { AccountListQuery, AccountView, CreateAccountDto, UpdateAccountDto } from './accounts.dto';
import { AccountsService } from './accounts.service';

@Controller('v1/accounts')
export class AccountsController {
  constructor(private readonly accounts: AccountsService) {}

  @Roles('admin')
  @Post()
  create(@CurrentActor() actor: Actor, @Body() dto: CreateAccountDto): Promise<AccountView> {
    return this.accounts.create(actor, dto);
  }

  @Roles('admin', 'operator', 'approver', 'auditor')
  @Get()
  list(@Query() q: AccountListQuery): Promise<Page<AccountView>> {
    return this.accounts.list(q);
  }

  @Roles('admin', 'operator', 'approver', 'auditor')
  @Get(':id')
  get(@Param('id', UuidPipe) id: string): Promise<AccountView> {
    return this.accounts.get(id);
  }

  @Roles('admin')
  @Patch(':id')
  update(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string, @Body() dto: UpdateAccountDto): Promise<AccountView> {
    return this.accounts.update(actor, id, dto);
  }

  @Roles('admin')
  @Delete(':id')
  @HttpCode(204)
  remove(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<void> {
    return this.accounts.remove(actor, id);
  }
}

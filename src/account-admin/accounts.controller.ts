import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { CurrentActor, RequiresMfa, Roles } from '../common/auth.decorators';
import { Page } from '../common/pagination';
import { UuidPipe } from '../common/validation';
import { Actor } from '../common/actor';
import { ApiErrors, TARGET_FAILURES } from '../common/api-errors';
import { ApiAnswer, pageOf } from '../common/api-responses';
import { AccountListQuery, AccountView, CreateAccountDto, UpdateAccountDto } from './accounts.dto';
import { AccountsService } from './accounts.service';

@ApiTags('Accounts')
@Controller('v1/accounts')
export class AccountsController {
  constructor(private readonly accounts: AccountsService) {}

  @ApiOperation({ summary: 'Vault an account (without a password the vault sets a new one on the target)' })
  @ApiErrors('ACCOUNT_EXISTS', 'ACCOUNT_IS_TARGET_ADMIN', 'TARGET_IN_USE', ...TARGET_FAILURES)
  @ApiAnswer(AccountView)
  @Roles('admin')
  @RequiresMfa()
  @Post()
  create(@CurrentActor() actor: Actor, @Body() dto: CreateAccountDto): Promise<AccountView> {
    return this.accounts.create(actor, dto);
  }

  @ApiOperation({ summary: 'List accounts (never the password)' })
  @ApiAnswer(pageOf(AccountView))
  @Roles('admin', 'operator', 'approver', 'auditor')
  @Get()
  list(@Query() q: AccountListQuery): Promise<Page<AccountView>> {
    return this.accounts.list(q);
  }

  @ApiOperation({ summary: 'Read an account (never the password)' })
  @ApiAnswer(AccountView)
  @Roles('admin', 'operator', 'approver', 'auditor')
  @Get(':id')
  get(@Param('id', UuidPipe) id: string): Promise<AccountView> {
    return this.accounts.get(id);
  }

  @ApiOperation({ summary: "Change an account's policy", description: 'Turning `requireWebauthn` off needs a security key step-up (X-MFA-Assertion): a TOTP code is refused with 403 WEBAUTHN_REQUIRED.' })
  @ApiErrors('WEBAUTHN_REQUIRED')
  @ApiAnswer(AccountView)
  @Roles('admin')
  @RequiresMfa()
  @Patch(':id')
  update(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string, @Body() dto: UpdateAccountDto): Promise<AccountView> {
    return this.accounts.update(actor, id, dto);
  }

  @ApiOperation({ summary: 'Delete an account', description: 'An account whose policy has `requireWebauthn` needs a security key step-up (X-MFA-Assertion) to be deleted.' })
  @ApiErrors('ACCOUNT_BUSY', 'WEBAUTHN_REQUIRED')
  @Roles('admin')
  @RequiresMfa()
  @Delete(':id')
  @HttpCode(204)
  remove(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<void> {
    return this.accounts.remove(actor, id);
  }
}

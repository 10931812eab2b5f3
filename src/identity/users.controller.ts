import { Body, Controller, Get, HttpCode, Param, Patch, Post, Query } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { CurrentActor, RequiresMfa, Roles } from '../common/auth.decorators';
import { Page } from '../common/pagination';
import { UuidPipe } from '../common/validation';
import { ApiErrors } from '../common/api-errors';
import { ApiAnswer, pageOf } from '../common/api-responses';
import { Actor } from '../common/actor';
import { MfaService } from './mfa.service';
import { CreateUserDto, UpdateUserDto, UserListQuery, UserView } from './users.dto';
import { UsersService } from './users.service';

@ApiTags('Users')
@Controller('v1/users')
export class UsersController {
  constructor(
    private readonly users: UsersService,
    private readonly mfa: MfaService,
  ) {}

  @ApiOperation({ summary: 'Create a user' })
  @ApiErrors('USERNAME_TAKEN')
  @ApiAnswer(UserView)
  @Roles('admin')
  @RequiresMfa()
  @Post()
  create(@CurrentActor() actor: Actor, @Body() dto: CreateUserDto): Promise<UserView> {
    return this.users.create(actor, dto);
  }

  @ApiOperation({ summary: 'List users' })
  @ApiAnswer(pageOf(UserView))
  @Roles('admin')
  @Get()
  list(@Query() q: UserListQuery): Promise<Page<UserView>> {
    return this.users.list(q);
  }

  @ApiOperation({ summary: 'Read a user' })
  @ApiAnswer(UserView)
  @Roles('admin')
  @Get(':id')
  get(@Param('id', UuidPipe) id: string): Promise<UserView> {
    return this.users.get(id);
  }

  @ApiOperation({ summary: 'Change roles, disable a user, or turn their password sign-in off (passwordLogin: false)' })
  @ApiErrors('LAST_ADMIN', 'EMAIL_DOMAIN_NOT_ALLOWED', 'BREAK_GLASS_USER', 'ROLES_FROM_IDP')
  @ApiAnswer(UserView)
  @Roles('admin')
  @RequiresMfa()
  @Patch(':id')
  update(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string, @Body() dto: UpdateUserDto): Promise<UserView> {
    return this.users.update(actor, id, dto);
  }

  /** The user must enroll again; the admin proves presence with their own code. */
  @ApiOperation({
    summary: "Reset a user's MFA (TOTP and security keys): they must enroll again, their sessions end",
    description: "For a user with a usable security key the admin steps up with their own key (X-MFA-Assertion): a code is refused with 403 WEBAUTHN_REQUIRED.",
  })
  @ApiErrors('WEBAUTHN_REQUIRED')
  @Roles('admin')
  @RequiresMfa()
  @Post(':id/mfa/reset')
  @HttpCode(204)
  resetMfa(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<void> {
    return this.mfa.reset(actor, id);
  }
}

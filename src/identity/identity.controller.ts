import { Body, Controller, Get, HttpCode, Ip, Post } from '@nestjs/common';
import { CurrentActor, Public, Roles } from '../common/auth.decorators';
import { Actor, ROLES } from './actor';
import { LoginDto, LoginResponse, MeView } from './identity.dto';
import { IdentityService } from './identity.service';

@Controller('v1')
export class IdentityController {
  constructor(private readonly identity: IdentityService) {}

  @Public()
  @Post('auth/login')
  @HttpCode(200)
  login(@Body() dto: LoginDto, @Ip() ip: string): Promise<LoginResponse> {
    return this.identity.login(dto, ip);
  }

  @Roles(...ROLES)
  @Get('me')
  me(@CurrentActor() actor: Actor): MeView {
    return this.identity.me(actor);
  }
}

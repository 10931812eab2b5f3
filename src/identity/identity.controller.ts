import { Body, Controller, Get, HttpCode, Ip, Post } from '@nestjs/common';
import { IsString, Matches } from 'class-validator';
import { AllowWithoutMfa, CurrentActor, Public, Roles } from '../common/auth.decorators';
import { Actor, ROLES } from './actor';
import { LoginDto, LoginResponse, MeView } from './identity.dto';
import { IdentityService } from './identity.service';
import { MfaService } from './mfa.service';

class ConfirmTotpDto {
  @IsString() @Matches(/^\d{6}$/, { message: 'code must be 6 digits' }) code: string;
}

@Controller('v1')
export class IdentityController {
  constructor(
    private readonly identity: IdentityService,
    private readonly mfa: MfaService,
  ) {}

  @Public()
  @Post('auth/login')
  @HttpCode(200)
  login(@Body() dto: LoginDto, @Ip() ip: string): Promise<LoginResponse> {
    return this.identity.login(dto, ip);
  }

  @Roles(...ROLES)
  @AllowWithoutMfa()
  @Get('me')
  me(@CurrentActor() actor: Actor): MeView {
    return this.identity.me(actor);
  }

  @Roles(...ROLES)
  @AllowWithoutMfa()
  @Post('me/mfa/totp')
  @HttpCode(200)
  enroll(@CurrentActor() actor: Actor): Promise<{ secret: string; otpauthUri: string }> {
    return this.mfa.startEnrollment(actor);
  }

  @Roles(...ROLES)
  @AllowWithoutMfa()
  @Post('me/mfa/totp/confirm')
  @HttpCode(200)
  confirm(@CurrentActor() actor: Actor, @Body() dto: ConfirmTotpDto, @Ip() ip: string): Promise<{ mfaEnrolled: true }> {
    return this.mfa.confirmEnrollment(actor, dto.code, ip);
  }
}

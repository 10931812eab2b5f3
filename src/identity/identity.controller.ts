import { Body, Controller, Get, HttpCode, Ip, Post } from '@nestjs/common';
import { normalizeAddress } from '../common/client-address';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { IsString, Matches } from 'class-validator';
import { AllowWithoutMfa, CurrentActor, Public, Roles } from '../common/auth.decorators';
import { ApiErrors } from '../common/api-errors';
import { Actor, ROLES } from '../common/actor';
import { LoginDto, LoginResponse, MeView } from './identity.dto';
import { IdentityService } from './identity.service';
import { EnrollmentConfirmed, MfaService } from './mfa.service';

class ConfirmTotpDto {
  @IsString() @Matches(/^\d{6}$/, { message: 'code must be 6 digits' }) code: string;
}

@ApiTags('Identity')
@Controller('v1')
export class IdentityController {
  constructor(
    private readonly identity: IdentityService,
    private readonly mfa: MfaService,
  ) {}

  @ApiOperation({ summary: 'Log in: password, then the TOTP code once enrolled' })
  @ApiErrors('UNAUTHENTICATED', 'MFA_REQUIRED', 'MFA_INVALID', 'MFA_REPLAYED', 'THROTTLED')
  @Public()
  @Post('auth/login')
  @HttpCode(200)
  login(@Body() dto: LoginDto, @Ip() ip: string): Promise<LoginResponse> {
    return this.identity.login(dto, normalizeAddress(ip));
  }

  @ApiOperation({ summary: 'Who am I: id, username, roles, MFA enrollment' })
  @Roles(...ROLES)
  @AllowWithoutMfa()
  @Get('me')
  me(@CurrentActor() actor: Actor): MeView {
    return this.identity.me(actor);
  }

  @ApiOperation({ summary: 'Start TOTP enrollment: a new secret and its otpauth URI' })
  @ApiErrors('MFA_ALREADY_ENROLLED')
  @Roles(...ROLES)
  @AllowWithoutMfa()
  @Post('me/mfa/totp')
  @HttpCode(200)
  enroll(@CurrentActor() actor: Actor): Promise<{ secret: string; otpauthUri: string }> {
    return this.mfa.startEnrollment(actor);
  }

  @ApiOperation({
    summary: 'Confirm TOTP enrollment with a first code',
    description: 'Every earlier token of the user (the one sending this request too) ends; the answer carries a fresh token.',
  })
  @ApiErrors('MFA_ALREADY_ENROLLED', 'MFA_ENROLLMENT_NOT_STARTED', 'MFA_INVALID', 'MFA_REPLAYED', 'THROTTLED')
  @Roles(...ROLES)
  @AllowWithoutMfa()
  @Post('me/mfa/totp/confirm')
  @HttpCode(200)
  confirm(@CurrentActor() actor: Actor, @Body() dto: ConfirmTotpDto, @Ip() ip: string): Promise<EnrollmentConfirmed> {
    return this.mfa.confirmEnrollment(actor, dto.code, normalizeAddress(ip));
  }
}

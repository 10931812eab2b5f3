import { Body, Controller, Get, HttpCode, Inject, Injectable, Ip, Patch, PipeTransform, Post, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { normalizeAddress } from '../common/client-address';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { IsString, Matches } from 'class-validator';
import { AllowWithoutMfa, CurrentActor, Public, RequiresMfa, Roles } from '../common/auth.decorators';
import { ApiErrors } from '../common/api-errors';
import { ApiAnswer } from '../common/api-responses';
import { Actor, ROLES } from '../common/actor';
import { APP_CONFIG, AppConfig } from '../config/config';
import { browserSessionOf, BrowserSessionsService, BrowserSessionView } from './browser-sessions';
import { EnrollmentAnswer, LoginDto, LoginResponse, MeView, TotpEnrollmentView } from './identity.dto';
import { setSessionCookie } from './session-cookie';
import { IdentityService } from './identity.service';
import { EnrollmentConfirmed, MfaService } from './mfa.service';
import { UpdateMeDto } from './users.dto';
import { UsersService } from './users.service';

class ConfirmTotpDto {
  @IsString() @Matches(/^\d{6}$/, { message: 'code must be 6 digits' }) code: string;
}

/** Refuses muting a kind that is not optional (400 NOTIFICATION_REQUIRED) after validation and before the step-up code is used. */
@Injectable()
class MutesPipe implements PipeTransform<UpdateMeDto, UpdateMeDto> {
  constructor(private readonly users: UsersService) {}

  transform(dto: UpdateMeDto): UpdateMeDto {
    if (dto?.mutedNotifications !== undefined) this.users.checkMutes(dto.mutedNotifications);
    return dto;
  }
}

@ApiTags('Identity')
@Controller('v1')
export class IdentityController {
  constructor(
    private readonly identity: IdentityService,
    private readonly mfa: MfaService,
    private readonly users: UsersService,
    private readonly browserSessions: BrowserSessionsService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  @ApiOperation({
    summary: 'Log in: password, then the second factor once enrolled (TOTP `code`, or a security key `assertion`)',
    description:
      'Without a second factor in the body, a user who has one gets 401 MFA_REQUIRED with `methods` (`totp`, `webauthn`) and, when they have a security key, `webauthn: {challengeId, options}`: answer the options with startAuthentication and send the login again with `assertion` (the JSON object).',
  })
  @ApiErrors('UNAUTHENTICATED', 'MFA_REQUIRED', 'MFA_INVALID', 'MFA_REPLAYED', 'THROTTLED')
  @ApiAnswer(LoginResponse)
  @Public()
  @Post('auth/login')
  @HttpCode(200)
  login(@Body() dto: LoginDto, @Ip() ip: string): Promise<LoginResponse> {
    return this.identity.login(dto, normalizeAddress(ip));
  }

  @ApiOperation({ summary: 'Who am I: id, username, roles, MFA enrollment, e-mail address and muted notifications' })
  @ApiAnswer(MeView)
  @Roles(...ROLES)
  @AllowWithoutMfa()
  @Get('me')
  async me(@CurrentActor() actor: Actor): Promise<MeView> {
    return { ...(await this.identity.me(actor)), ...(await this.users.notificationSettings(actor)) };
  }

  @ApiOperation({
    summary: 'Set your own e-mail address and the notifications you mute',
    description:
      'Your approval requests and alerts go to `email`, hence the step-up code. `mutedNotifications` replaces the list of muted kinds; only the optional kinds (request decisions, expiry warnings) can be muted: a required one (approval requests, one-time accounts ready to claim, alerts) answers 400 NOTIFICATION_REQUIRED and nothing changes.',
  })
  @ApiErrors('NOTIFICATION_REQUIRED', 'EMAIL_DOMAIN_NOT_ALLOWED')
  @ApiAnswer(MeView)
  @Roles(...ROLES)
  @RequiresMfa()
  @Patch('me')
  async updateMe(@CurrentActor() actor: Actor, @Body(MutesPipe) dto: UpdateMeDto): Promise<MeView> {
    return { ...(await this.identity.me(actor)), ...(await this.users.updateMe(actor, dto)) };
  }

  @ApiOperation({
    summary: 'Start TOTP enrollment: a new secret and its otpauth URI',
    description: 'A user who has a security key but no TOTP adds it with a step-up (`X-MFA-Assertion` from the key): a stolen session must not add an authenticator. A user without a second factor needs none.',
  })
  @ApiErrors('MFA_ALREADY_ENROLLED')
  @ApiAnswer(TotpEnrollmentView)
  @Roles(...ROLES)
  @AllowWithoutMfa()
  @RequiresMfa({ addsFactor: 'totp' })
  @Post('me/mfa/totp')
  @HttpCode(200)
  enroll(@CurrentActor() actor: Actor): Promise<{ secret: string; otpauthUri: string }> {
    return this.mfa.startEnrollment(actor);
  }

  @ApiOperation({
    summary: 'Confirm TOTP enrollment with a first code',
    description:
      'Every earlier token and browser session of the user (the one sending this request too) ends; the answer carries a fresh token. Sent by the web portal (with its session cookie), the fresh session comes as a new cookie instead, and the body carries its CSRF token (`{mfaEnrolled, csrfToken, expiresAt, idleTimeoutSeconds, mfaEnrollmentRequired, user}`) in place of `accessToken`.',
  })
  @ApiErrors('MFA_ALREADY_ENROLLED', 'MFA_ENROLLMENT_NOT_STARTED', 'MFA_INVALID', 'MFA_REPLAYED', 'THROTTLED')
  @Roles(...ROLES)
  @AllowWithoutMfa()
  @ApiAnswer(EnrollmentAnswer)
  @Post('me/mfa/totp/confirm')
  @HttpCode(200)
  async confirm(
    @CurrentActor() actor: Actor,
    @Body() dto: ConfirmTotpDto,
    @Ip() ip: string,
    @Req() req: Request,
    @Res({ passthrough: true }) res: Response,
  ): Promise<EnrollmentConfirmed | (BrowserSessionView & { mfaEnrolled: true })> {
    if (!browserSessionOf(req)) return this.mfa.confirmEnrollment(actor, dto.code, normalizeAddress(ip));
    const { token, view } = await this.browserSessions.confirmEnrollment(actor, dto.code, normalizeAddress(ip));
    setSessionCookie(req, res, this.config, token);
    return view;
  }
}

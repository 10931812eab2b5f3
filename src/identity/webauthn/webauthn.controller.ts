import { Body, Controller, Delete, Get, HttpCode, Inject, Param, Post, Req, Res } from '@nestjs/common';
import { ApiNoContentResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { z } from 'zod';
import { Actor, ROLES } from '../../common/actor';
import { ApiErrors } from '../../common/api-errors';
import { ApiAnswer } from '../../common/api-responses';
import { AllowWithoutMfa, CurrentActor, RequiresMfa, Roles } from '../../common/auth.decorators';
import { UuidPipe } from '../../common/validation';
import { APP_CONFIG, AppConfig } from '../../config/config';
import { browserSessionOf, BrowserSessionsService } from '../browser-sessions';
import { setSessionCookie } from '../session-cookie';
import { WebAuthnService } from './webauthn.service';
import {
  ConfirmRegistrationDto,
  RegistrationConfirmedView,
  RegistrationStartView,
  StepUpChallengeDto,
  StepUpChallengeView,
  WebAuthnCredentialView,
} from './webauthn.dto';

const CredentialList = z.array(WebAuthnCredentialView);

/** A person's own security keys and passkeys (README "WebAuthn (passkeys and security keys)"). */
@ApiTags('Identity')
@Controller('v1/me/webauthn')
export class WebAuthnController {
  constructor(
    private readonly webauthn: WebAuthnService,
    private readonly browserSessions: BrowserSessionsService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  @ApiOperation({
    summary: 'Start registering a security key or passkey: options for navigator.credentials.create',
    description:
      "A user without a second factor registers their first one without a step-up; once they have one (TOTP or a key), adding a key needs a step-up (`X-MFA-Code`, or `X-MFA-Assertion` from one of their keys): a stolen session must not add an authenticator. The challenge is good for 2 minutes; the user's keys are excluded.",
  })
  @ApiAnswer(RegistrationStartView)
  @Roles(...ROLES)
  @AllowWithoutMfa()
  @RequiresMfa({ addsFactor: 'webauthn' })
  @Post('registrations')
  @HttpCode(200)
  start(@CurrentActor() actor: Actor): Promise<RegistrationStartView> {
    return this.webauthn.startRegistration(actor);
  }

  @ApiOperation({
    summary: 'Finish registering a security key: the authenticator answer (startRegistration) and a name for it',
    description:
      "When the key is the user's first second factor, every earlier token and browser session of the user ends and `newSession` carries the fresh one (from the portal: a new session cookie, and its CSRF token in `newSession`), as at TOTP enrollment.",
  })
  @ApiErrors('WEBAUTHN_REGISTRATION_FAILED', 'WEBAUTHN_NAME_TAKEN', 'WEBAUTHN_CREDENTIAL_EXISTS', 'WEBAUTHN_TOO_MANY_KEYS')
  @ApiAnswer(RegistrationConfirmedView)
  @Roles(...ROLES)
  @AllowWithoutMfa()
  @Post('registrations/confirm')
  @HttpCode(200)
  async confirm(
    @CurrentActor() actor: Actor,
    @Body() dto: ConfirmRegistrationDto,
    @Req() req: Request,
    @Res({ passthrough: true }) res: Response,
  ): Promise<RegistrationConfirmedView> {
    const viaBrowser = browserSessionOf(req) !== undefined;
    const { credential, bearer, browser } = await this.webauthn.confirmRegistration(actor, dto, viaBrowser ? 'browser' : 'bearer');
    if (!browser) return { credential, newSession: bearer ?? null };
    setSessionCookie(req, res, this.config, browser.token);
    return { credential, newSession: await this.browserSessions.viewOf({ ...actor, mfaEnrolled: true }, browser) };
  }

  @ApiOperation({ summary: 'Your security keys: name, when added and last used, flagged (clone suspected), backed up' })
  @ApiAnswer(CredentialList)
  @Roles(...ROLES)
  @AllowWithoutMfa()
  @Get('credentials')
  list(@CurrentActor() actor: Actor): Promise<WebAuthnCredentialView[]> {
    return this.webauthn.list(actor);
  }

  @ApiOperation({
    summary: 'Remove one of your security keys (not your only second factor)',
    description: 'A usable (unflagged) key is removed only with a security key step-up (X-MFA-Assertion): with a code, 403 WEBAUTHN_REQUIRED. A flagged key goes with either.',
  })
  @ApiNoContentResponse({ description: 'Removed.' })
  @ApiErrors('LAST_FACTOR', 'WEBAUTHN_REQUIRED')
  @Roles(...ROLES)
  @RequiresMfa()
  @Delete('credentials/:id')
  @HttpCode(204)
  remove(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<void> {
    return this.webauthn.remove(actor, actor.id, id, 'self');
  }

  @ApiOperation({
    summary: 'A step-up challenge for a security key, bound to the action you are about to send',
    description:
      "`method`, `path` (as sent, `/v1/…`, no query) and `body` (the JSON body, absent: none) of the @RequiresMfa request to come. Answer the options with startAuthentication, then send that request with `X-MFA-Assertion: <base64url of the answer's JSON>`; the vault checks the assertion against a challenge bound to the request as it arrives: another path, body or method does not verify. Good for 2 minutes, once.",
  })
  @ApiErrors('WEBAUTHN_NOT_ENROLLED')
  @ApiAnswer(StepUpChallengeView)
  @Roles(...ROLES)
  @Post('step-up')
  @HttpCode(200)
  stepUp(@CurrentActor() actor: Actor, @Body() dto: StepUpChallengeDto): Promise<StepUpChallengeView> {
    return this.webauthn.stepUpChallenge(actor, dto);
  }
}

/** Recovery by an administrator: a user's keys, and removing a lost one (the MFA reset removes them all). */
@ApiTags('Users')
@Controller('v1/users/:id/webauthn')
export class UserWebAuthnController {
  constructor(private readonly webauthn: WebAuthnService) {}

  @ApiOperation({ summary: "A user's security keys (never a public key or credential id)" })
  @ApiAnswer(CredentialList)
  @Roles('admin')
  @Get()
  list(@Param('id', UuidPipe) id: string): Promise<WebAuthnCredentialView[]> {
    return this.webauthn.listOf(id);
  }

  @ApiOperation({
    summary: "Remove a user's security key (a lost or cloned one)",
    description:
      "When it was the user's only second factor, their tokens and sessions end and they enrol again. A usable (unflagged) key needs the admin's own security key step-up (403 WEBAUTHN_REQUIRED with a code); your own keys are removed at /v1/me/webauthn/credentials.",
  })
  @ApiNoContentResponse({ description: 'Removed.' })
  @ApiErrors('WEBAUTHN_REQUIRED')
  @Roles('admin')
  @RequiresMfa()
  @Delete(':credentialId')
  @HttpCode(204)
  remove(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string, @Param('credentialId', UuidPipe) credentialId: string): Promise<void> {
    return this.webauthn.remove(actor, id, credentialId, 'admin');
  }
}

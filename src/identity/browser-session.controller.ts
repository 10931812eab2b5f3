import { Body, Controller, Delete, Get, HttpCode, Inject, Ip, Post, Req, Res } from '@nestjs/common';
import { ApiNoContentResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { AllowWithoutMfa, CurrentActor, Public, Roles } from '../common/auth.decorators';
import { ApiErrors } from '../common/api-errors';
import { ApiAnswer } from '../common/api-responses';
import { normalizeAddress } from '../common/client-address';
import { DomainException, Errors } from '../common/errors';
import { Actor, ROLES } from '../common/actor';
import { APP_CONFIG, AppConfig } from '../config/config';
import { BrowserSessionRef, browserSessionOf, BrowserSessionsService, BrowserSessionView } from './browser-sessions';
import { BrowserSessionViewSchema, LoginDto } from './identity.dto';
import { clearSessionCookie, fromAnotherSite, readSessionCookie, setSessionCookie } from './session-cookie';

/** The web portal's sign-in: a browser session in an HttpOnly cookie instead of a bearer token (README "Web portal"). */
@ApiTags('Identity')
@Controller('v1/auth/session')
export class BrowserSessionController {
  constructor(
    private readonly sessions: BrowserSessionsService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  @ApiOperation({
    summary: 'Sign in to the web portal: password, then the TOTP code once enrolled',
    description:
      'The same checks, throttling and audit as POST /v1/auth/login, but the session goes into an HttpOnly, SameSite=Strict cookie (`vault_session`; `__Host-vault_session`, Secure, over HTTPS), never into the body. The body carries the CSRF token every request that changes something must send in `X-CSRF-Token`. A session the browser already had ends. Refused (403 CSRF_FAILED) when a page of another site sends it.',
  })
  @ApiOkResponse({ description: 'Signed in: `{csrfToken, expiresAt, idleTimeoutSeconds, mfaEnrollmentRequired, user}` and the session cookie.' })
  @ApiErrors('UNAUTHENTICATED', 'MFA_REQUIRED', 'MFA_INVALID', 'MFA_REPLAYED', 'THROTTLED', 'CSRF_FAILED')
  @ApiAnswer(BrowserSessionViewSchema)
  @Public()
  @Post()
  @HttpCode(200)
  async signIn(@Body() dto: LoginDto, @Ip() ip: string, @Req() req: Request, @Res({ passthrough: true }) res: Response): Promise<BrowserSessionView> {
    // login CSRF: another site's page must not sign this browser in (to the attacker's account)
    if (fromAnotherSite(req)) throw new DomainException('CSRF_FAILED', 'sign in from the portal itself');
    const presented = readSessionCookie(req, this.config);
    const { token, view } = await this.sessions.signIn(dto, normalizeAddress(ip), presented.kind === 'one' ? presented.value : undefined);
    setSessionCookie(req, res, this.config, token);
    return view;
  }

  @ApiOperation({
    summary: 'The current browser session: its CSRF token again (for a reloaded page), its end and who is signed in',
    description:
      'Answers only to the session cookie (404 NOT_FOUND for a bearer token). Like every request by cookie it counts as activity for the idle timeout unless sent with `X-Session-Activity: passive` (background polling).',
  })
  @ApiOkResponse({ description: '`{csrfToken, expiresAt, idleTimeoutSeconds, mfaEnrollmentRequired, user}`' })
  @ApiAnswer(BrowserSessionViewSchema)
  @Roles(...ROLES)
  @AllowWithoutMfa()
  @Get()
  current(@CurrentActor() actor: Actor, @Req() req: Request): Promise<BrowserSessionView> {
    return this.sessions.current(actor, this.sessionOf(req));
  }

  @ApiOperation({
    summary: 'Sign out of the web portal',
    description: 'Ends the session server-side (a copy of the cookie is worth nothing afterwards) and clears the cookie. Needs `X-CSRF-Token`.',
  })
  @ApiNoContentResponse({ description: 'Signed out.' })
  @ApiErrors('CSRF_FAILED')
  @Roles(...ROLES)
  @AllowWithoutMfa()
  @Delete()
  @HttpCode(204)
  async signOut(@CurrentActor() actor: Actor, @Ip() ip: string, @Req() req: Request, @Res({ passthrough: true }) res: Response): Promise<void> {
    await this.sessions.signOut(actor, this.sessionOf(req), normalizeAddress(ip));
    clearSessionCookie(req, res, this.config);
  }

  private sessionOf(req: Request): BrowserSessionRef {
    const session = browserSessionOf(req);
    if (!session) throw Errors.notFound('browser session (this request was authenticated by a bearer token)');
    return session;
  }
}

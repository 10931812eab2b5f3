import { Body, Controller, Delete, Get, HttpCode, Inject, Ip, Param, PipeTransform, Post, Put, Req, Res } from '@nestjs/common';
import { ApiFoundResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { Actor } from '../../common/actor';
import { ApiErrors } from '../../common/api-errors';
import { ApiAnswer } from '../../common/api-responses';
import { CurrentActor, Public, RequiresMfa, Roles } from '../../common/auth.decorators';
import { normalizeAddress } from '../../common/client-address';
import { Errors } from '../../common/errors';
import { APP_CONFIG, AppConfig } from '../../config/config';
import { LoginResponse } from '../identity.dto';
import { BROWSER_SESSION_PREFIX } from '../sessions';
import { readSessionCookie, setSessionCookie } from '../session-cookie';
import { clearBindingCookie, readBindingCookie, setBindingCookie } from './oidc-cookie';
import { DeviceAuthorizationView, DeviceTokenDto, OidcProviderList, OidcProviderView, OidcSignInOptions, OidcSignInOption, PROVIDER_NAME, PutOidcProviderDto } from './oidc.dto';
import { OidcProvidersService } from './oidc-providers.service';
import { OidcSignInService } from './oidc-sign-in.service';

/** `:name` of a provider: [a-z0-9-]{1,40}, else 400. */
const ProviderNamePipe: PipeTransform<string, string> = {
  transform: (v: string) => {
    if (!PROVIDER_NAME.test(v)) throw Errors.validation('name: must be 1-40 lowercase letters, digits or dashes');
    return v;
  },
};

/** Single-valued query parameters only (a repeated one is dropped: nothing here takes a list). */
function queryOf(req: Request): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of new URL(req.originalUrl, 'http://vault.invalid').searchParams) out[k] = k in out ? '' : v;
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== ''));
}

@ApiTags('Single sign-on')
@Controller('v1/oidc-providers')
export class OidcProvidersController {
  constructor(private readonly providers: OidcProvidersService) {}

  @ApiOperation({ summary: 'List the OpenID Connect identity providers (never their client secrets)' })
  @ApiAnswer(OidcProviderList)
  @Roles('admin')
  @Get()
  list(): Promise<OidcProviderView[]> {
    return this.providers.list();
  }

  @ApiOperation({
    summary: 'Create or replace an OpenID Connect identity provider',
    description:
      '`clientSecret` is write-only (stored encrypted; answers say `clientSecretSet`); left out on a replace, the stored one stays. `groupRoles` maps IdP groups (the `groupsClaim` claim of the ID token) to vault roles; a user none of whose groups is mapped gets no access. The issuer must be https (http only on a loopback host). Users are bound to subjects at the issuer: moving a provider with users to another issuer is refused. `enabled: false` refuses its sign-ins and ends at once every bearer token and browser session of its users (a compromised or misconfigured provider).',
  })
  @ApiErrors('OIDC_PROVIDER_IN_USE')
  @ApiAnswer(OidcProviderView)
  @Roles('admin')
  @RequiresMfa()
  @Put(':name')
  put(@CurrentActor() actor: Actor, @Param('name', ProviderNamePipe) name: string, @Body() dto: PutOidcProviderDto): Promise<OidcProviderView> {
    return this.providers.put(actor, name, dto);
  }

  @ApiOperation({ summary: 'Remove an identity provider (refused while users are bound to it: disable it instead)' })
  @ApiErrors('OIDC_PROVIDER_IN_USE')
  @Roles('admin')
  @RequiresMfa()
  @Delete(':name')
  @HttpCode(204)
  remove(@CurrentActor() actor: Actor, @Param('name', ProviderNamePipe) name: string): Promise<void> {
    return this.providers.remove(actor, name);
  }
}

@ApiTags('Single sign-on')
@Controller('v1/auth/oidc')
export class OidcSignInController {
  constructor(
    private readonly signIn: OidcSignInService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  @ApiOperation({ summary: 'The enabled identity providers (public: the sign-in page shows a button for each)' })
  @ApiAnswer(OidcSignInOptions)
  @Public()
  @Get('providers')
  options(): Promise<OidcSignInOption[]> {
    return this.signIn.options();
  }

  @ApiOperation({
    summary: 'Start signing in to the web portal with an identity provider (public; a browser navigation)',
    description:
      'Redirects (302) to the provider: authorization code flow with PKCE (S256), state and nonce; the state is bound to this browser by an HttpOnly, SameSite=Lax cookie scoped to /v1/auth/oidc. `?returnTo=/portal/…` is where the browser lands after signing in (only a portal path; anything else: /portal/). An unknown or disabled provider is 404 NOT_FOUND; one that does not answer (discovery) redirects to /portal/sign-in?error=OIDC_PROVIDER_UNAVAILABLE; more than VAULT_OIDC_STARTS_PER_MINUTE starts (browser and device) from one address in a minute redirect to /portal/sign-in?error=THROTTLED.',
  })
  @ApiFoundResponse({ description: 'To the identity provider (or to /portal/sign-in?error=CODE).' })
  @Public()
  @Get(':name/start')
  async start(@Param('name', ProviderNamePipe) name: string, @Ip() ip: string, @Req() req: Request, @Res() res: Response): Promise<void> {
    const { location, binding } = await this.signIn.start(name, queryOf(req).returnTo, normalizeAddress(ip));
    if (binding !== undefined) setBindingCookie(req, res, this.config, binding);
    res.redirect(302, location);
  }

  @ApiOperation({
    summary: 'Where the identity provider sends the browser back (public; a browser navigation)',
    description:
      'Checks the state against a sign-in this browser started (its cookie), exchanges the code, verifies the ID token in full (signature, issuer, audience, expiry, nonce), maps the groups to roles, creates the user at the first sign-in and sets a browser session exactly as the password sign-in does; then 302 to the `returnTo` of the start. Every refusal redirects to /portal/sign-in?error=CODE (OIDC_STATE_INVALID, OIDC_TOKEN_INVALID, OIDC_NO_ROLES, OIDC_USERNAME_TAKEN, OIDC_USERNAME_INVALID, OIDC_ACCOUNT_DISABLED, OIDC_PROVIDER_UNAVAILABLE, ACCESS_DENIED) and is audited. The CSRF token comes from GET /v1/auth/session.',
  })
  @ApiFoundResponse({ description: 'To the portal: the `returnTo` page, or /portal/sign-in?error=CODE.' })
  // never answered as errors: these are the codes the redirect carries in ?error=
  @ApiErrors('OIDC_STATE_INVALID', 'OIDC_TOKEN_INVALID', 'OIDC_PROVIDER_UNAVAILABLE', 'ACCESS_DENIED', 'OIDC_NO_ROLES', 'OIDC_USERNAME_TAKEN', 'OIDC_USERNAME_INVALID', 'OIDC_ACCOUNT_DISABLED')
  @Public()
  @Get('callback')
  async callback(@Ip() ip: string, @Req() req: Request, @Res() res: Response): Promise<void> {
    const binding = readBindingCookie(req, this.config);
    const presented = readSessionCookie(req, this.config);
    const session = presented.kind === 'one' && presented.value.startsWith(BROWSER_SESSION_PREFIX) && presented.value.length <= 100 ? presented.value : undefined;
    const outcome = await this.signIn.callback(queryOf(req), binding, session, normalizeAddress(ip));
    clearBindingCookie(req, res, this.config);
    if (outcome.sessionToken !== undefined) setSessionCookie(req, res, this.config, outcome.sessionToken);
    res.redirect(302, outcome.location);
  }

  @ApiOperation({
    summary: 'Start signing in a command-line client with an identity provider (device flow; public)',
    description:
      'Answers the user code and the page where the user enters it at the provider; the client then polls POST /v1/auth/oidc/device/token with `deviceCode` (a handle of the vault: the provider\'s device code never leaves the vault) every `interval` seconds. At most VAULT_OIDC_STARTS_PER_MINUTE starts per client address and minute (429 THROTTLED).',
  })
  @ApiErrors('OIDC_PROVIDER_UNAVAILABLE', 'THROTTLED')
  @ApiAnswer(DeviceAuthorizationView)
  @Public()
  @Post(':name/device')
  @HttpCode(200)
  device(@Param('name', ProviderNamePipe) name: string, @Ip() ip: string): Promise<DeviceAuthorizationView> {
    return this.signIn.startDevice(name, normalizeAddress(ip));
  }

  @ApiOperation({
    summary: 'Poll a device sign-in (public): a bearer token once the user approved at the identity provider',
    description:
      'Until then 400 AUTHORIZATION_PENDING; SLOW_DOWN when polled within `interval` seconds of the last poll (the answer says the interval); EXPIRED_TOKEN when unknown, expired or used; ACCESS_DENIED when the user refused. Then the same answer as POST /v1/auth/login, the user provisioned and their roles mapped as for the portal.',
  })
  @ApiErrors('AUTHORIZATION_PENDING', 'SLOW_DOWN', 'EXPIRED_TOKEN', 'ACCESS_DENIED', 'OIDC_PROVIDER_UNAVAILABLE', 'OIDC_TOKEN_INVALID', 'OIDC_NO_ROLES', 'OIDC_USERNAME_TAKEN', 'OIDC_USERNAME_INVALID', 'OIDC_ACCOUNT_DISABLED')
  @ApiAnswer(LoginResponse)
  @Public()
  @Post('device/token')
  @HttpCode(200)
  deviceToken(@Body() dto: DeviceTokenDto, @Ip() ip: string): Promise<LoginResponse> {
    return this.signIn.pollDevice(dto.deviceCode, normalizeAddress(ip));
  }
}

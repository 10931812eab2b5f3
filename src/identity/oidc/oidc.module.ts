import { Module } from '@nestjs/common';
import { IdentityModule } from '../identity.module';
import { ThrottleService } from '../throttle.service';
import { OidcAccounts } from './oidc-accounts';
import { OidcClients } from './oidc-clients';
import { OidcProvidersController, OidcSignInController } from './oidc.controller';
import { OidcProvidersService } from './oidc-providers.service';
import { OidcRecheckService } from './oidc-recheck.service';
import { OidcSignInService } from './oidc-sign-in.service';

/** Single sign-on with OpenID Connect (README "Single sign-on"): provider admin, portal sign-in, CLI device sign-in. */
@Module({
  imports: [IdentityModule],
  controllers: [OidcProvidersController, OidcSignInController],
  providers: [OidcClients, OidcAccounts, OidcProvidersService, OidcSignInService, OidcRecheckService, ThrottleService],
  exports: [OidcRecheckService],
})
export class OidcModule {}

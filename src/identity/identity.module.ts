import { Module } from '@nestjs/common';
import { PassportModule } from '@nestjs/passport';
import { BearerStrategy } from './bearer.strategy';
import { BrowserSessionController } from './browser-session.controller';
import { BrowserSessionsService } from './browser-sessions';
import { IdentityController } from './identity.controller';
import { IdentityService } from './identity.service';
import { MfaService } from './mfa.service';
import { PasswordHasher } from './password-hasher';
import { PasswordLoginPolicy } from './password-login';
import { ServiceTokensController } from './service-tokens.controller';
import { ServiceTokensService } from './service-tokens.service';
import { ThrottleService } from './throttle.service';
import { TotpService } from './totp.service';
import { UsersController } from './users.controller';
import { UsersService } from './users.service';
import { UserWebAuthnController, WebAuthnController } from './webauthn/webauthn.controller';
import { WebAuthnService } from './webauthn/webauthn.service';

@Module({
  imports: [PassportModule],
  controllers: [IdentityController, BrowserSessionController, UsersController, ServiceTokensController, WebAuthnController, UserWebAuthnController],
  providers: [IdentityService, PasswordHasher, BearerStrategy, MfaService, TotpService, ThrottleService, UsersService, ServiceTokensService, BrowserSessionsService, WebAuthnService, PasswordLoginPolicy],
  exports: [IdentityService, PasswordHasher, MfaService, UsersService, BrowserSessionsService],
})
export class IdentityModule {}

import { Module } from '@nestjs/common';
import { PassportModule } from '@nestjs/passport';
import { BearerStrategy } from './bearer.strategy';
import { IdentityController } from './identity.controller';
import { IdentityService } from './identity.service';
import { PasswordHasher } from './password-hasher';

@Module({
  imports: [PassportModule],
  controllers: [IdentityController],
  providers: [IdentityService, PasswordHasher, BearerStrategy],
  exports: [IdentityService, PasswordHasher],
})
export class IdentityModule {}

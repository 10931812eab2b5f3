import { Global, Module } from '@nestjs/common';
import { KeyringService } from './keyring.service';
import { PasswordGenerator } from './password-generator';
import { SecretBoxService } from './secret-box.service';

@Global()
@Module({
  providers: [KeyringService, SecretBoxService, PasswordGenerator],
  exports: [KeyringService, SecretBoxService, PasswordGenerator],
})
export class CryptoModule {}

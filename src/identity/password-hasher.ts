import { Inject, Injectable } from '@nestjs/common';
import { hash, verify } from '@node-rs/argon2';

/** @node-rs/argon2's const enum Algorithm.Argon2id (const enums cannot be imported under isolatedModules). */
const ARGON2ID = 2;
import { APP_CONFIG, AppConfig } from '../config/config';

/** argon2id with the parameters from configuration. */
@Injectable()
export class PasswordHasher {
  private dummy?: Promise<string>;

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

  hash(password: string): Promise<string> {
    return hash(password, { algorithm: ARGON2ID, ...this.config.argon2 });
  }

  async verify(passwordHash: string, password: string): Promise<boolean> {
    try {
      return await verify(passwordHash, password);
    } catch {
      return false;
    }
  }

  /** Spends the same time as a real check, so an unknown username is not revealed by timing. */
  async burn(password: string): Promise<false> {
    this.dummy ??= this.hash('pam-vault-timing-equaliser');
    await this.verify(await this.dummy, password);
    return false;
  }
}

import { Injectable } from '@nestjs/common';
import { generateSecret, generateURI, verify } from 'otplib';
import { Clock } from '../common/clock';

export const TOTP_PERIOD_SECONDS = 30;
const ISSUER = 'pam-vault';

/**
 * RFC 6238 TOTP (SHA-1, 6 digits, 30 s steps: what Google Authenticator, 1Password and oathtool expect),
 * accepting one step of drift either way. Time comes from the injectable clock.
 */
@Injectable()
export class TotpService {
  constructor(private readonly clock: Clock) {}

  /** A new base32 seed of 20 random bytes. */
  newSecret(): string {
    return generateSecret({ length: 20 });
  }

  uri(username: string, secret: string): string {
    return generateURI({ issuer: ISSUER, label: username, secret });
  }

  /** The time step `code` belongs to (current ±1), or null when it matches none. */
  async matchStep(secret: string, code: string): Promise<number | null> {
    if (!/^\d{6}$/.test(code)) return null;
    const epoch = Math.floor(this.clock.now().getTime() / 1000);
    const result = await verify({ secret, token: code, epoch, epochTolerance: TOTP_PERIOD_SECONDS });
    return result.valid ? (result as { timeStep: number }).timeStep : null;
  }

  currentStep(): number {
    return Math.floor(this.clock.now().getTime() / 1000 / TOTP_PERIOD_SECONDS);
  }
}

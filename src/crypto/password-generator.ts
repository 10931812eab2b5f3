import { randomInt } from 'node:crypto';
import { Injectable } from '@nestjs/common';

export type TargetType = 'ssh' | 'postgres' | 'mysql';
export type CharClass = 'lower' | 'upper' | 'digit' | 'symbol';

export interface PasswordPolicy {
  length: number;
  classes: CharClass[];
}

export const PASSWORD_MIN_LENGTH = 16;
export const PASSWORD_MAX_LENGTH = 128;
export const DEFAULT_PASSWORD_POLICY: PasswordPolicy = { length: 32, classes: ['lower', 'upper', 'digit', 'symbol'] };

/**
 * Symbols each target type accepts without quoting trouble: nothing a shell, a SQL literal, a
 * connection URI or `chpasswd`'s line format could misread (no quotes, backslash, space, `$`, backtick).
 */
const SYMBOLS: Record<TargetType, string> = {
  ssh: '-_.,:=+@%^~',
  postgres: '-_.~!*+=^',
  mysql: '-_.~!*+=^#',
};

const CLASSES: Record<Exclude<CharClass, 'symbol'>, string> = {
  lower: 'abcdefghijkmnopqrstuvwxyz',
  upper: 'ABCDEFGHJKLMNPQRSTUVWXYZ',
  digit: '23456789',
};

export function alphabetFor(cls: CharClass, type: TargetType): string {
  return cls === 'symbol' ? SYMBOLS[type] : CLASSES[cls];
}

/**
 * CSPRNG passwords: at least one character of every required class, the rest drawn uniformly from
 * their union (crypto.randomInt is unbiased), then shuffled so the guaranteed characters sit anywhere.
 */
@Injectable()
export class PasswordGenerator {
  generate(type: TargetType, policy: PasswordPolicy = DEFAULT_PASSWORD_POLICY): string {
    const classes = [...new Set(policy.classes)];
    if (classes.length === 0) throw new RangeError('a password policy needs at least one character class');
    if (!Number.isInteger(policy.length) || policy.length < Math.max(PASSWORD_MIN_LENGTH, classes.length) || policy.length > PASSWORD_MAX_LENGTH) {
      throw new RangeError(`password length must be between ${PASSWORD_MIN_LENGTH} and ${PASSWORD_MAX_LENGTH}`);
    }
    const alphabets = classes.map((c) => alphabetFor(c, type));
    const all = alphabets.join('');
    const chars = alphabets.map(pick);
    while (chars.length < policy.length) chars.push(pick(all));
    for (let i = chars.length - 1; i > 0; i--) {
      const j = randomInt(i + 1);
      [chars[i], chars[j]] = [chars[j], chars[i]];
    }
    return chars.join('');
  }
}

function pick(alphabet: string): string {
  return alphabet[randomInt(alphabet.length)];
}

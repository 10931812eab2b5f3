import { Clock } from '../common/clock';
import { base32Decode, hotp } from '../../test/support/totp';
import { TotpService } from './totp.service';

/** RFC 6238 Appendix B, SHA-1 rows: seed "12345678901234567890", 8 digits. */
const RFC6238_SHA1: Array<[number, string]> = [
  [59, '94287082'],
  [1111111109, '07081804'],
  [1111111111, '14050471'],
  [1234567890, '89005924'],
  [2000000000, '69279037'],
  [20000000000, '65353130'],
];
const RFC_SEED_BASE32 = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ';

class FixedClock extends Clock {
  constructor(public seconds: number) {
    super();
  }
  override now(): Date {
    return new Date(this.seconds * 1000);
  }
}

describe('TOTP against RFC 6238 Appendix B', () => {
  it('the independent test implementation reproduces the RFC vectors', () => {
    const key = base32Decode(RFC_SEED_BASE32);
    expect(key.toString('ascii')).toBe('12345678901234567890');
    for (const [t, code] of RFC6238_SHA1) expect(hotp(key, Math.floor(t / 30), 8)).toBe(code);
  });

  it.each(RFC6238_SHA1)('the vault accepts the RFC code at T=%s (6-digit form) in its own time step', async (t, code8) => {
    const totp = new TotpService(new FixedClock(t));
    expect(await totp.matchStep(RFC_SEED_BASE32, code8.slice(2))).toBe(Math.floor(t / 30));
  });

  it('accepts one step of drift either way and no more', async () => {
    const clock = new FixedClock(1234567890);
    const totp = new TotpService(clock);
    const key = base32Decode(RFC_SEED_BASE32);
    const step = Math.floor(1234567890 / 30);
    for (const d of [-1, 0, 1]) expect(await totp.matchStep(RFC_SEED_BASE32, hotp(key, step + d))).toBe(step + d);
    for (const d of [-3, -2, 2, 3]) expect(await totp.matchStep(RFC_SEED_BASE32, hotp(key, step + d))).toBeNull();
  });

  it.each(['', '12345', '1234567', 'abcdef', '12 456'])('refuses a malformed code %j', async (code) => {
    expect(await new TotpService(new FixedClock(59)).matchStep(RFC_SEED_BASE32, code)).toBeNull();
  });

  it('makes 160-bit seeds and otpauth URIs that authenticator apps read', () => {
    const totp = new TotpService(new Clock());
    const seed = totp.newSecret();
    expect(base32Decode(seed)).toHaveLength(20);
    const uri = new URL(totp.uri('alice', seed));
    expect(uri.protocol).toBe('otpauth:');
    expect(uri.host).toBe('totp');
    expect(decodeURIComponent(uri.pathname)).toBe('/pam-vault:alice');
    expect(uri.searchParams.get('secret')).toBe(seed);
    expect(uri.searchParams.get('issuer')).toBe('pam-vault');
  });
});

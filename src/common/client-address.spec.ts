import { normalizeAddress } from './client-address';

describe('normalizeAddress', () => {
  it.each([
    ['198.51.100.1', '198.51.100.1'],
    ['::ffff:198.51.100.1', '198.51.100.1'],
    ['::FFFF:198.51.100.1', '198.51.100.1'],
    ['2001:db8::1', '2001:0db8:0000:0000::/64'],
    ['2001:DB8:0:0::1', '2001:0db8:0000:0000::/64'],
    ['2001:db8:0:0:ffff:1:2:3', '2001:0db8:0000:0000::/64'],
    ['2001:db8:0:1::1', '2001:0db8:0000:0001::/64'],
    ['::1', '0000:0000:0000:0000::/64'],
    ['fe80::1%eth0', 'fe80:0000:0000:0000::/64'],
    ['64:ff9b::192.0.2.33', '0064:ff9b:0000:0000::/64'],
    ['not-an-ip\u0085\u00ae', 'invalid'],
    ['x'.repeat(3000), 'invalid'],
    ['', 'unknown'],
    [undefined, 'unknown'],
  ])('%j → %s', (raw, expected) => {
    expect(normalizeAddress(raw)).toBe(expected);
  });
});

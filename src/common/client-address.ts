import { isIP } from 'node:net';

/**
 * The client address as throttling and audit use it: an IPv4 address (IPv4-mapped IPv6 folded back), or the /64 an
 * IPv6 address belongs to (one site or host holds a whole /64: counting each address apart would give it unlimited
 * attempts), or `invalid` for anything that is not an IP address (a junk `X-Forwarded-For` from a trusted proxy never
 * reaches a key or an audit event as given). `unknown` when there is none.
 */
export function normalizeAddress(raw: unknown): string {
  if (typeof raw !== 'string' || raw === '') return 'unknown';
  if (raw.length > 64) return 'invalid';
  let a = raw.trim().toLowerCase();
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(a);
  if (mapped) a = mapped[1];
  const version = isIP(a);
  if (version === 4) return a;
  if (version === 6) return `${expandIpv6(a).slice(0, 4).join(':')}::/64`;
  return 'invalid';
}

/** The eight 16-bit groups of a valid IPv6 address, as 4-digit hex (a zone index is dropped). */
function expandIpv6(address: string): string[] {
  let a = address.split('%')[0];
  const v4 = /(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(a);
  if (v4) {
    const [b1, b2, b3, b4] = v4.slice(1).map(Number);
    a = `${a.slice(0, v4.index)}${((b1 << 8) | b2).toString(16)}:${((b3 << 8) | b4).toString(16)}`;
  }
  const [head, tail] = a.includes('::') ? a.split('::') : [a, undefined];
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const middle = tail === undefined ? [] : Array(8 - left.length - right.length).fill('0');
  return [...left, ...middle, ...right].map((g) => g.padStart(4, '0'));
}

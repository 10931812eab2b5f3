import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import { DeliveryError } from './sender';

/**
 * Where a webhook, Slack or Teams message may go: public addresses only. A channel's URL is chosen by an administrator,
 * but the vault's network position is not theirs to borrow: loopback, private, link-local, unique-local, CGNAT,
 * multicast, reserved and unspecified addresses (and with them the cloud metadata services: 169.254.169.254,
 * fd00:ec2::254, 100.100.100.200, 192.0.0.192) are refused, unless the host or the address is listed in
 * VAULT_NOTIFY_ALLOWED_HOSTS (a receiver on the vault's own machine or network, on purpose).
 */
const REFUSED = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], // "this network", unspecified
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // CGNAT (Alibaba's metadata 100.100.100.200)
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local (the metadata service 169.254.169.254)
  ['172.16.0.0', 12],
  ['192.0.0.0', 24], // IETF protocol assignments (Oracle's metadata 192.0.0.192)
  ['192.0.2.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const) {
  REFUSED.addSubnet(net, prefix, 'ipv4');
}
for (const [net, prefix] of [
  ['::', 128], // unspecified
  ['::1', 128], // loopback
  ['::', 96], // IPv4-compatible (deprecated)
  ['100::', 64], // discard
  ['2001:db8::', 32], // documentation
  ['fc00::', 7], // unique local (fd00:ec2::254)
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8], // multicast
] as const) {
  REFUSED.addSubnet(net, prefix, 'ipv6');
}

/** The IPv4 address an IPv6 one carries (mapped ::ffff:a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002::/16), if any. */
function embeddedIpv4(v6: string): string | undefined {
  const words = expandIpv6(v6);
  if (!words) return undefined;
  const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) return v4(words[6], words[7]);
  if (words[0] === 0x64 && words[1] === 0xff9b && words.slice(2, 6).every((w) => w === 0)) return v4(words[6], words[7]);
  if (words[0] === 0x2002) return v4(words[1], words[2]);
  return undefined;
}

/** The eight 16-bit words of an IPv6 address (a dotted IPv4 tail included). */
function expandIpv6(addr: string): number[] | undefined {
  let a = addr.toLowerCase().replace(/%.*$/, '');
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (dotted) {
    const p = dotted[1].split('.').map(Number);
    a = `${a.slice(0, -dotted[1].length)}${((p[0] << 8) | p[1]).toString(16)}:${((p[2] << 8) | p[3]).toString(16)}`;
  }
  const [head, tail] = a.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const fill = tail === undefined ? [] : new Array<string>(8 - h.length - t.length).fill('0');
  const words = [...h, ...fill, ...t].map((w) => parseInt(w, 16));
  return words.length === 8 && words.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffff) ? words : undefined;
}

/** Whether an address (IPv4 or IPv6, no brackets) is one the vault never posts to unless allowed. */
export function isRefusedAddress(address: string): boolean {
  const bare = address.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  const family = isIP(bare);
  if (family === 4) return REFUSED.check(bare, 'ipv4');
  if (family !== 6) return true; // not an address: never connected to
  const v4 = embeddedIpv4(bare);
  if (v4 !== undefined) return REFUSED.check(v4, 'ipv4');
  return REFUSED.check(bare, 'ipv6');
}

/** The egress rule of one vault: what VAULT_NOTIFY_ALLOWED_HOSTS lets through besides public addresses. */
export class EgressPolicy {
  private readonly hosts: ReadonlySet<string>;
  private readonly nets = new BlockList();

  constructor(allowed: { hosts: readonly string[]; nets: readonly string[] } = { hosts: [], nets: [] }) {
    this.hosts = new Set(allowed.hosts.map((h) => h.toLowerCase()));
    for (const n of allowed.nets) {
      const [addr, prefix] = n.split('/');
      const type = isIP(addr) === 4 ? 'ipv4' : 'ipv6';
      if (prefix === undefined) this.nets.addAddress(addr, type);
      else this.nets.addSubnet(addr, Number(prefix), type);
    }
  }

  /** Whether the host name itself is listed (its addresses are then not checked). */
  hostAllowed(hostname: string): boolean {
    return this.hosts.has(bareHost(hostname));
  }

  /** Whether the vault may connect to this address for this host. */
  addressAllowed(hostname: string, address: string): boolean {
    if (this.hostAllowed(hostname)) return true;
    const bare = address.replace(/^\[|\]$/g, '');
    const family = isIP(bare);
    if (family && this.nets.check(bare, family === 4 ? 'ipv4' : 'ipv6')) return true;
    const v4 = family === 6 ? embeddedIpv4(bare) : undefined;
    if (v4 && this.nets.check(v4, 'ipv4')) return true;
    return !isRefusedAddress(bare);
  }

  /**
   * Refused at the channel's creation or change: a URL whose host is an address (or `localhost`) the vault may not
   * post to. A name is resolved only when a message is sent (its addresses may change): null when the URL is fine.
   */
  literalProblem(url: string): string | null {
    let host: string;
    try {
      host = bareHost(new URL(url).hostname);
    } catch {
      return null; // the URL's own validators say what is wrong with it
    }
    if (this.hostAllowed(host)) return null;
    const loopbackName = host === 'localhost' || host.endsWith('.localhost');
    if (!loopbackName && !isIP(host)) return null;
    if (!loopbackName && this.addressAllowed(host, host)) return null;
    return 'is a loopback, private, link-local or otherwise internal address: the vault posts only to public addresses (unless VAULT_NOTIFY_ALLOWED_HOSTS lists it)';
  }

  /**
   * The address the message goes to: the host resolved (every address it has must be allowed), and that one address
   * is what the connection uses (no second resolution a rebinding DNS server could answer differently).
   * WEBHOOK_ADDRESS_REFUSED (not retried) names no address; a name that does not resolve is WEBHOOK_UNREACHABLE.
   */
  async vet(hostname: string, what: string): Promise<{ address: string; family: 4 | 6 }> {
    const host = bareHost(hostname);
    const literal = isIP(host);
    let found: Array<{ address: string; family: number }>;
    if (literal) found = [{ address: host, family: literal }];
    else {
      try {
        found = await lookup(host, { all: true, verbatim: true });
      } catch {
        throw unreachable(what);
      }
    }
    if (found.length === 0) throw unreachable(what);
    if (found.some((a) => !this.addressAllowed(host, a.address))) {
      throw new DeliveryError('WEBHOOK_ADDRESS_REFUSED', `the ${what}'s host is an internal address: the vault posts only to public addresses (VAULT_NOTIFY_ALLOWED_HOSTS)`, false);
    }
    return { address: found[0].address, family: found[0].family === 6 ? 6 : 4 };
  }
}

const bareHost = (h: string) => h.toLowerCase().replace(/^\[|\]$/g, '').replace(/\.$/, '');

/** Any failure to reach the receiver: one code and one message (refused, reset, closed, no such name alike). */
export const unreachable = (what: string) => new DeliveryError('WEBHOOK_UNREACHABLE', `the ${what} could not be reached`, true);

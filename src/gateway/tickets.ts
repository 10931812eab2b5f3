import { createHash, randomBytes } from 'node:crypto';
import { utils } from 'ssh2';
import { Errors } from '../common/errors';

/**
 * Connection tickets of the SSH gateway: `vgt_` + 32 random bytes (base64url). Only their SHA-256 is stored; a ticket
 * is shown once, in the answer to the MFA-verified connect call, and is spent at the first authentication that
 * presents it (docs/architecture.md, "SSH gateway").
 */
export const TICKET_PREFIX = 'vgt_';
export const TICKET_TTL_SECONDS = 60;
const TICKET = /^vgt_[A-Za-z0-9_-]{43}$/;

export function newTicket(): string {
  return `${TICKET_PREFIX}${randomBytes(32).toString('base64url')}`;
}

/** What is stored and looked up: SHA-256 of the ticket text. Anything not shaped like a ticket has no hash (never found). */
export function ticketHash(ticket: string): Buffer | null {
  return TICKET.test(ticket) ? createHash('sha256').update(ticket, 'utf8').digest() : null;
}

/** The key algorithms a ticket may be bound to (OpenSSH public key line types). */
const KEY_TYPES = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'ssh-rsa'] as const;
const MIN_RSA_BITS = 2048;

/**
 * An OpenSSH public key line (`ssh-ed25519 AAAA… [comment]`), checked: one of KEY_TYPES, RSA of 2048 bits or more.
 * Answers the key's wire blob (what the client presents at authentication). 400 VALIDATION_FAILED otherwise.
 */
export function parsePublicKeyLine(line: string): Buffer {
  const m = /^(\S+) ([A-Za-z0-9+/]+={0,2})(?: [^\r\n]*)?$/.exec(line.trim());
  if (!m || !(KEY_TYPES as readonly string[]).includes(m[1])) {
    throw Errors.validation(`publicKey: an OpenSSH public key line (${KEY_TYPES.join(', ')}) is expected`);
  }
  const parsed = utils.parseKey(`${m[1]} ${m[2]}`);
  if (parsed instanceof Error || Array.isArray(parsed) || parsed.isPrivateKey() || parsed.type !== m[1]) {
    throw Errors.validation('publicKey: the key does not parse');
  }
  const blob = parsed.getPublicSSH();
  if (m[1] === 'ssh-rsa' && rsaBits(blob) < MIN_RSA_BITS) throw Errors.validation(`publicKey: RSA keys must have at least ${MIN_RSA_BITS} bits`);
  return blob;
}

/** OpenSSH's `SHA256:` fingerprint of a key blob, without the prefix: unpadded base64 of its SHA-256. */
export function keyFingerprint(blob: Buffer): string {
  return createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
}

/** The modulus size of an `ssh-rsa` blob: string type, mpint e, mpint n. */
function rsaBits(blob: Buffer): number {
  let off = 0;
  const next = (): Buffer => {
    const len = blob.readUInt32BE(off);
    const out = blob.subarray(off + 4, off + 4 + len);
    off += 4 + len;
    return out;
  };
  next(); // type
  next(); // e
  const n = next();
  let i = 0;
  while (i < n.length && n[i] === 0) i++;
  if (i === n.length) return 0;
  return (n.length - i - 1) * 8 + (32 - Math.clz32(n[i]));
}

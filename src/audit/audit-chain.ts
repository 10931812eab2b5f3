import { createHmac, timingSafeEqual } from 'node:crypto';
import canonicalize from 'canonicalize';

/**
 * The tamper-evident audit chain, as pure functions.
 *
 * Each event gets a MAC over its canonical form when it is written, inside the action's own transaction
 * (HMAC-SHA256 under the keyring's audit key, which never leaves the vault). A sealer then links committed
 * events in a short separate step: it gives each one the next `seq` and
 * `chainHash = HMAC(key, prevHash || seq || mac)`, and records the head (last seq and hash, MACed too).
 * Without the key nobody can forge a MAC, so an edited, inserted, deleted or reordered event breaks the
 * check of that event or of the next link, and a truncated tail no longer matches the head.
 */
export interface AuditEventContent {
  id: string;
  at: Date;
  type: string;
  actorId: string | null;
  subjectType: string;
  subjectId: string | null;
  outcome: string;
  details: Record<string, unknown>;
}

export interface StoredAuditEvent extends AuditEventContent {
  mac: Buffer;
  seq: string | null;
  chainHash: Buffer | null;
}

export interface ChainHead {
  seq: string;
  hash: Buffer;
  mac: Buffer;
}

export const GENESIS_HASH = Buffer.alloc(32);

export function canonicalEvent(e: AuditEventContent): string {
  return canonicalize({
    v: 1,
    id: String(e.id),
    at: e.at.toISOString(),
    type: e.type,
    actorId: e.actorId,
    subjectType: e.subjectType,
    subjectId: e.subjectId,
    outcome: e.outcome,
    details: e.details,
  }) as string;
}

const hmac = (key: Uint8Array, ...parts: Array<Buffer | string>) => {
  const h = createHmac('sha256', key);
  parts.forEach((p) => h.update(p));
  return h.digest();
};

const seqBytes = (seq: string | bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(seq));
  return b;
};

export function eventMac(key: Uint8Array, e: AuditEventContent): Buffer {
  return hmac(key, 'pam-vault:audit:event:', canonicalEvent(e));
}

export function chainLink(key: Uint8Array, prevHash: Buffer, seq: string | bigint, mac: Buffer): Buffer {
  return hmac(key, 'pam-vault:audit:link:', prevHash, seqBytes(seq), mac);
}

export function headMac(key: Uint8Array, seq: string | bigint, hash: Buffer): Buffer {
  return hmac(key, 'pam-vault:audit:head:', seqBytes(seq), hash);
}

/** Keyed HMAC for a sensitive value that an audit event must mention without revealing. */
export function sensitiveHmac(key: Uint8Array, value: string): string {
  return 'hmac-sha256:' + hmac(key, 'pam-vault:audit:value:', value).toString('base64url');
}

const same = (a: Buffer | null, b: Buffer) => !!a && a.length === b.length && timingSafeEqual(a, b);

/** A head recorded earlier outside the database (from a previous verify): it must still be in the chain. */
export interface ChainAnchor {
  seq: string;
  hash: string;
}

export type VerifyResult =
  | { ok: true; count: number; headSeq: string; headHash: string }
  | { ok: false; firstInvalidId: string | null; reason: string };

/**
 * Streams a chain through: feed sealed events in `seq` order, then unsealed ones, then call finish().
 * Stops at the first problem.
 */
export class ChainVerifier {
  private prevHash: Buffer = GENESIS_HASH;
  private prevSeq = 0n;
  private count = 0;
  private failure?: { firstInvalidId: string | null; reason: string };
  private anchorSeen = false;

  constructor(
    private readonly key: Uint8Array,
    private readonly anchor?: ChainAnchor,
  ) {}

  get failed(): boolean {
    return !!this.failure;
  }

  pushSealed(e: StoredAuditEvent): void {
    if (this.failure) return;
    if (e.seq === null) return this.fail(e.id, 'sealed events fed out of order');
    if (!same(e.mac, eventMac(this.key, e))) return this.fail(e.id, 'event content does not match its MAC (edited or forged)');
    if (BigInt(e.seq) !== this.prevSeq + 1n) return this.fail(e.id, 'gap or duplicate in the chain sequence (event deleted or reordered)');
    const expected = chainLink(this.key, this.prevHash, e.seq, e.mac);
    if (!same(e.chainHash, expected)) return this.fail(e.id, 'chain link does not match the previous event (deleted, inserted or reordered)');
    this.prevHash = expected;
    this.prevSeq = BigInt(e.seq);
    this.count++;
    if (this.anchor && BigInt(this.anchor.seq) === this.prevSeq) {
      if (expected.toString('hex') !== this.anchor.hash) return this.fail(e.id, 'the chain no longer matches the recorded head (rewritten)');
      this.anchorSeen = true;
    }
  }

  pushUnsealed(e: StoredAuditEvent): void {
    if (this.failure) return;
    if (!same(e.mac, eventMac(this.key, e))) return this.fail(e.id, 'unsealed event does not match its MAC (edited or forged)');
    this.count++;
  }

  /** `initialised`: the vault has written events before, so an empty log means they were deleted. */
  finish(head: ChainHead | null, opts: { initialised?: boolean } = {}): VerifyResult {
    if (this.failure) return { ok: false, ...this.failure };
    if (head === null) {
      if (this.prevSeq !== 0n) return { ok: false, firstInvalidId: null, reason: 'chain head is missing' };
      if (opts.initialised) return { ok: false, firstInvalidId: null, reason: 'the audit log is empty but the vault is initialised (events deleted)' };
    } else {
      if (!same(head.mac, headMac(this.key, head.seq, head.hash))) {
        return { ok: false, firstInvalidId: null, reason: 'chain head was altered' };
      }
      if (BigInt(head.seq) !== this.prevSeq || !same(head.hash, this.prevHash)) {
        return { ok: false, firstInvalidId: null, reason: 'chain ends before its recorded head (events deleted from the end)' };
      }
    }
    if (this.anchor && !this.anchorSeen && BigInt(this.anchor.seq) !== 0n) {
      return { ok: false, firstInvalidId: null, reason: 'the recorded head is no longer in the chain (events deleted from the end)' };
    }
    return { ok: true, count: this.count, headSeq: this.prevSeq.toString(), headHash: this.prevHash.toString('hex') };
  }

  private fail(id: string, reason: string): void {
    this.failure = { firstInvalidId: String(id), reason };
  }
}

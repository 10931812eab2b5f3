import { utils } from 'ssh2';
import { newEd25519Pair, wellFormedPair } from '../common/ssh-keys';
import type { SecretBoxService, SecretRef } from '../crypto/secret-box.service';
import type { Queryable } from '../database/claimed-work';
import type { GatewayStore } from './gateway-store';
import { keyFingerprint } from './tickets';

/** Where the gateway's private host key is kept, encrypted. */
const HOST_KEY_REF: SecretRef = { table: 'gateway_host_keys', rowId: '1', column: 'private_key' };

/** The gateway's identity: one ed25519 key for every instance. The private half is in a private field only. */
export class GatewayHostKey {
  readonly #privateKey: string;

  constructor(
    /** `ssh-ed25519 AAAA…` */
    readonly publicKey: string,
    privateKey: string,
    /** OpenSSH SHA256 fingerprint without the prefix. */
    readonly sha256: string,
  ) {
    this.#privateKey = privateKey;
  }

  /** For the ssh2 Server's hostKeys option only. */
  privateKeyPem(): string {
    return this.#privateKey;
  }

  /** `[host]:port ssh-ed25519 AAAA…` for a known_hosts file. */
  knownHostsLine(host: string, port: number): string {
    return `${port === 22 ? host : `[${host}]:${port}`} ${this.publicKey}`;
  }

  toJSON(): { publicKey: string; sha256: string } {
    return { publicKey: this.publicKey, sha256: this.sha256 };
  }
}

/**
 * Reads the host key, generating it first when there is none: INSERT … ON CONFLICT DO NOTHING, then read, so two
 * instances starting at once end up with the same key (the one inserted first). A stored key that is not well formed
 * (ssh2's generator makes one now and then, see newEd25519Pair: it could never have served a client, so nobody pinned
 * it) is replaced the same way.
 */
export async function loadOrCreateHostKey(q: Queryable, store: GatewayStore, secrets: SecretBoxService): Promise<GatewayHostKey> {
  let row = await store.hostKey(q);
  if (!row) {
    const pair = newHostKeyPair();
    await store.insertHostKey(q, pair.public, secrets.encrypt(HOST_KEY_REF, pair.private));
    row = await store.hostKey(q);
    if (!row) throw new Error('the gateway host key was not stored');
  }
  let privateKey = secrets.decrypt(HOST_KEY_REF, row.privateKey);
  let parsed = wellFormed(row.publicKey, privateKey);
  if (!parsed) {
    const pair = newHostKeyPair();
    await store.replaceBrokenHostKey(q, row.publicKey, pair.public, secrets.encrypt(HOST_KEY_REF, pair.private));
    row = await store.hostKey(q);
    if (!row) throw new Error('the gateway host key was not stored');
    privateKey = secrets.decrypt(HOST_KEY_REF, row.privateKey);
    parsed = wellFormed(row.publicKey, privateKey);
    if (!parsed) throw new Error('the stored gateway host key does not parse');
  }
  const [type, b64] = row.publicKey.split(' ');
  return new GatewayHostKey(`${type} ${b64}`, privateKey, keyFingerprint(parsed.getPublicSSH()));
}

/** A new ed25519 host key pair (see newEd25519Pair: never one of ssh2's malformed ones). */
export const newHostKeyPair = (generate?: () => { public: string; private: string }) => newEd25519Pair(utils, undefined, generate);

const wellFormed = (publicKey: string, privateKey: string) => wellFormedPair(utils, publicKey, privateKey);

import { Injectable } from '@nestjs/common';
import { open, seal } from './aead';
import { KeyringService } from './keyring.service';

/** Where a ciphertext lives; it is bound into the associated data so a copied ciphertext fails to decrypt. */
export interface SecretRef {
  table: string;
  rowId: string;
  column: string;
  /** Row fields the secret is only valid together with (e.g. a target's host); changing them breaks decryption. */
  context?: string;
}

const FORMAT = 1;
const HEADER = 5; // format byte + uint32 key version

export function secretAd(ref: SecretRef, keyVersion: number): string {
  const base = `pam-vault:v${FORMAT}:${ref.table}:${ref.rowId}:${ref.column}:${keyVersion}`;
  return ref.context === undefined ? base : `${base}:${ref.context}`;
}

/** Envelope encryption of secrets: format byte, key version, then XChaCha20-Poly1305 box. */
@Injectable()
export class SecretBoxService {
  constructor(private readonly keyring: KeyringService) {}

  encrypt(ref: SecretRef, plaintext: string): Buffer {
    const { version, key } = this.keyring.active();
    const header = Buffer.alloc(HEADER);
    header.writeUInt8(FORMAT, 0);
    header.writeUInt32BE(version, 1);
    return Buffer.concat([header, seal(key, Buffer.from(plaintext, 'utf8'), secretAd(ref, version))]);
  }

  decrypt(ref: SecretRef, blob: Buffer): string {
    const { version, box } = SecretBoxService.parse(blob);
    return Buffer.from(open(this.keyring.dataKey(version), box, secretAd(ref, version))).toString('utf8');
  }

  /** The key version a ciphertext was made with (for re-encryption reports). */
  static parse(blob: Buffer): { version: number; box: Buffer } {
    if (blob.length <= HEADER || blob.readUInt8(0) !== FORMAT) throw new Error('unknown secret format');
    return { version: blob.readUInt32BE(1), box: blob.subarray(HEADER) };
  }
}

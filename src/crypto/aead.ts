import { sodium } from './sodium';

/**
 * XChaCha20-Poly1305 (libsodium) with a random 24-byte nonce, laid out as nonce || ciphertext+tag.
 * Callers must have awaited readySodium() once at boot.
 */
export const KEY_BYTES = 32;

export function seal(key: Uint8Array, plaintext: Uint8Array, associatedData: string): Buffer {
  const nonce = sodium.randombytes_buf(sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
  const ct = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, associatedData, null, nonce, key);
  return Buffer.concat([Buffer.from(nonce), Buffer.from(ct)]);
}

/** Throws DecryptionError when the key, the associated data or a single bit of the box is wrong. */
export function open(key: Uint8Array, box: Uint8Array, associatedData: string): Uint8Array {
  const n = sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
  if (box.length < n + sodium.crypto_aead_xchacha20poly1305_ietf_ABYTES) throw new DecryptionError();
  try {
    return sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
      null,
      box.subarray(n),
      associatedData,
      box.subarray(0, n),
      key,
    );
  } catch {
    throw new DecryptionError();
  }
}

export function randomKey(): Uint8Array {
  return sodium.crypto_aead_xchacha20poly1305_ietf_keygen();
}

/** Carries no detail on purpose: nothing about the key or the plaintext may leak through it. */
export class DecryptionError extends Error {
  constructor() {
    super('decryption failed');
  }
}

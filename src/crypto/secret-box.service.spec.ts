import { randomBytes } from 'node:crypto';
import { randomKey } from './aead';
import { unwrapKey, wrapKey } from './keyring';
import { KeyringService } from './keyring.service';
import { MasterKeyError } from './master-key';
import { SecretBoxService } from './secret-box.service';
import { readySodium } from './sodium';

/** An in-memory keyring: the unit under test is the envelope, not the database. */
class FakeKeyring {
  keys = new Map<number, Uint8Array>([[1, randomKey()]]);
  activeVersion = 1;
  active() {
    return { version: this.activeVersion, key: this.keys.get(this.activeVersion)! };
  }
  dataKey(v: number) {
    const k = this.keys.get(v);
    if (!k) throw new MasterKeyError('missing');
    return k;
  }
}

describe('SecretBoxService (INVARIANT 1)', () => {
  let keyring: FakeKeyring;
  let box: SecretBoxService;
  const ref = { table: 'accounts', rowId: '6f1c1c55-55b5-4c1c-9c3c-111111111111', column: 'password_secret' };

  beforeAll(() => readySodium());
  beforeEach(() => {
    keyring = new FakeKeyring();
    box = new SecretBoxService(keyring as unknown as KeyringService);
  });

  it('round-trips a secret and never stores the plaintext', () => {
    const blob = box.encrypt(ref, 'hunter2-very-secret');
    expect(blob.includes(Buffer.from('hunter2-very-secret'))).toBe(false);
    expect(box.decrypt(ref, blob)).toBe('hunter2-very-secret');
  });

  it('uses a fresh nonce every time', () => {
    expect(box.encrypt(ref, 'same').equals(box.encrypt(ref, 'same'))).toBe(false);
  });

  it('refuses a ciphertext copied to another row', () => {
    const blob = box.encrypt(ref, 'p');
    expect(() => box.decrypt({ ...ref, rowId: '6f1c1c55-55b5-4c1c-9c3c-222222222222' }, blob)).toThrow('decryption failed');
  });

  it('refuses a ciphertext copied to another column or table', () => {
    const blob = box.encrypt(ref, 'p');
    expect(() => box.decrypt({ ...ref, column: 'other_secret' }, blob)).toThrow('decryption failed');
    expect(() => box.decrypt({ ...ref, table: 'targets' }, blob)).toThrow('decryption failed');
  });

  it('refuses a ciphertext whose key version byte was changed', () => {
    keyring.keys.set(2, randomKey());
    const blob = box.encrypt(ref, 'p');
    blob.writeUInt32BE(2, 1);
    expect(() => box.decrypt(ref, blob)).toThrow('decryption failed');
  });

  it('detects a single flipped bit', () => {
    const blob = box.encrypt(ref, 'p');
    blob[blob.length - 1] ^= 1;
    expect(() => box.decrypt(ref, blob)).toThrow('decryption failed');
  });

  it('keeps decrypting old versions after a new data key becomes active', () => {
    const old = box.encrypt(ref, 'old-secret');
    keyring.keys.set(2, randomKey());
    keyring.activeVersion = 2;
    const fresh = box.encrypt(ref, 'new-secret');
    expect(SecretBoxService.parse(old).version).toBe(1);
    expect(SecretBoxService.parse(fresh).version).toBe(2);
    expect(box.decrypt(ref, old)).toBe('old-secret');
    expect(box.decrypt(ref, fresh)).toBe('new-secret');
  });

  it('never puts the secret in the error message', () => {
    const blob = box.encrypt(ref, 'p4ssw0rd-in-error?');
    try {
      box.decrypt({ ...ref, rowId: 'x' }, blob);
      fail('should throw');
    } catch (e) {
      expect(String((e as Error).message)).not.toContain('p4ssw0rd');
    }
  });
});

describe('keyring wrapping (INVARIANT 2)', () => {
  beforeAll(() => readySodium());

  it('unwraps with the right master key only, with a clear error otherwise', () => {
    const master = randomBytes(32);
    const key = randomKey();
    const row = { purpose: 'data' as const, version: 1, wrapped: wrapKey(master, 'data', 1, key) };
    expect(Buffer.from(unwrapKey(master, row).key).equals(Buffer.from(key))).toBe(true);
    expect(() => unwrapKey(randomBytes(32), row)).toThrow(MasterKeyError);
    expect(() => unwrapKey(randomBytes(32), row)).toThrow(/master key does not unlock the keyring/);
  });

  it('binds a wrapped key to its purpose and version', () => {
    const master = randomBytes(32);
    const wrapped = wrapKey(master, 'data', 1, randomKey());
    expect(() => unwrapKey(master, { purpose: 'data', version: 2, wrapped })).toThrow(MasterKeyError);
    expect(() => unwrapKey(master, { purpose: 'audit', version: 1, wrapped })).toThrow(MasterKeyError);
  });
});

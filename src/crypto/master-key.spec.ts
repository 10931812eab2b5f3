import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { decodeMasterKey, MasterKeyError, resolveMasterKey } from './master-key';

describe('master key resolution', () => {
  const dir = () => mkdtempSync(join(tmpdir(), 'mk-'));

  it('takes VAULT_MASTER_KEY first', () => {
    const key = randomBytes(32);
    const got = resolveMasterKey({ masterKey: key.toString('base64'), dataDir: dir() });
    expect(got.origin).toBe('env');
    expect(got.key.equals(key)).toBe(true);
  });

  it('reads VAULT_MASTER_KEY_FILE', () => {
    const key = randomBytes(32);
    const file = join(dir(), 'k');
    writeFileSync(file, key.toString('base64') + '\n');
    const got = resolveMasterKey({ masterKeyFile: file, dataDir: dir() });
    expect(got.origin).toBe('file');
    expect(got.key.equals(key)).toBe(true);
  });

  it('generates a development key once, mode 0600, and reuses it', () => {
    const d = dir();
    const a = resolveMasterKey({ dataDir: d });
    const b = resolveMasterKey({ dataDir: d });
    expect(a.origin).toBe('dev');
    expect(a.key.equals(b.key)).toBe(true);
    expect(statSync(a.devKeyPath!).mode & 0o777).toBe(0o600);
    expect(readFileSync(a.devKeyPath!, 'utf8').trim()).toBe(a.key.toString('base64'));
  });

  it.each([
    ['not base64 at all!', /not base64/],
    [randomBytes(16).toString('base64'), /exactly 32 bytes/],
  ])('refuses a malformed key without echoing it', (value, message) => {
    expect(() => decodeMasterKey(value, 'VAULT_MASTER_KEY')).toThrow(MasterKeyError);
    expect(() => decodeMasterKey(value, 'VAULT_MASTER_KEY')).toThrow(message);
    try {
      decodeMasterKey(value, 'VAULT_MASTER_KEY');
    } catch (e) {
      expect((e as Error).message).not.toContain(value);
    }
  });

  it('names an unreadable key file', () => {
    expect(() => resolveMasterKey({ masterKeyFile: '/nonexistent/key', dataDir: dir() })).toThrow(/cannot be read/);
  });
});

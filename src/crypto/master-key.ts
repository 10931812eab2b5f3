import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { KEY_BYTES } from './aead';

export class MasterKeyError extends Error {}

export interface MasterKeySource {
  key: Buffer;
  /** 'env' | 'file' | 'dev' — 'dev' means generated under the data folder, not for production. */
  origin: 'env' | 'file' | 'dev';
  devKeyPath?: string;
  /** The key file is readable by group or others. */
  looseFilePermissions?: boolean;
}

/** Decodes a base64 master key; the message never contains the value. */
export function decodeMasterKey(text: string, what: string): Buffer {
  const trimmed = text.trim();
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed)) {
    throw new MasterKeyError(`${what} is not base64 (expected ${KEY_BYTES} random bytes, base64-encoded)`);
  }
  const key = Buffer.from(trimmed.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  if (key.length !== KEY_BYTES) {
    throw new MasterKeyError(`${what} must decode to exactly ${KEY_BYTES} bytes (got ${key.length})`);
  }
  return key;
}

/**
 * Finds the master key: VAULT_MASTER_KEY, else VAULT_MASTER_KEY_FILE, else a development key
 * generated once under the data folder (the caller warns loudly about it).
 */
export function resolveMasterKey(opts: { masterKey?: string; masterKeyFile?: string; dataDir: string }): MasterKeySource {
  if (opts.masterKey) return { key: decodeMasterKey(opts.masterKey, 'VAULT_MASTER_KEY'), origin: 'env' };
  if (opts.masterKeyFile) {
    let text: string;
    try {
      text = readFileSync(opts.masterKeyFile, 'utf8');
    } catch {
      throw new MasterKeyError(`VAULT_MASTER_KEY_FILE cannot be read: ${opts.masterKeyFile}`);
    }
    const loose = (statSync(opts.masterKeyFile).mode & 0o077) !== 0;
    return { key: decodeMasterKey(text, 'VAULT_MASTER_KEY_FILE'), origin: 'file', looseFilePermissions: loose };
  }
  const devKeyPath = join(opts.dataDir, 'dev-master.key');
  if (!existsSync(devKeyPath)) {
    mkdirSync(opts.dataDir, { recursive: true });
    try {
      writeFileSync(devKeyPath, randomBytes(KEY_BYTES).toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e; // another instance made it first: use theirs
    }
  }
  chmodSync(devKeyPath, 0o600);
  return { key: decodeMasterKey(readFileSync(devKeyPath, 'utf8'), devKeyPath), origin: 'dev', devKeyPath };
}

export function generateMasterKey(): string {
  return randomBytes(KEY_BYTES).toString('base64');
}

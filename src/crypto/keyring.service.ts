import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { ensureKeyring, unwrapKey, UnwrappedKey } from './keyring';
import { MasterKeyError } from './master-key';
import { readySodium } from './sodium';

export const MASTER_KEY = Symbol('MASTER_KEY');

/** Holds the unwrapped keyring in memory for the life of the process. */
@Injectable()
export class KeyringService implements OnModuleInit {
  private dataKeys = new Map<number, Uint8Array>();
  private activeVersion = 0;
  private auditKeyBytes?: Uint8Array;

  constructor(
    private readonly dataSource: DataSource,
    @Inject(MASTER_KEY) private readonly masterKey: Buffer,
  ) {}

  async onModuleInit(): Promise<void> {
    await readySodium();
    await this.reload();
  }

  /** Re-reads the keyring (after another instance added a data key version, for instance). */
  async reload(): Promise<void> {
    const rows = await ensureKeyring(this.dataSource.manager, this.masterKey);
    const keys: UnwrappedKey[] = rows.map((r) => unwrapKey(this.masterKey, r));
    this.dataKeys = new Map(keys.filter((k) => k.purpose === 'data').map((k) => [k.version, k.key]));
    this.activeVersion = Math.max(...this.dataKeys.keys());
    this.auditKeyBytes = keys.find((k) => k.purpose === 'audit')?.key;
  }

  active(): { version: number; key: Uint8Array } {
    return { version: this.activeVersion, key: this.dataKey(this.activeVersion) };
  }

  dataKey(version: number): Uint8Array {
    const key = this.dataKeys.get(version);
    if (!key) throw new MasterKeyError(`data key version ${version} is not in the keyring`);
    return key;
  }

  auditKey(): Uint8Array {
    if (!this.auditKeyBytes) throw new MasterKeyError('the keyring has no audit key');
    return this.auditKeyBytes;
  }
}

import { EntityManager } from 'typeorm';
import { open, randomKey, seal, DecryptionError } from './aead';
import { MasterKeyError } from './master-key';

/**
 * The keyring: data keys wrapped by the master key, stored in `keyring_keys`.
 * Purpose 'data' is versioned (the highest version encrypts new secrets; every version still decrypts);
 * purpose 'audit' is the HMAC key of the audit chain and never changes, so old events keep verifying.
 * The master key itself is never stored: it only wraps and unwraps these rows.
 */
export type KeyPurpose = 'data' | 'audit';

export interface KeyRow {
  purpose: KeyPurpose;
  version: number;
  wrapped: Buffer;
}

export interface UnwrappedKey {
  purpose: KeyPurpose;
  version: number;
  key: Uint8Array;
}

const wrapAd = (purpose: KeyPurpose, version: number) => `pam-vault:keyring:${purpose}:${version}`;

export function wrapKey(master: Uint8Array, purpose: KeyPurpose, version: number, key: Uint8Array): Buffer {
  return seal(master, key, wrapAd(purpose, version));
}

export function unwrapKey(master: Uint8Array, row: KeyRow): UnwrappedKey {
  try {
    return { purpose: row.purpose, version: row.version, key: open(master, row.wrapped, wrapAd(row.purpose, row.version)) };
  } catch (e) {
    if (e instanceof DecryptionError) {
      throw new MasterKeyError(
        'the master key does not unlock the keyring (wrong VAULT_MASTER_KEY / VAULT_MASTER_KEY_FILE for this database?)',
      );
    }
    throw e;
  }
}

/** Any instance may start first: a transaction-scoped advisory lock makes key creation happen once. */
const KEYRING_LOCK = 7_301_001;

export async function readKeyRows(em: EntityManager): Promise<KeyRow[]> {
  const rows: Array<{ purpose: KeyPurpose; version: number; wrapped: Buffer }> = await em.query(
    'SELECT purpose, version, wrapped FROM keyring_keys ORDER BY purpose, version',
  );
  return rows;
}

/**
 * Creates the first data key and the audit key on a new database; returns every row. A keyring with a key
 * missing, or an empty keyring beside existing secrets or audit events, is refused: quietly making new keys
 * would leave every secret unreadable or restart the audit chain under a new key.
 */
export async function ensureKeyring(em: EntityManager, master: Uint8Array): Promise<KeyRow[]> {
  return em.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [KEYRING_LOCK]);
    const rows = await readKeyRows(tx);
    const missing = (['data', 'audit'] as const).filter((p) => !rows.some((r) => r.purpose === p));
    if (missing.length === 0) return rows;
    if (rows.length > 0) throw new MasterKeyError(`the keyring has lost its ${missing.join(' and ')} key: restore keyring_keys from a backup`);
    const used = await tablesWithRows(tx);
    if (used.length) throw new MasterKeyError(`the keyring is empty but the database holds secrets and audit events (rows in ${used.slice(0, 5).join(', ')}): restore keyring_keys from a backup`);
    for (const purpose of missing) {
      const wrapped = wrapKey(master, purpose, 1, randomKey());
      await tx.query('INSERT INTO keyring_keys (purpose, version, wrapped) VALUES ($1, 1, $2)', [purpose, wrapped]);
      rows.push({ purpose, version: 1, wrapped });
    }
    return rows;
  });
}

/** Adds a new data key version; new secrets use it, older ones keep decrypting with theirs. */
export async function addDataKeyVersion(em: EntityManager, master: Uint8Array): Promise<number> {
  return em.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [KEYRING_LOCK]);
    const rows = await readKeyRows(tx);
    if (rows.length === 0) throw new MasterKeyError('the keyring is empty: start the vault once before adding a data key');
    rows.forEach((r) => unwrapKey(master, r)); // refuse to extend a keyring this master key cannot open
    const next = Math.max(0, ...rows.filter((r) => r.purpose === 'data').map((r) => r.version)) + 1;
    await tx.query('INSERT INTO keyring_keys (purpose, version, wrapped) VALUES ($1, $2, $3)', [
      'data',
      next,
      wrapKey(master, 'data', next, randomKey()),
    ]);
    return next;
  });
}

/**
 * Master-key rotation: re-wraps every keyring row under the new master key in one transaction.
 * Secrets are not touched — they are encrypted under data keys, which do not change.
 */
export async function rewrapKeyring(em: EntityManager, oldMaster: Uint8Array, newMaster: Uint8Array): Promise<number> {
  return em.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [KEYRING_LOCK]);
    const rows = await readKeyRows(tx);
    if (rows.length === 0) throw new MasterKeyError('the keyring is empty: start the vault once before rotating the master key');
    for (const row of rows) {
      const { key } = unwrapKey(oldMaster, row);
      await tx.query('UPDATE keyring_keys SET wrapped = $3, rewrapped_at = now() WHERE purpose = $1 AND version = $2', [
        row.purpose,
        row.version,
        wrapKey(newMaster, row.purpose, row.version, key),
      ]);
    }
    return rows.length;
  });
}

/**
 * The vault's tables that hold rows, apart from the keyring and the migrations' own. Asked of the catalog, so the
 * keyring (a low layer) names no other module's table: any data at all beside an empty keyring means keys were lost.
 */
async function tablesWithRows(em: EntityManager): Promise<string[]> {
  const tables: Array<{ name: string }> = await em.query(
    `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname NOT IN ('keyring_keys', 'schema_migrations')
      ORDER BY c.relname`,
  );
  if (tables.length === 0) return [];
  const quoted = (name: string) => '"' + name.replace(/"/g, '""') + '"';
  const [row]: Array<Record<string, boolean>> = await em.query(`SELECT ${tables.map((t, i) => `EXISTS (SELECT 1 FROM ${quoted(t.name)}) AS t${i}`).join(', ')}`);
  return tables.filter((_, i) => row[`t${i}`]).map((t) => t.name);
}

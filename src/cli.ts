import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import { openDatabase } from './bootstrap';
import { addDataKeyVersion, rewrapKeyring } from './crypto/keyring';
import { decodeMasterKey, generateMasterKey, MasterKeyError } from './crypto/master-key';
import { readySodium } from './crypto/sodium';
import { fatal, prepareRuntime, safeMessage } from './runtime';

const USAGE = `usage: pam-vault-admin <command>

  generate-master-key   print a new random master key (base64) for VAULT_MASTER_KEY / VAULT_MASTER_KEY_FILE
  rotate-master-key     re-wrap the keyring under VAULT_NEW_MASTER_KEY (or VAULT_NEW_MASTER_KEY_FILE);
                        the current key comes from VAULT_MASTER_KEY / VAULT_MASTER_KEY_FILE as usual.
                        Stop every vault instance first, then start them with the new key.
  add-data-key          add a new data-key version: new secrets use it, old ones keep decrypting

Uses DATABASE_URL, or the embedded database under VAULT_DATA_DIR when it is unset.`;

function newMasterKey(env: NodeJS.ProcessEnv): Buffer {
  if (env.VAULT_NEW_MASTER_KEY && env.VAULT_NEW_MASTER_KEY_FILE) fatal('set only one of VAULT_NEW_MASTER_KEY and VAULT_NEW_MASTER_KEY_FILE', 78);
  if (env.VAULT_NEW_MASTER_KEY) return decodeMasterKey(env.VAULT_NEW_MASTER_KEY, 'VAULT_NEW_MASTER_KEY');
  if (env.VAULT_NEW_MASTER_KEY_FILE) {
    let text: string;
    try {
      text = readFileSync(env.VAULT_NEW_MASTER_KEY_FILE, 'utf8');
    } catch {
      fatal(`VAULT_NEW_MASTER_KEY_FILE cannot be read: ${env.VAULT_NEW_MASTER_KEY_FILE}`, 78);
    }
    return decodeMasterKey(text, 'VAULT_NEW_MASTER_KEY_FILE');
  }
  fatal('rotate-master-key needs VAULT_NEW_MASTER_KEY or VAULT_NEW_MASTER_KEY_FILE', 78);
}

async function run(command: string | undefined): Promise<void> {
  if (command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (command === 'generate-master-key') {
    process.stdout.write(generateMasterKey() + '\n');
    return;
  }
  if (command !== 'rotate-master-key' && command !== 'add-data-key') fatal(USAGE, 64);
  await readySodium();
  const next = command === 'rotate-master-key' ? newMasterKey(process.env) : undefined;
  const rt = await prepareRuntime(process.env);
  try {
    const ds = await openDatabase(rt.databaseUrl);
    try {
      if (next) {
        if (next.equals(rt.master.key)) fatal('the new master key is the same as the current one', 64);
        const n = await rewrapKeyring(ds.manager, rt.master.key, next);
        process.stdout.write(`re-wrapped ${n} keyring entries under the new master key; start the vault with it now\n`);
      } else {
        const v = await addDataKeyVersion(ds.manager, rt.master.key);
        process.stdout.write(`added data key version ${v}; restart vault instances to encrypt with it\n`);
      }
    } finally {
      await ds.destroy();
    }
  } catch (e) {
    await rt.stopDatabase();
    if (e instanceof MasterKeyError) fatal(e.message);
    fatal(safeMessage(e));
  }
  await rt.stopDatabase();
}

run(process.argv[2]).then(
  () => process.exit(0),
  (e) => fatal(safeMessage(e)),
);

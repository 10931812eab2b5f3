import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const LOCK = join(tmpdir(), 'pam-vault-tests-system-accounts.lock');

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/**
 * The machine's account database (/etc/passwd) is one for every jest worker. Suites that create and remove SSH
 * one-time accounts take turns: a removal moves the `pamvault-uid-` mark that keeps uids growing, so one suite's
 * removal would change what another asserts about the marks. Held from the suite's first test to its last
 * (`beforeAll(holdSystemAccounts, …)` / `afterAll(releaseSystemAccounts)`); a lock left by a dead process is taken over.
 */
export async function holdSystemAccounts(): Promise<void> {
  for (;;) {
    try {
      mkdirSync(LOCK);
      writeFileSync(join(LOCK, 'pid'), String(process.pid));
      return;
    } catch {
      let holder = NaN;
      try {
        holder = Number(readFileSync(join(LOCK, 'pid'), 'utf8'));
      } catch {
        // being created or removed right now
      }
      if (Number.isInteger(holder) && holder !== process.pid && !alive(holder)) rmSync(LOCK, { recursive: true, force: true });
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

export function releaseSystemAccounts(): void {
  try {
    if (Number(readFileSync(join(LOCK, 'pid'), 'utf8')) === process.pid) rmSync(LOCK, { recursive: true, force: true });
  } catch {
    // not held
  }
}

import type { TlsMariaServer } from './targets/mariadb-tls';

/** Stops what test/support/global-setup.ts started for the whole run (the TLS MariaDB) and deletes its files. */
export default async function globalTeardown(): Promise<void> {
  const holder = globalThis as { __vaultTlsMariaDb?: TlsMariaServer };
  await holder.__vaultTlsMariaDb?.stop();
  delete holder.__vaultTlsMariaDb;
}

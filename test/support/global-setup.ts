import { Client } from 'pg';
import { TEST_PG_URL } from './env';
import { publishTlsMariaDb, startTlsMariaDbServer, TlsMariaServer } from './targets/mariadb-tls';

/**
 * Fails the whole run with one clear message when a required component is missing; never skips. Starts the
 * dedicated TLS MariaDB once for the whole run (the MySQL connector tests' target; the workers find it through
 * the environment, see test/support/targets/mariadb-tls.ts); test/support/global-teardown.ts stops it.
 */
export default async function globalSetup(): Promise<void> {
  const client = new Client({ connectionString: TEST_PG_URL, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
  } catch (e) {
    throw new Error(
      `The tests need a real PostgreSQL at ${TEST_PG_URL.replace(/:[^:@/]*@/, ':***@')} (set TEST_DATABASE_URL to use another); ` +
        `it is not reachable: ${(e as Error).message}`,
      { cause: e },
    );
  } finally {
    await client.end().catch(() => undefined);
  }
  const server = await startTlsMariaDbServer();
  // read by the globalTeardown, which runs in this same process
  (globalThis as { __vaultTlsMariaDb?: TlsMariaServer }).__vaultTlsMariaDb = server;
  publishTlsMariaDb(server);
}

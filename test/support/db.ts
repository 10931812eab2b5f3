import { randomBytes } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import { TEST_PG_URL } from './env';
import { SECRET_SCAN_DIR } from './secret-sentinel';

export interface TestDatabase {
  url: string;
  name: string;
  /** A plain pg client on the test database, for checks and for tampering the way an attacker would. */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  drop(): Promise<void>;
}

/** A fresh, empty database on the real PostgreSQL for one test file. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `vault_test_${randomBytes(6).toString('hex')}`;
  const admin = new Client({ connectionString: TEST_PG_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(TEST_PG_URL);
  url.pathname = `/${name}`;
  const client = new Client({ connectionString: url.toString() });
  await client.connect();
  return {
    url: url.toString(),
    name,
    query: async <T>(sql: string, params?: unknown[]) => (await client.query(sql, params)).rows as T[],
    drop: async () => {
      // under the secret scan: every audit event the database holds, whoever wrote it (vault processes too)
      if (SECRET_SCAN_DIR) {
        const rows = await client.query('SELECT * FROM audit_events ORDER BY id').then((r) => r.rows, () => []);
        if (rows.length) appendFileSync(join(SECRET_SCAN_DIR, `audit-db-${name}.jsonl`), rows.map((event) => JSON.stringify({ db: name, event })).join('\n') + '\n');
      }
      await client.end().catch(() => undefined);
      const a = new Client({ connectionString: TEST_PG_URL });
      await a.connect();
      await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
    },
  };
}

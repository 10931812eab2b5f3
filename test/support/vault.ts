import { randomBytes } from 'node:crypto';
import { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { createVaultApp, openDatabase } from '../../src/bootstrap';
import { loadConfig } from '../../src/config/config';
import { createTestDatabase, TestDatabase } from './db';

export const ADMIN_PASSWORD = 'correct-horse-battery-staple';

export interface TestVault {
  app: INestApplication;
  db: TestDatabase;
  masterKey: Buffer;
  http: () => ReturnType<typeof request>;
  /** Logs in as admin and returns the `Authorization` header value. */
  adminAuth(): Promise<string>;
  get<T>(token: { new (...args: never[]): T } | string | symbol): T;
  close(): Promise<void>;
}

/** Fast argon2 parameters: the tests check behaviour, not hashing cost. */
export const TEST_ENV = {
  VAULT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD,
  VAULT_ARGON2_MEMORY_KIB: '8192',
  VAULT_ARGON2_TIME_COST: '1',
  VAULT_AUDIT_VERIFY_LOCK_WAIT_MS: '1000',
  LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
};

/** The real application on a fresh database of the real PostgreSQL (no HTTP port: supertest drives it). */
export async function startTestVault(opts: { db?: TestDatabase; masterKey?: Buffer; env?: Record<string, string> } = {}): Promise<TestVault> {
  const db = opts.db ?? (await createTestDatabase());
  const masterKey = opts.masterKey ?? randomBytes(32);
  const config = loadConfig({ ...TEST_ENV, DATABASE_URL: db.url, VAULT_MASTER_KEY: masterKey.toString('base64'), ...opts.env });
  const app = await createVaultApp(config, masterKey, await openDatabase(db.url));
  const http = () => request(app.getHttpServer());
  let auth: string | undefined;
  return {
    app,
    db,
    masterKey,
    http,
    get: (token) => app.get(token as never),
    adminAuth: async () => {
      if (auth) return auth;
      const res = await http().post('/v1/auth/login').send({ username: 'admin', password: ADMIN_PASSWORD }).expect(200);
      auth = `Bearer ${res.body.accessToken}`;
      return auth;
    },
    close: async () => {
      await app.close();
      if (!opts.db) await db.drop();
    },
  };
}

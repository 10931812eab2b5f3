import { DataSource } from 'typeorm';
import { MIGRATIONS } from '../../migrations';
import { dataSourceOptions, runMigrations } from '../../src/database/data-source';
import { createTestDatabase, TestDatabase } from '../support/db';

const tables = async (db: TestDatabase) =>
  (await db.query<{ tablename: string }>("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")).map((r) => r.tablename);

describe('migrations on the real PostgreSQL', () => {
  let db: TestDatabase;
  beforeAll(async () => (db = await createTestDatabase()));
  afterAll(() => db.drop());

  it('apply, revert completely, and apply again; concurrent starts apply them once', async () => {
    const a = new DataSource(dataSourceOptions(db.url, 2));
    const b = new DataSource(dataSourceOptions(db.url, 2));
    await Promise.all([a.initialize(), b.initialize()]);
    try {
      const applied = await Promise.all([runMigrations(a), runMigrations(b)]);
      expect(applied.sort()).toEqual([0, MIGRATIONS.length]);
      expect(await tables(db)).toEqual(
        ['access_tokens', 'accounts', 'audit_chain_head', 'audit_events', 'auth_throttle', 'checkout_approvals', 'checkouts', 'ephemeral_accounts', 'ephemeral_approvals', 'ephemeral_policies', 'gateway_host_keys', 'gateway_sessions', 'gateway_tickets', 'keyring_keys', 'notification_channels', 'notification_deliveries', 'notification_events', 'notification_routes', 'oidc_logins', 'oidc_providers', 'rotations', 'schema_migrations', 'service_tokens', 'session_recording_chunks', 'session_recordings', 'targets', 'users', 'webauthn_challenges', 'webauthn_credentials'].sort(),
      );
      for (let i = 0; i < MIGRATIONS.length; i++) await a.undoLastMigration({ transaction: 'each' });
      expect(await tables(db)).toEqual(['schema_migrations']);
      expect(await runMigrations(a)).toBe(MIGRATIONS.length);
    } finally {
      await Promise.all([a.destroy(), b.destroy()]);
    }
  });
});

/**
 * The middle test tier: one or more feature modules on a fresh real database, with fake targets and a test clock,
 * without HTTP. For decision tables (rotation recovery: pending works / current works / neither / cannot tell; sweep
 * poison rows; state transitions) tested directly on the services.
 *
 *     let h: ModuleHarness;
 *     beforeAll(async () => (h = await buildModule({ imports: [RotationModule] })));
 *     afterAll(() => h.close());
 *
 *     it('a pending password that works becomes current', async () => {
 *       const pg = h.fake('postgres');                       // the in-memory PostgreSQL target (test/support/fake-connector.ts)
 *       pg.users.set('app', 'Old-Password-1');
 *       pg.fail('updatePassword', 'TARGET_TIMEOUT', { afterEffect: true }); // set, but the answer is lost
 *       await h.get(RotationService).recoverStale();
 *       h.clock.advance(60_000);                             // the services' Clock
 *       expect(await h.db.query('SELECT status FROM rotations')).toEqual([{ status: 'succeeded' }]);
 *     });
 *
 * What it provides, as src/app.module.ts does for the application: the validated config (test env, `env` on top),
 * a fixed test master key, the Clock (a TestClock), and the global modules every feature relies on: the data source
 * (migrated), UnitOfWork, ClaimedWork, Crypto, Connectors, Metrics, Audit and Identity. Every connector of the
 * registry is a FakeConnector (one in-memory target per type, `fake(type)`); a test may still `register` another.
 * No scheduler runs: tests call the sweeps themselves. `close()` shuts the module down (tracked work settles) and drops
 * the database. Each harness is its own database, so a file may build several.
 */
import type { DynamicModule, ForwardReference, Provider, Type } from '@nestjs/common';
import { Module } from '@nestjs/common';
import { Test, TestingModule } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import { Logger as PinoLogger, LoggerModule } from 'nestjs-pino';
import { DataSource } from 'typeorm';
import { PLATFORM_MODULES } from '../../src/app.module';
import { openDatabase } from '../../src/bootstrap';
import type { Actor } from '../../src/common/actor';
import { Clock } from '../../src/common/clock';
import { loggerParams } from '../../src/common/logging';
import { APP_CONFIG, AppConfig, loadConfig } from '../../src/config/config';
import { ConnectorRegistry } from '../../src/connectors/connector.registry';
import { KeyringService, MASTER_KEY } from '../../src/crypto/keyring.service';
import type { TargetType } from '../../src/crypto/password-generator';
import { SecretBoxService } from '../../src/crypto/secret-box.service';
import { TestClock } from './clock';
import { createTestDatabase, TestDatabase } from './db';
import { FakeConnector } from './fake-connector';
import { secretSentinel } from './secret-sentinel';
import { TEST_ENV } from './vault';

/** An admin to act as when a service asks who acts (audit events name it; no users row behind it). */
export const TEST_ADMIN: Actor = { id: '00000000-0000-4000-8000-00000000a0a0', kind: 'user', name: 'test-admin', roles: ['admin'], mfaEnrolled: true };

/** The harness's master key: fixed, so a test may build a second harness on the same database (`db`). */
export const TEST_MASTER_KEY = Buffer.from('module-harness-test-master-key!!');

type Import = Type<unknown> | DynamicModule | Promise<DynamicModule> | ForwardReference;

export interface ModuleHarness {
  module: TestingModule;
  /** A provider of any module (not only the imported modules' exports). */
  get<T>(token: Type<T> | string | symbol): T;
  db: TestDatabase;
  clock: TestClock;
  config: AppConfig;
  dataSource: DataSource;
  /** The in-memory target of this type behind the connector registry. */
  fake(type: TargetType): FakeConnector;
  /** Shuts the module down (tracked background work finishes first) and drops the database (unless it was given). */
  close(): Promise<void>;
}

export async function buildModule(o: { imports?: Import[]; providers?: Provider[]; env?: Record<string, string>; db?: TestDatabase } = {}): Promise<ModuleHarness> {
  const db = o.db ?? (await createTestDatabase());
  const config = loadConfig({ ...TEST_ENV, DATABASE_URL: db.url, VAULT_MASTER_KEY: TEST_MASTER_KEY.toString('base64'), ...o.env });
  const clock = new TestClock();
  const sentinel = secretSentinel(); // before the logger is built: it redirects the logs
  const dataSource = await openDatabase(db.url);

  @Module({})
  class HarnessRootModule {}
  const root: DynamicModule = {
    module: HarnessRootModule,
    global: true,
    imports: [
      LoggerModule.forRoot(loggerParams(config)),
      TypeOrmModule.forRootAsync({ useFactory: () => dataSource.options, dataSourceFactory: async () => dataSource }),
      ...PLATFORM_MODULES,
    ],
    providers: [
      { provide: APP_CONFIG, useValue: config },
      { provide: MASTER_KEY, useValue: TEST_MASTER_KEY },
      { provide: Clock, useValue: clock },
    ],
    exports: [APP_CONFIG, MASTER_KEY, Clock],
  };

  let module: TestingModule;
  try {
    module = await Test.createTestingModule({ imports: [root, ...(o.imports ?? [])], providers: o.providers ?? [] }).compile();
    module.useLogger(module.get(PinoLogger));
    const fakes = new Map<TargetType, FakeConnector>();
    const registry = module.get(ConnectorRegistry);
    for (const type of ['ssh', 'postgres', 'mysql'] as const) {
      const fake = new FakeConnector(type);
      fakes.set(type, fake);
      registry.register(fake);
    }
    await module.init();
    sentinel?.secret(TEST_MASTER_KEY.toString('base64'), 'master key');
    sentinel?.secret(config.bootstrapAdminPassword, 'bootstrap admin password');
    sentinel?.watchSecretBox(module.get(SecretBoxService));
    sentinel?.keys([module.get(KeyringService).active().key, module.get(KeyringService).auditKey()]);
    return {
      module,
      get: (token) => module.get(token as never, { strict: false }),
      db,
      clock,
      config,
      dataSource,
      fake: (type) => fakes.get(type) as FakeConnector,
      close: async () => {
        await module.close();
        if (dataSource.isInitialized) await dataSource.destroy();
        await sentinel?.flush(db);
        if (!o.db) await db.drop();
      },
    };
  } catch (e) {
    if (dataSource.isInitialized) await dataSource.destroy().catch(() => undefined);
    if (!o.db) await db.drop().catch(() => undefined);
    throw e;
  }
}


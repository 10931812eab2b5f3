import { DataSource, DataSourceOptions } from 'typeorm';
import { MIGRATIONS } from '../../migrations';
/**
 * One definition for the app, the tests and the migration CLI. The schema comes only from migrations. The entity list
 * is the composition root's (src/entities.ts): the database layer knows no feature module.
 */
export function dataSourceOptions(url: string, poolSize = 20, entities: NonNullable<DataSourceOptions['entities']> = []): DataSourceOptions {
  return {
    type: 'postgres',
    url,
    entities,
    migrations: MIGRATIONS,
    migrationsTableName: 'schema_migrations',
    synchronize: false,
    migrationsRun: false,
    logging: false,
    // a database that does not answer fails a request after 5 s (answered 503 UNAVAILABLE) instead of holding it for ever
    extra: { max: poolSize, application_name: 'pam-vault', connectionTimeoutMillis: 5000 },
  };
}

const MIGRATION_LOCK = 7_301_000;

/** Applies pending migrations; several instances starting together take turns on an advisory lock. */
export async function runMigrations(ds: DataSource): Promise<number> {
  const qr = ds.createQueryRunner();
  await qr.connect();
  try {
    await qr.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    const applied = await ds.runMigrations({ transaction: 'each' });
    return applied.length;
  } finally {
    await qr.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
    await qr.release();
  }
}

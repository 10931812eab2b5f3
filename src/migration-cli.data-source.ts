import 'reflect-metadata';
import { DataSource } from 'typeorm';
import { dataSourceOptions } from './database/data-source';
import { ENTITIES } from './entities';

/**
 * For the TypeORM CLI (`npm run migration:run|revert|show`). Needs DATABASE_URL: the embedded database
 * is migrated by the vault itself at start.
 */
if (!process.env.DATABASE_URL) {
  process.stderr.write('DATABASE_URL is required for the migration CLI\n');
  process.exit(2);
}
export default new DataSource(dataSourceOptions(process.env.DATABASE_URL, undefined, ENTITIES));

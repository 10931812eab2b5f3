import 'reflect-metadata';
import { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { NestExpressApplication } from '@nestjs/platform-express';
import { Logger } from 'nestjs-pino';
import { DataSource } from 'typeorm';
import { AppModule } from './app.module';
import { Clock } from './common/clock';
import { AppConfig } from './config/config';
import { dataSourceOptions, runMigrations } from './database/data-source';
import { ENTITIES } from './entities';
import { servePortal } from './http/portal';
import { securityHeaders } from './http/security-headers';
import { DOCS_PATH, setupOpenApi } from './openapi/openapi';

/** Connects to the database and applies pending migrations. */
export async function openDatabase(url: string): Promise<DataSource> {
  const ds = new DataSource(dataSourceOptions(url, undefined, ENTITIES));
  await ds.initialize();
  try {
    await runMigrations(ds);
  } catch (e) {
    await ds.destroy();
    throw e;
  }
  return ds;
}

/**
 * Builds the HTTP application on an open database (shared by main.ts and the e2e tests). Loads the keyring
 * during init, so a wrong master key fails here, before anything listens. Serves the web portal at /portal/ and the
 * OpenAPI document at /docs.
 */
export async function createVaultApp(config: AppConfig, masterKey: Buffer, dataSource: DataSource, clock?: Clock): Promise<INestApplication> {
  const app = await NestFactory.create<NestExpressApplication>(AppModule.forRoot({ config, masterKey, dataSource, clock }), {
    bufferLogs: true,
    bodyParser: false,
    abortOnError: false,
  });
  app.useLogger(app.get(Logger));
  app.disable('x-powered-by');
  // first, so every answer carries them: the portal's pages, the API's JSON, errors, 404s, and what the body parser
  // refuses (400, 413, 415) before any later middleware runs
  app.use(securityHeaders(DOCS_PATH));
  // no ETag: it is a digest of the body, and a body may carry a password (a log line or a cache holding the digest
  // of a checkout's answer lets a password be guessed offline); and nothing the API answers may be cached
  app.set('etag', false);
  app.use((_req: unknown, res: { setHeader(name: string, value: string): void }, next: () => void) => {
    res.setHeader('Cache-Control', 'no-store');
    next();
  });
  app.useBodyParser('json', { limit: config.maxBodyBytes, strict: true });
  app.set('query parser', 'simple');
  // the client address drives per-address throttling and audit: behind a proxy, say which hops to trust
  if (config.trustProxy !== undefined) app.set('trust proxy', config.trustProxy);
  try {
    // before init, like the OpenAPI routes: they must come before Nest's not-found handler
    servePortal(app, config.portal.dir);
    // before init: its routes (GET /docs, /docs-json) must come before Nest's not-found handler
    setupOpenApi(app);
    await app.init();
  } catch (e) {
    // leave nothing running behind a failed start: timers, pools, the data source
    await app.close().catch(() => undefined);
    if (dataSource.isInitialized) await dataSource.destroy().catch(() => undefined);
    throw e;
  }
  return app;
}

import 'reflect-metadata';
import { INestApplication } from '@nestjs/common';
import { createVaultApp, openDatabase } from './bootstrap';
import { MasterKeyError } from './crypto/master-key';
import { fatal, prepareRuntime, safeMessage } from './runtime';

async function main(): Promise<void> {
  const rt = await prepareRuntime(process.env);
  let app: INestApplication;
  try {
    app = await createVaultApp(rt.config, rt.master.key, await openDatabase(rt.databaseUrl));
  } catch (e) {
    await rt.stopDatabase();
    if (e instanceof MasterKeyError) fatal(e.message);
    const err = e as { code?: string; name?: string };
    fatal(`start-up failed: ${err.name ?? 'Error'}${typeof err.code === 'string' ? ` (${err.code})` : ''}: ${safeMessage(e)}`);
  }

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`pam-vault: ${signal} received, shutting down\n`);
    await app.close().catch(() => undefined);
    await rt.stopDatabase();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));

  await app.listen(rt.config.port, rt.config.host);
  process.stderr.write(`pam-vault: listening on http://${rt.config.host}:${rt.config.port}\n`);
}

void main().catch((e) => fatal(`start-up failed: ${safeMessage(e)}`));

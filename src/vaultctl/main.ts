#!/usr/bin/env node
import { run } from './program';

// a reader that went away (`vaultctl … | head`) is not an error worth a stack trace
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
}

/** `vaultctl`: exits only after stdout and stderr are flushed (pipes are asynchronous). */
void run(process.argv.slice(2)).then((code) => {
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
});

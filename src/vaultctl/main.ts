#!/usr/bin/env node
import { run } from './program';

/** `vaultctl`: exits only after stdout and stderr are flushed (pipes are asynchronous). */
void run(process.argv.slice(2)).then((code) => {
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
});

/** What every bench's command line needs (the run.ts of each bench folder). */

/** The value after `--<name>` on the command line, or `dflt`. */
export function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
}

/** Runs a bench's `main` when its file is the entry point (`mod` is that file's `module`): exit 0, or 1 with the stack. */
export function runMain(mod: NodeJS.Module, main: () => Promise<unknown>): void {
  if (require.main !== mod) return;
  main().then(
    () => process.exit(0),
    (e) => {
      process.stderr.write(`bench failed: ${(e as Error).stack}\n`);
      process.exit(1);
    },
  );
}

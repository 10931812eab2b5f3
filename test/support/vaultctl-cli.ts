import { join } from 'node:path';

/** The built CLI, exactly what the `vaultctl` bin entry runs (TEST_VAULTCTL_MAIN: another build of it). */
export const CLI = process.env.TEST_VAULTCTL_MAIN ?? join(__dirname, '../../dist/src/vaultctl/main.js');
export const ROOT = join(__dirname, '../..');

/** What one run of the CLI did. */
export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

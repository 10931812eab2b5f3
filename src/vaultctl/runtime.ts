/**
 * What one run of vaultctl carries between the program and its commands: the arguments after `--` for `--exec`, and
 * the exit code a command chose. Its own module, so the commands and the program do not import each other.
 */
export interface Runtime {
  execArgs?: string[];
  exitCode?: number;
}

import { Command, CommanderError } from 'commander';
import { registerAdmin } from './commands/admin';
import { registerApprovals } from './commands/approvals';
import { registerAudit } from './commands/audit';
import { registerAuth } from './commands/auth';
import { registerCheckouts } from './commands/checkouts';
import { registerEphemeral } from './commands/ephemeral';
import { registerMe, registerNotifications } from './commands/notifications';
import { registerRotate } from './commands/rotate';
import { registerSessions } from './commands/sessions';
import { registerSsh } from './commands/ssh';
import { intIn } from './commands/common';
import { CliError, EXIT, EXIT_CODE_HELP } from './errors';
import { printJson } from './output';
import type { Runtime } from './runtime';

/** Per invocation: the command after `--` for `--exec`, and the exit status a command chose (child's, rotate's, ...). */
export type { Runtime };

const ENV_HELP = `Environment:
  VAULT_ADDR        vault URL (else --url; else the last login's; else http://127.0.0.1:8080)
  VAULT_TOKEN       bearer token used instead of the login session (service tokens for schedulers, CI)
  VAULT_MFA_CODE    TOTP code for step-up actions (else --code; else asked on a terminal)
  VAULT_CONFIG_DIR  config folder (else $XDG_CONFIG_HOME/vaultctl; else ~/.config/vaultctl)

--exec runs a client with the credential in its environment, never printed nor on a command line:
  always VAULT_USERNAME VAULT_PASSWORD VAULT_HOST VAULT_PORT (the child and its children can read them);
  postgres PGHOST PGPORT PGUSER PGPASSWORD (PGDATABASE from the target); mysql MYSQL_PWD;
  ssh SSH_ASKPASS (a temporary 0700 script answering the password prompt), SSH_ASKPASS_REQUIRE=force.
  e.g. vaultctl checkout <accountId> -r "fix replication" --exec --checkin-after -- psql
       vaultctl checkout <accountId> -r "patch" --exec -- ssh -p 22 root@db1

ssh connects through the vault's SSH gateway instead: a one-minute ticket bound to a fresh key, the password never
leaves the vault (brokered-only accounts allow nothing else), the session is recorded:
  e.g. vaultctl ssh db1/root            vaultctl ssh db1/root -- uptime            vaultctl ssh --ephemeral <id>`;

/** The global options that take a value (so the word after them is not the command). */
const VALUED_GLOBALS = new Set(['--url', '-c', '--code', '--timeout']);

/** The subcommand's name: the first word that is neither a global option nor the value of one. */
export function commandWord(args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--') return undefined;
    if (VALUED_GLOBALS.has(a)) i++;
    else if (!a.startsWith('-')) return a;
  }
  return undefined;
}

/**
 * `… --exec … -- cmd args` and `ssh … -- cmd args`: what follows the first `--` is the command to run (locally with
 * --exec, on the target for ssh), untouched.
 */
export function splitExec(args: string[]): { args: string[]; execArgs?: string[] } {
  const sep = args.indexOf('--');
  if (sep < 0 || !(args.slice(0, sep).includes('--exec') || commandWord(args) === 'ssh')) return { args };
  return { args: args.slice(0, sep), execArgs: args.slice(sep + 1) };
}

export function buildProgram(rt: Runtime): Command {
  const program = new Command();
  program
    .name('vaultctl')
    .description('Command line for the PAM vault: log in, check out credentials, approve, hand out one-time accounts, administer, rotate, verify the audit log.')
    .version('0.1.0')
    .option('--url <url>', 'vault URL (default: VAULT_ADDR, the last login, http://127.0.0.1:8080)')
    .option('--json', 'print the API answer as JSON (errors too: {"error": {...}, "exitCode": n})')
    .option('-c, --code <code>', 'TOTP code for actions that need step-up MFA (default: VAULT_MFA_CODE, or asked)')
    .option('--timeout <seconds>', 'HTTP timeout per call', intIn(1, 3600))
    .exitOverride()
    .allowExcessArguments(false)
    .showHelpAfterError('(add --help for usage)')
    .configureOutput({ outputError: (str, write) => write(`vaultctl: ${str.replace(/^error: /, '')}`) })
    .addHelpText('after', `\n${ENV_HELP}\n\n${EXIT_CODE_HELP}`);

  registerAuth(program, rt);
  registerCheckouts(program, rt);
  registerApprovals(program, rt);
  registerEphemeral(program, rt);
  registerAdmin(program, rt);
  registerRotate(program, rt);
  registerAudit(program, rt);
  registerNotifications(program, rt);
  registerMe(program, rt);
  registerSsh(program, rt);
  registerSessions(program, rt);
  return program;
}

/** Parses and runs; resolves to the exit code (never throws). */
export async function run(argv: string[]): Promise<number> {
  const split = splitExec(argv);
  const rt: Runtime = { execArgs: split.execArgs };
  const json = split.args.includes('--json');
  try {
    await buildProgram(rt).parseAsync(split.args, { from: 'user' });
    return rt.exitCode ?? EXIT.OK;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT.OK : EXIT.USAGE; // commander printed it
    if (e instanceof CliError) {
      process.stderr.write(`vaultctl: ${e.message}\n`);
      if (json) {
        const body = 'body' in e ? (e.body as Record<string, unknown>) : { code: e.code ?? 'ERROR', message: e.message };
        printJson({ error: body, exitCode: e.exitCode });
      }
      return e.exitCode;
    }
    const err = e as Error;
    process.stderr.write(`vaultctl: unexpected error: ${err?.message ?? String(e)}\n`);
    if (process.env.VAULTCTL_DEBUG) process.stderr.write(`${err?.stack ?? ''}\n`);
    if (json) printJson({ error: { code: 'UNEXPECTED', message: err?.message ?? String(e) }, exitCode: EXIT.UNEXPECTED });
    return EXIT.UNEXPECTED;
  }
}

import { createInterface } from 'node:readline';
import { CliError, EXIT, usage } from './errors';

/** A terminal to ask on: stdin to read, stderr to show the question (stdout stays for output). */
export const interactive = () => Boolean(process.stdin.isTTY && process.stderr.isTTY);

let stdinText: Promise<string> | undefined;

/** All of stdin, once (several values may come from it only if the caller splits lines). */
export function readStdin(): Promise<string> {
  stdinText ??= new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    process.stdin.on('data', (c: Buffer) => chunks.push(c));
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    process.stdin.on('error', reject);
  });
  return stdinText;
}

/** The first line of stdin, without its line ending (`--password-stdin`). */
export async function readLineFromStdin(what: string): Promise<string> {
  const line = (await readStdin()).split(/\r?\n/)[0];
  if (!line) throw usage(`${what}: stdin was empty`);
  return line;
}

/** Asks on the terminal without echo (raw mode: nothing typed is shown, not even stars). */
export function promptHidden(question: string): Promise<string> {
  const stdin = process.stdin;
  if (!interactive()) throw usage(`no terminal to ask for the ${question.replace(/:\s*$/, '').toLowerCase()} on`);
  process.stderr.write(question);
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  stdin.resume();
  return new Promise((resolve, reject) => {
    let value = '';
    const finish = (err?: Error) => {
      stdin.removeListener('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(value);
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') return finish();
        if (ch === '\u0003') return finish(new CliError('interrupted', 130, 'INTERRUPTED'));
        if (ch === '\u0004') {
          if (value === '') return finish(new CliError('interrupted', 130, 'INTERRUPTED'));
          continue;
        }
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else if (ch === '\u0015') value = '';
        else if (ch >= ' ') value += ch;
      }
    };
    stdin.on('data', onData);
  });
}

/** Asks on the terminal with echo. */
export function promptLine(question: string): Promise<string> {
  if (!interactive()) throw usage(`no terminal to ask "${question.trim()}" on`);
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  return new Promise((resolve) => {
    rl.question(question, (answer) => {
      rl.close();
      resolve(answer.trim());
    });
  });
}

export const CODE_PATTERN = /^\d{6}$/;

export function checkCode(code: string, from: string): string {
  const c = code.trim();
  if (!CODE_PATTERN.test(c)) throw usage(`${from} must be the 6 digits of your authenticator's current code`);
  return c;
}

/**
 * The TOTP code for a step-up action: `--code`, else `VAULT_MFA_CODE`, else asked on the terminal.
 * Without any of them the vault would answer MFA_REQUIRED: said here, before anything is sent.
 */
export async function mfaCode(option: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  if (option !== undefined) return checkCode(option, '--code');
  if (env.VAULT_MFA_CODE) return checkCode(env.VAULT_MFA_CODE, 'VAULT_MFA_CODE');
  if (!interactive()) {
    throw new CliError('MFA_REQUIRED: this action needs the current code from your authenticator: pass --code <6 digits> or set VAULT_MFA_CODE', EXIT.MFA, 'MFA_REQUIRED');
  }
  for (;;) {
    const answer = await promptLine('TOTP code: ');
    if (CODE_PATTERN.test(answer)) return answer;
    process.stderr.write('the code is 6 digits\n');
  }
}

import type { Command } from 'commander';
import { DEFAULT_URL, normaliseUrl, TokenSource, VaultClient } from './client';
import { configDir, readSession, readSettings, tokenPath } from './config';
import { CliError } from './errors';
import { printJson } from './output';
import { mfaCode } from './prompt';

export interface GlobalOptions {
  url?: string;
  json?: boolean;
  code?: string;
  timeout?: number;
}

/** What every command needs: where the vault is, who we are, how to print. Built per invocation. */
export class Context {
  readonly dir: string;
  readonly json: boolean;
  readonly url: string;
  private cached?: VaultClient;

  constructor(
    readonly opts: GlobalOptions,
    /** The command after `--` for `--exec`. */
    readonly execArgs: string[] | undefined,
    readonly env: NodeJS.ProcessEnv = process.env,
  ) {
    this.dir = configDir(env);
    this.json = Boolean(opts.json);
    this.url = this.resolveUrl();
  }

  static of(cmd: Command, execArgs: string[] | undefined): Context {
    return new Context(cmd.optsWithGlobals<GlobalOptions>(), execArgs);
  }

  /** `--url`, else `VAULT_ADDR`, else the address of the last login (config.json), else http://127.0.0.1:8080. */
  private resolveUrl(): string {
    if (this.opts.url) return normaliseUrl(this.opts.url, '--url');
    if (this.env.VAULT_ADDR) return normaliseUrl(this.env.VAULT_ADDR, 'VAULT_ADDR');
    const saved = readSettings(this.dir).url;
    if (saved) return normaliseUrl(saved, `${this.dir}/config.json`);
    return DEFAULT_URL;
  }

  private get timeoutMs(): number {
    return (this.opts.timeout ?? 60) * 1000;
  }

  /**
   * The client with the caller's token: `VAULT_TOKEN` (service tokens, CI), else the login session of this
   * vault. A session is never sent to another vault than the one it came from.
   */
  client(): VaultClient {
    if (this.cached) return this.cached;
    let token: string | undefined;
    let source: TokenSource;
    if (this.env.VAULT_TOKEN) {
      token = this.env.VAULT_TOKEN.trim();
      source = { kind: 'env' };
    } else {
      const session = readSession(this.dir);
      if (!session) source = { kind: 'none', why: `no token file at ${tokenPath(this.dir)}` };
      else if (session.url !== this.url) source = { kind: 'none', why: `the saved session is for ${session.url}` };
      else {
        token = session.token;
        source = { kind: 'file', path: tokenPath(this.dir), username: session.username, expiresAt: session.expiresAt };
      }
    }
    this.cached = new VaultClient(this.url, token, source, this.timeoutMs);
    return this.cached;
  }

  /** For login: no token. */
  anonymous(): VaultClient {
    return new VaultClient(this.url, undefined, { kind: 'none' }, this.timeoutMs);
  }

  /** The step-up code: `--code`, `VAULT_MFA_CODE` or asked on the terminal. */
  mfa(): Promise<string> {
    return mfaCode(this.opts.code, this.env);
  }

  /** `--json`: the API answer as is; otherwise the human form. */
  print(value: unknown, human: () => void): void {
    if (this.json) printJson(value);
    else human();
  }

  /** The command after `--` that `--exec` runs; a usage error when it is missing or when it was given without --exec. */
  execCommand(exec: boolean | undefined): string[] | undefined {
    if (!exec) {
      if (this.execArgs?.length) throw new CliError('a command after `--` is run only with --exec', 2, 'USAGE');
      return undefined;
    }
    if (!this.execArgs?.length) throw new CliError('--exec needs the command after `--`, e.g. `--exec -- psql`', 2, 'USAGE');
    return this.execArgs;
  }
}

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { seg } from '../client';
import { Context } from '../context';
import { CliError, clean, EXIT, usage } from '../errors';
import { runChild } from '../exec';
import { note } from '../output';
import type { Runtime } from '../runtime';
import type { CheckoutView, GatewayTicketView, MeView } from '../../views';
import { resolveAccount } from './checkouts';
import { collect, Page } from './common';

/** `POST /v1/checkouts/:id/connect` and `/v1/ephemeral-accounts/:id/connect`: the gateway's ticket (README "Sessions and the SSH gateway"). */
export type ConnectAnswer = GatewayTicketView;

/** The one host alias of the generated ssh configuration. */
const ALIAS = 'vault-gateway';

/** A path in an ssh_config line: double-quoted (a temp dir may hold spaces); ssh_config has no escape for `"`. */
function configPath(path: string): string {
  if (/["\r\n]/.test(path)) throw new CliError(`vaultctl ssh: the temporary directory ${clean(path)} cannot be named in an ssh configuration`, EXIT.UNEXPECTED, 'BAD_TMPDIR');
  return `"${path}"`;
}

/**
 * The ssh configuration for one gateway connection: only the ephemeral key (no agent, no other identity), only the
 * gateway's host key (strict checking against the known_hosts line the vault answered), public-key authentication
 * only, no multiplexing, no agent or X11 forwarding. The ticket is the login name, here rather than on the command
 * line (where `ps` would show it; it is useless without the private key, and spent at the first login anyway).
 */
export function gatewaySshConfig(dir: string, answer: ConnectAnswer): string {
  const g = answer.gateway;
  return [
    `Host ${ALIAS}`,
    `  HostName ${g.host}`,
    `  Port ${g.port}`,
    `  User ${answer.sshUser}`,
    `  IdentityFile ${configPath(join(dir, 'id_ed25519'))}`,
    '  IdentitiesOnly yes',
    '  IdentityAgent none',
    `  UserKnownHostsFile ${configPath(join(dir, 'known_hosts'))}`,
    '  GlobalKnownHostsFile /dev/null',
    '  StrictHostKeyChecking yes',
    '  CheckHostIP no',
    '  UpdateHostKeys no',
    '  PreferredAuthentications publickey',
    '  PasswordAuthentication no',
    '  KbdInteractiveAuthentication no',
    '  ControlMaster no',
    '  ControlPath none',
    '  ForwardAgent no',
    '  ForwardX11 no',
    '',
  ].join('\n');
}

/** The user's active checkout of an account (the newest, should there be several). */
async function activeCheckoutOf(ctx: Context, ref: string): Promise<string> {
  const accountId = await resolveAccount(ctx, ref);
  const me = await ctx.client().get<MeView>('/v1/me');
  const page = await ctx.client().get<Page<CheckoutView>>('/v1/checkouts', { accountId, requesterId: me.id, status: 'active', limit: 200 });
  const mine = page.items.filter((c) => c.requesterId === me.id && c.status === 'active');
  if (!mine.length) {
    throw new CliError(`NO_ACTIVE_CHECKOUT: you hold no active checkout of ${clean(ref)}\n  check it out first: \`vaultctl checkout ${clean(ref)} -r "<why>"\``, EXIT.CONFLICT, 'NO_ACTIVE_CHECKOUT');
  }
  return mine.sort((a, b) => b.requestedAt.localeCompare(a.requestedAt))[0].id;
}

/** A fresh ed25519 key pair in OpenSSH format (private key unencrypted: it lives for one connection in a 0700 dir). */
async function ephemeralKey(comment: string): Promise<{ privateKey: string; publicKey: string }> {
  const { utils } = await import('ssh2'); // loaded only by this command
  // ssh2 drops a leading zero byte of the public key about once in 200 keys (neither half then parses, and the vault
  // refuses the key): such a key is made again (src/common/ssh-keys.ts says more; vaultctl is built on its own)
  for (;;) {
    const pair = utils.generateKeyPairSync('ed25519', { comment });
    if (!(utils.parseKey(pair.public) instanceof Error) && !(utils.parseKey(pair.private) instanceof Error)) return { privateKey: pair.private, publicKey: pair.public };
  }
}

/**
 * Asks the vault for a ticket bound to a fresh key and runs `ssh` with both through the gateway; the temp dir (key,
 * known_hosts, configuration) is removed when ssh ends. Resolves to ssh's exit status.
 */
async function connectAndRun(ctx: Context, path: string, what: string, o: SshOptions, command: string[]): Promise<number> {
  const key = await ephemeralKey(`vaultctl ${what}`);
  const code = await ctx.mfa();
  const answer = await ctx.client().post<ConnectAnswer>(path, { publicKey: key.publicKey }, code);
  if (answer.mode !== 'publickey') throw new CliError(`the vault answered a ${clean(answer.mode)} ticket for a public key; is vaultctl older than the vault?`, EXIT.UNEXPECTED, 'BAD_ANSWER');
  const dir = mkdtempSync(join(tmpdir(), 'vaultctl-ssh-')); // 0700
  try {
    writeFileSync(join(dir, 'id_ed25519'), key.privateKey, { mode: 0o600 });
    writeFileSync(join(dir, 'known_hosts'), `${answer.gateway.knownHostsLine.trim()}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'config'), gatewaySshConfig(dir, answer), { mode: 0o600 });
    if (!ctx.json) note(`vaultctl: ${what} through the vault's SSH gateway ${answer.gateway.host}:${answer.gateway.port} (host key SHA256:${answer.gateway.hostKeySha256}); the session is recorded`);
    const args = ['-F', join(dir, 'config'), ...(o.tty ? ['-tt'] : []), ...(o.sshOption ?? []).flatMap((x) => ['-o', x]), ALIAS];
    if (command.length) args.push('--', ...command);
    return await runChild([o.sshBinary ?? 'ssh', ...args], sshEnv(ctx.env));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** ssh's environment: the caller's, without the vault token and MFA code (ssh has no use for them, nor its children). */
function sshEnv(base: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env = { ...base };
  delete env.VAULT_TOKEN;
  delete env.VAULT_MFA_CODE;
  return env;
}

interface SshOptions {
  checkout?: string;
  ephemeral?: string;
  tty?: boolean;
  sshOption?: string[];
  sshBinary?: string;
}

export function registerSsh(program: Command, rt: Runtime): void {
  program
    .command('ssh')
    .description("open an SSH session through the vault's gateway (step-up MFA): the password never leaves the vault; runs `ssh`, or the command after `--` on the target")
    .argument('[account]', 'account id or <target name>/<username>: your active checkout of it')
    .option('--checkout <checkoutId>', 'this active checkout of yours (instead of the account)')
    .option('--ephemeral <id>', 'your one-time account (vendors; instead of the account)')
    .option('-t, --tty', 'a terminal for the command after `--` too (ssh -tt)')
    .option('-o, --ssh-option <option>', 'an ssh option, as `ssh -o` takes it (repeatable)', collect)
    .option('--ssh-binary <path>', 'the OpenSSH client to run (default: ssh from PATH)')
    .addHelpText('after', '\nExamples:\n  vaultctl ssh db1/root\n  vaultctl ssh db1/root -- systemctl status postgresql\n  vaultctl ssh --ephemeral <id>\nExit status: ssh\'s (255: the connection failed).')
    .action(async (ref: string | undefined, o: SshOptions, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const chosen = [ref, o.checkout, o.ephemeral].filter((x) => x !== undefined);
      if (chosen.length !== 1) throw usage('vaultctl ssh takes one of: an account, --checkout <id>, --ephemeral <id>');
      const command = rt.execArgs ?? [];
      if (o.ephemeral) {
        rt.exitCode = await connectAndRun(ctx, `/v1/ephemeral-accounts/${seg(o.ephemeral)}/connect`, `one-time account ${o.ephemeral}`, o, command);
        return;
      }
      const checkoutId = o.checkout ?? (await activeCheckoutOf(ctx, ref!));
      rt.exitCode = await connectAndRun(ctx, `/v1/checkouts/${seg(checkoutId)}/connect`, `checkout ${checkoutId}`, o, command);
    });
}

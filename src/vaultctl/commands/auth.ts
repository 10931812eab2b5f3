import type { Command } from 'commander';
import { isPlainHttpToRemote, seg } from '../client';
import { readSession, removeSession, tokenPath, writeSession, writeSettings } from '../config';
import { Context } from '../context';
import { ApiError, CliError, EXIT, usage } from '../errors';
import { fields, note, out } from '../output';
import { checkCode, CODE_PATTERN, interactive, promptHidden, promptLine, readLineFromStdin } from '../prompt';
import type { Runtime } from '../runtime';

interface LoginResponse {
  accessToken: string;
  expiresAt: string;
  mfaEnrollmentRequired: boolean;
}

interface Me {
  id: string;
  username: string;
  roles: string[];
  mfaEnrolled: boolean;
  kind?: 'user' | 'service';
}

export function registerAuth(program: Command, rt: Runtime): void {
  program
    .command('login')
    .description('log in with password and TOTP code, or with single sign-on (--oidc); the token is kept in <config>/token.json (mode 0600)')
    .option('-u, --username <name>', 'user name (asked when missing)')
    .option('--password-stdin', 'read the password from the first line of stdin (scripts)')
    .option('--oidc [provider]', 'sign in at the identity provider instead (device flow): prints a URL and a code to enter there, then waits')
    .action(async (o: { username?: string; passwordStdin?: boolean; oidc?: string | true }, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      if (o.oidc !== undefined) return loginWithOidc(ctx, o.oidc === true ? undefined : o.oidc);
      const username = o.username ?? (interactive() ? await promptLine('Username: ') : undefined);
      if (!username) throw usage('give --username (no terminal to ask on)');
      const password = o.passwordStdin ? await readLineFromStdin('--password-stdin') : await promptHidden('Password: ');
      let code: string | undefined;
      if (ctx.opts.code !== undefined) code = checkCode(ctx.opts.code, '--code');
      else if (ctx.env.VAULT_MFA_CODE) code = checkCode(ctx.env.VAULT_MFA_CODE, 'VAULT_MFA_CODE');
      else if (interactive()) {
        // asked up front: a login without the code of an enrolled user counts as a failed attempt
        for (;;) {
          code = await promptLine('TOTP code (empty before MFA enrollment): ');
          if (code === '' || CODE_PATTERN.test(code)) break;
          note('the code is 6 digits');
        }
        if (code === '') code = undefined;
      }
      if (isPlainHttpToRemote(ctx.url)) note(`warning: ${ctx.url} is plain http: the password and token cross the network unencrypted`);
      const res = await ctx.anonymous().request<LoginResponse>('POST', '/v1/auth/login', {
        anonymous: true,
        body: { username, password, ...(code ? { code } : {}) },
      });
      writeSession(ctx.dir, { url: ctx.url, token: res.accessToken, expiresAt: res.expiresAt, username });
      writeSettings(ctx.dir, { url: ctx.url });
      const summary = { url: ctx.url, username, expiresAt: res.expiresAt, mfaEnrollmentRequired: res.mfaEnrollmentRequired, tokenFile: tokenPath(ctx.dir) };
      ctx.print(summary, () => {
        out(`logged in to ${ctx.url} as ${username} until ${res.expiresAt}`);
        if (res.mfaEnrollmentRequired) note('MFA is not enrolled yet: nothing else works until you run `vaultctl mfa enroll`');
      });
    });

  program
    .command('logout')
    .description('forget the saved token (the vault has no logout call: the token stays valid until it expires)')
    .action((_o: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      let expiresAt: string | undefined;
      try {
        expiresAt = readSession(ctx.dir)?.expiresAt;
      } catch {
        /* an unsafe or broken file is removed all the same */
      }
      const removed = removeSession(ctx.dir);
      ctx.print({ removed, tokenFile: tokenPath(ctx.dir) }, () =>
        out(removed ? `logged out: removed ${tokenPath(ctx.dir)}${expiresAt ? ` (the token itself expires at ${expiresAt})` : ''}` : 'not logged in'),
      );
    });

  program
    .command('whoami')
    .description('who the token belongs to: user, roles, MFA')
    .action(async (_o: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const me = await ctx.client().get<Me>('/v1/me');
      ctx.print(me, () =>
        fields([
          ['user', me.username],
          ['id', me.id],
          ['kind', me.kind ?? 'user'],
          ['roles', me.roles],
          ['mfa', me.kind === 'service' ? 'n/a (service token)' : me.mfaEnrolled ? 'enrolled' : 'NOT enrolled (run `vaultctl mfa enroll`)'],
          ['vault', ctx.url],
        ]),
      );
    });

  const mfa = program.command('mfa').description('TOTP enrollment of your own account');
  mfa
    .command('enroll')
    .description('start enrollment: prints the secret and otpauth:// URI for your authenticator, then confirms with a code')
    .action(async (_o: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const res = await ctx.client().post<{ secret: string; otpauthUri: string }>('/v1/me/mfa/totp');
      // the user's own seed, shown to them once so their authenticator can hold it
      ctx.print(res, () => {
        out(`secret:      ${res.secret}`);
        out(`otpauth URI: ${res.otpauthUri}`);
      });
      if (!interactive()) {
        note('add it to your authenticator, then run `vaultctl mfa confirm --code <current code>`');
        return;
      }
      const code = await ctx.mfa();
      keepSession(ctx, await ctx.client().post<Confirmed>('/v1/me/mfa/totp/confirm', { code }));
      note('MFA enrolled');
    });
  mfa
    .command('confirm')
    .description('finish enrollment with the current code (--code, VAULT_MFA_CODE or asked)')
    .action(async (_o: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const code = await ctx.mfa();
      try {
        const res = await ctx.client().post<Confirmed>('/v1/me/mfa/totp/confirm', { code });
        keepSession(ctx, res);
        ctx.print({ mfaEnrolled: res.mfaEnrolled, expiresAt: res.expiresAt }, () => out('MFA enrolled'));
      } catch (e) {
        if (e instanceof ApiError && e.code === 'MFA_INVALID') throw new CliError(`${e.message}\n  use a code of the secret \`vaultctl mfa enroll\` printed last`, EXIT.MFA, e.code);
        throw e;
      }
    });
}

interface DeviceAuthorization {
  deviceCode: string;
  userCode: string;
  verificationUri: string;
  verificationUriComplete: string | null;
  interval: number;
  expiresIn: number;
}

/**
 * Single sign-on from a terminal (RFC 8628 device flow through the vault): the user opens the provider's page on any
 * device, enters the code and signs in there; meanwhile this polls the vault, which alone talks to the provider and
 * answers a bearer token once the provider said yes (the user's groups mapped to roles as for the portal).
 */
async function loginWithOidc(ctx: Context, provider: string | undefined): Promise<void> {
  const anonymous = ctx.anonymous();
  let name = provider;
  if (name === undefined) {
    const options = await anonymous.request<Array<{ name: string; displayName: string }>>('GET', '/v1/auth/oidc/providers', { anonymous: true });
    if (options.length !== 1) {
      throw usage(options.length === 0 ? 'this vault has no single sign-on provider enabled' : `name the provider: --oidc <${options.map((p) => p.name).join('|')}>`);
    }
    name = options[0].name;
  }
  if (isPlainHttpToRemote(ctx.url)) note(`warning: ${ctx.url} is plain http: the token crosses the network unencrypted`);
  const start = await anonymous.request<DeviceAuthorization>('POST', `/v1/auth/oidc/${seg(name)}/device`, { anonymous: true, body: {} });
  // shown as plain text whatever the provider sent (the vault checks it too): no control sequence reaches the terminal
  const plain = (s: string) => s.replace(/[^\x20-\x7e]/g, '');
  note(`To sign in, open ${plain(start.verificationUriComplete ?? start.verificationUri)}`);
  note(`and enter the code ${plain(start.userCode)} (it is valid for ${Math.round(start.expiresIn / 60)} minutes). Waiting…`);
  const deadline = Date.now() + start.expiresIn * 1000;
  let interval = start.interval;
  for (;;) {
    await new Promise((r) => setTimeout(r, interval * 1000));
    try {
      const res = await anonymous.request<LoginResponse>('POST', '/v1/auth/oidc/device/token', { anonymous: true, body: { deviceCode: start.deviceCode } });
      writeSession(ctx.dir, { url: ctx.url, token: res.accessToken, expiresAt: res.expiresAt, username: '' });
      const me = await ctx.client().get<Me>('/v1/me');
      writeSession(ctx.dir, { url: ctx.url, token: res.accessToken, expiresAt: res.expiresAt, username: me.username });
      writeSettings(ctx.dir, { url: ctx.url });
      const summary = { url: ctx.url, username: me.username, roles: me.roles, provider: name, expiresAt: res.expiresAt, mfaEnrollmentRequired: res.mfaEnrollmentRequired, tokenFile: tokenPath(ctx.dir) };
      ctx.print(summary, () => {
        out(`logged in to ${ctx.url} as ${me.username} (${name}) until ${res.expiresAt}`);
        if (res.mfaEnrollmentRequired) note('MFA is not enrolled yet: nothing else works until you run `vaultctl mfa enroll`');
      });
      return;
    } catch (e) {
      if (!(e instanceof ApiError) || !['AUTHORIZATION_PENDING', 'SLOW_DOWN'].includes(e.code)) throw e;
      if (e.code === 'SLOW_DOWN') interval = typeof e.body.interval === 'number' ? e.body.interval : interval + 5;
      if (Date.now() + interval * 1000 > deadline) throw new CliError('the sign-in at the identity provider was not finished in time: run `vaultctl login --oidc` again', EXIT.UNAUTHENTICATED, 'EXPIRED_TOKEN');
    }
  }
}

/** What confirming enrollment answers: every earlier token of the user has ended, this one replaces the saved one. */
interface Confirmed {
  mfaEnrolled: true;
  accessToken: string;
  expiresAt: string;
}

function keepSession(ctx: Context, res: Confirmed): void {
  const session = readSession(ctx.dir);
  writeSession(ctx.dir, { url: ctx.url, token: res.accessToken, expiresAt: res.expiresAt, username: session?.username ?? '' });
}

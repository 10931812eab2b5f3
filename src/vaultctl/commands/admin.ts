import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { seg } from '../client';
import { Context } from '../context';
import { clean, EXIT, usage } from '../errors';
import { TARGET_TYPES } from '../exec';
import { fields, morePages, out, table } from '../output';
import { interactive, promptHidden, readLineFromStdin } from '../prompt';
import type { Runtime } from '../runtime';
import { commaList, intIn, ListOptions, listOptions, Page, pageQuery, resolveUser } from './common';
import type { AccountView, ServiceTokenView as TokenView, TargetView, UserView, VerifyView } from '../../views';

const ROLES = ['admin', 'operator', 'approver', 'vendor', 'auditor', 'scheduler'];




/** A JSON file given to an option: a usage error (not a crash) when unreadable or not JSON. */
function readJsonFile(path: string, option: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw usage(`${option}: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    /* below */
  }
  throw usage(`${option}: ${path} is not a JSON object`);
}


function registerTargets(program: Command, rt: Runtime): void {
  const targets = program.command('targets').description('admin: systems the vault manages (create, verify and delete need your step-up code: --code)');
  listOptions(
    targets
      .command('list')
      .description('list targets')
      .addOption(new Option('--type <type>').choices(TARGET_TYPES)),
  ).action(async (o: ListOptions & { type?: string }, cmd: Command) => {
    const ctx = Context.of(cmd, rt.execArgs);
    const page = await ctx.client().get<Page<TargetView>>('/v1/targets', { ...pageQuery(o), type: o.type });
    ctx.print(page, () => {
      table(['ID', 'NAME', 'TYPE', 'HOST', 'PORT', 'ADMIN'], page.items.map((t) => [t.id, t.name, t.type, t.host, t.port, t.admin.username]));
      morePages(page.nextCursor);
    });
  });

  targets
    .command('get')
    .argument('<targetId>')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const t = await ctx.client().get<TargetView>(`/v1/targets/${seg(id)}`);
      ctx.print(t, () =>
        fields([
          ['id', t.id],
          ['name', t.name],
          ['type', t.type],
          ['address', `${t.host}:${t.port}`],
          ['admin', `${t.admin.username} (${t.admin.credential.join(', ')})`],
          ['options', t.options],
        ]),
      );
    });

  targets
    .command('create')
    .description('register a target; the admin password is read from stdin (--admin-password-stdin) or asked, never an argument')
    .option('--file <json>', 'the whole POST /v1/targets body from a file (flags override its fields)')
    .option('--name <name>')
    .addOption(new Option('--type <type>').choices(TARGET_TYPES))
    .option('--host <host>')
    .option('--port <port>', 'port', intIn(1, 65535))
    .option('--admin-username <name>', "the target's administrator the vault uses")
    .option('--admin-password-stdin', "read the administrator's password from the first line of stdin")
    .option('--admin-key-file <path>', "ssh: the administrator's private key file")
    .option('--host-key-sha256 <fingerprint>', 'ssh: pin the host key (SHA256:…); else pin it at the first verify with --host-key')
    .option('--sudo', 'ssh: accepted for compatibility; the vault detects at verify whether the administrator runs commands as root or through sudo')
    .option('--database <name>', 'postgres: database to connect to')
    .option('--account-host <pattern>', "mysql: accounts' host pattern")
    .action(
      async (
        o: {
          file?: string;
          name?: string;
          type?: string;
          host?: string;
          port?: number;
          adminUsername?: string;
          adminPasswordStdin?: boolean;
          adminKeyFile?: string;
          hostKeySha256?: string;
          sudo?: boolean;
          database?: string;
          accountHost?: string;
        },
        cmd: Command,
      ) => {
        const ctx = Context.of(cmd, rt.execArgs);
        const body: Record<string, unknown> = o.file ? readJsonFile(o.file, '--file') : {};
        for (const k of ['name', 'type', 'host', 'port'] as const) if (o[k] !== undefined) body[k] = o[k];
        const admin = { ...((body.admin as Record<string, unknown>) ?? {}) };
        if (o.adminUsername) admin.username = o.adminUsername;
        if (o.adminKeyFile) {
          try {
            admin.privateKey = readFileSync(o.adminKeyFile, 'utf8');
          } catch (e) {
            throw usage(`--admin-key-file: cannot read ${o.adminKeyFile}: ${(e as NodeJS.ErrnoException).code}`);
          }
        } else if (o.adminPasswordStdin) admin.password = await readLineFromStdin('--admin-password-stdin');
        else if (!admin.password && !admin.privateKey) {
          if (!interactive()) throw usage("give the target administrator's credential: --admin-password-stdin or --admin-key-file");
          admin.password = await promptHidden(`Password of ${clean(admin.username ?? 'the administrator')} on the target: `);
        }
        body.admin = admin;
        const options = { ...((body.options as Record<string, unknown>) ?? {}) };
        if (o.hostKeySha256) options.hostKeySha256 = o.hostKeySha256;
        if (o.sudo) options.sudo = true;
        if (o.database) options.database = o.database;
        if (o.accountHost) options.accountHost = o.accountHost;
        if (Object.keys(options).length) body.options = options;
        const missing = ['name', 'type', 'host', 'port'].filter((k) => body[k] === undefined);
        if (!admin.username) missing.push('admin-username');
        if (missing.length) throw usage(`targets create needs --${missing.join(', --')} (or --file)`);
        const t = await ctx.client().post<TargetView>('/v1/targets', body, await ctx.mfa());
        ctx.print(t, () => out(`target ${t.name} created: ${t.id} (verify it: \`vaultctl targets verify ${t.id}\`)`));
      },
    );

  targets
    .command('verify')
    .description("log in with the target's administrator credential and list every capability the vault needs (exit 10 when one is missing; step-up MFA: your own code)")
    .argument('<targetId>')
    .option('--host-key <fingerprint>', 'ssh, first verify: pin this host key (SHA256:…), once compared with the server (ssh-keygen -lf on the server)')
    .action(async (id: string, o: { hostKey?: string }, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const res = await ctx.client().post<VerifyView>(`/v1/targets/${seg(id)}/verify`, o.hostKey ? { hostKeySha256: o.hostKey } : {}, await ctx.mfa());
      ctx.print(res, () => {
        out(`target ${id} ${res.ok ? 'ok' : 'reachable, but capabilities are missing'}${res.serverVersion ? ` (${clean(res.serverVersion)})` : ''}`);
        if (res.hostKeySha256) out(`  host key SHA256:${clean(res.hostKeySha256)}${res.privilege ? `, commands run as ${clean(res.privilege)}` : ''}`);
        for (const c of res.capabilities) out(`  ${c.ok ? 'ok     ' : 'MISSING'} ${clean(c.code)}: ${clean(c.message)}`);
      });
      if (!res.ok) rt.exitCode = EXIT.TARGET;
    });

  targets
    .command('delete')
    .argument('<targetId>')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      await ctx.client().request('DELETE', `/v1/targets/${seg(id)}`, { mfaCode: await ctx.mfa() });
      ctx.print({ deleted: id }, () => out(`target ${id} deleted`));
    });
}

function registerAccounts(program: Command, rt: Runtime): void {
  const accounts = program.command('accounts').description('shared privileged accounts in the vault (create, set-policy and delete need your step-up code: --code)');
  listOptions(
    accounts
      .command('list')
      .description('list accounts')
      .option('--target <targetId>', 'only this target')
      .addOption(new Option('--status <status>').choices(['available', 'checked_out', 'rotating', 'needs_attention'])),
  ).action(async (o: ListOptions & { target?: string; status?: string }, cmd: Command) => {
    const ctx = Context.of(cmd, rt.execArgs);
    const page = await ctx.client().get<Page<AccountView>>('/v1/accounts', { ...pageQuery(o), targetId: o.target, status: o.status });
    ctx.print(page, () => {
      table(['ID', 'TARGET', 'USERNAME', 'STATUS', 'LAST ROTATED', 'NEXT ROTATION'], page.items.map((a) => [a.id, a.targetId, a.username, a.status, a.lastRotatedAt, a.nextRotationAt]));
      morePages(page.nextCursor);
    });
  });

  accounts
    .command('get')
    .argument('<accountId>')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const a = await ctx.client().get<AccountView>(`/v1/accounts/${seg(id)}`);
      ctx.print(a, () =>
        fields([
          ['id', a.id],
          ['target', a.targetId],
          ['username', a.username],
          ['status', a.status],
          ['last rotated', a.lastRotatedAt],
          ['next rotation', a.nextRotationAt],
          ['policy', a.policy],
        ]),
      );
    });

  accounts
    .command('create')
    .description('admin: put an account under the vault; without --password-stdin the vault sets a new password on the target')
    .requiredOption('--target <targetId>', 'target id')
    .requiredOption('--username <name>', 'the account on the target')
    .option('--password-stdin', "the account's current password, from the first line of stdin")
    .option('--policy-file <json>', 'policy: {checkoutTtlSeconds, maxCheckoutTtlSeconds, approvalsRequired, rotateAfterCheckin, rotationIntervalSeconds}')
    .option('--approvals <n>', 'policy.approvalsRequired', intIn(0, 10))
    .action(async (o: { target: string; username: string; passwordStdin?: boolean; policyFile?: string; approvals?: number }, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const policy = o.policyFile ? readJsonFile(o.policyFile, '--policy-file') : {};
      if (o.approvals !== undefined) policy.approvalsRequired = o.approvals;
      const body: Record<string, unknown> = { targetId: o.target, username: o.username };
      if (o.passwordStdin) body.password = await readLineFromStdin('--password-stdin');
      if (Object.keys(policy).length) body.policy = policy;
      const a = await ctx.client().post<AccountView>('/v1/accounts', body, await ctx.mfa());
      ctx.print(a, () => out(`account ${a.username} created: ${a.id} (${a.status})`));
    });

  accounts
    .command('set-policy')
    .description("admin: replace an account's policy from a JSON file")
    .argument('<accountId>')
    .requiredOption('--file <json>', 'the policy')
    .action(async (id: string, o: { file: string }, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const body = { policy: readJsonFile(o.file, '--file') };
      const a = await ctx.client().request<AccountView>('PATCH', `/v1/accounts/${seg(id)}`, { body, mfaCode: await ctx.mfa() });
      ctx.print(a, () => out(`account ${a.id} policy: ${clean(JSON.stringify(a.policy))}`));
    });

  accounts
    .command('delete')
    .argument('<accountId>')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      await ctx.client().request('DELETE', `/v1/accounts/${seg(id)}`, { mfaCode: await ctx.mfa() });
      ctx.print({ deleted: id }, () => out(`account ${id} deleted`));
    });

  accounts
    .command('rotations')
    .description('rotation history of an account (no secrets)')
    .argument('<accountId>')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const page = await ctx.client().get<Page<{ id: string; reason: string; status: string; errorCode: string | null; createdAt: string; finishedAt: string | null }>>(
        `/v1/accounts/${seg(id)}/rotations`,
      );
      ctx.print(page, () => table(['ID', 'REASON', 'STATUS', 'ERROR', 'STARTED', 'FINISHED'], page.items.map((r) => [r.id, r.reason, r.status, r.errorCode, r.createdAt, r.finishedAt])));
    });
}

function registerUsers(program: Command, rt: Runtime): void {
  const users = program.command('users').description('admin: people (every change needs your step-up code: --code)');
  listOptions(users.command('list').description('list users')).action(async (o: ListOptions, cmd: Command) => {
    const ctx = Context.of(cmd, rt.execArgs);
    const page = await ctx.client().get<Page<UserView>>('/v1/users', pageQuery(o));
    ctx.print(page, () => {
      table(['ID', 'USERNAME', 'ROLES', 'MFA', 'DISABLED'], page.items.map((u) => [u.id, u.username, u.roles, u.mfaEnrolled ? 'yes' : 'no', u.disabled ? 'yes' : 'no']));
      morePages(page.nextCursor);
    });
  });

  const roles = () => new Option('--roles <a,b>', `roles: ${ROLES.join(', ')}`).argParser(commaList);
  users
    .command('create')
    .description('create a user; the initial password comes from stdin (--password-stdin) or is asked')
    .argument('<username>')
    .addOption(roles().makeOptionMandatory())
    .option('--password-stdin', 'read the initial password from the first line of stdin')
    .action(async (username: string, o: { roles: string[]; passwordStdin?: boolean }, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const password = o.passwordStdin ? await readLineFromStdin('--password-stdin') : await promptHidden(`Initial password for ${clean(username)}: `);
      const u = await ctx.client().post<UserView>('/v1/users', { username, password, roles: o.roles }, await ctx.mfa());
      ctx.print(u, () => out(`user ${u.username} created: ${u.id} (roles ${u.roles.join(', ')}); they enroll MFA at first login`));
    });

  const patch = (name: string, description: string, body: (o: { roles?: string[] }) => Record<string, unknown>, withRoles = false) => {
    const c = users.command(name).description(description).argument('<user>', 'user id or username');
    if (withRoles) c.addOption(roles().makeOptionMandatory());
    c.action(async (ref: string, o: { roles?: string[] }, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const id = await resolveUser(ctx, ref);
      const u = await ctx.client().request<UserView>('PATCH', `/v1/users/${seg(id)}`, { body: body(o), mfaCode: await ctx.mfa() });
      ctx.print(u, () => out(`user ${u.username}: roles ${u.roles.join(', ')}${u.disabled ? ', disabled' : ''}`));
    });
  };
  patch('disable', 'disable a user (their sessions stop working)', () => ({ disabled: true }));
  patch('enable', 'enable a user again', () => ({ disabled: false }));
  patch('set-roles', "replace a user's roles", (o) => ({ roles: o.roles }), true);

  users
    .command('reset-mfa')
    .description('make a user enroll TOTP again; ends their sessions (step-up MFA: your own code)')
    .argument('<user>', 'user id or username')
    .action(async (ref: string, _o: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const id = await resolveUser(ctx, ref);
      const code = await ctx.mfa();
      await ctx.client().request('POST', `/v1/users/${seg(id)}/mfa/reset`, { body: {}, mfaCode: code });
      ctx.print({ reset: id }, () => out(`MFA of ${ref} reset: they enroll again at their next login`));
    });
}

function registerTokens(program: Command, rt: Runtime): void {
  const tokens = program.command('tokens').description('admin: service tokens for schedulers and auditors (create and revoke need your step-up code: --code)');
  listOptions(tokens.command('list').description('list service tokens')).action(async (o: ListOptions, cmd: Command) => {
    const ctx = Context.of(cmd, rt.execArgs);
    const page = await ctx.client().get<Page<TokenView>>('/v1/service-tokens', pageQuery(o));
    ctx.print(page, () => {
      table(['ID', 'NAME', 'ROLES', 'EXPIRES', 'REVOKED'], page.items.map((t) => [t.id, t.name, t.roles, t.expiresAt, t.revokedAt]));
      morePages(page.nextCursor);
    });
  });

  tokens
    .command('create')
    .description('create a service token (scheduler/auditor roles only); the token is printed once, to stdout')
    .requiredOption('--name <name>')
    .requiredOption('--roles <a,b>', 'scheduler, auditor', commaList)
    .option('--expires-at <iso8601>', 'expiry, e.g. 2030-01-01T00:00:00Z')
    .action(async (o: { name: string; roles: string[]; expiresAt?: string }, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const body = { name: o.name, roles: o.roles, ...(o.expiresAt ? { expiresAt: o.expiresAt } : {}) };
      const res = await ctx.client().post<{ id: string; token: string }>('/v1/service-tokens', body, await ctx.mfa());
      ctx.print(res, () => {
        process.stderr.write(`service token ${res.id} created; it is shown only now, store it in the scheduler's secret store:\n`);
        out(res.token);
      });
    });

  tokens
    .command('revoke')
    .argument('<tokenId>')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      await ctx.client().request('DELETE', `/v1/service-tokens/${seg(id)}`, { mfaCode: await ctx.mfa() });
      ctx.print({ revoked: id }, () => out(`service token ${id} revoked`));
    });
}

function registerPolicy(program: Command, rt: Runtime): void {
  const policy = program.command('policy').description("a target's ephemeral policy: what one-time accounts may have, how many approvals");
  policy
    .command('get')
    .argument('<targetId>')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const p = await ctx.client().get<Record<string, unknown>>(`/v1/targets/${seg(id)}/ephemeral-policy`);
      ctx.print(p, () => fields(Object.entries(p)));
    });
  policy
    .command('set')
    .description('admin: replace the policy: {approvalsRequired, maxTtlSeconds, allowedGroups?, allowedDatabases?, allowedRoles?, allowedGrants?} (step-up MFA: your own code)')
    .argument('<targetId>')
    .requiredOption('--file <json>', 'the policy as JSON')
    .action(async (id: string, o: { file: string }, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const body = readJsonFile(o.file, '--file');
      const p = await ctx.client().request<Record<string, unknown>>('PUT', `/v1/targets/${seg(id)}/ephemeral-policy`, { body, mfaCode: await ctx.mfa() });
      ctx.print(p, () => fields(Object.entries(p)));
    });
}

export function registerAdmin(program: Command, rt: Runtime): void {
  registerTargets(program, rt);
  registerAccounts(program, rt);
  registerUsers(program, rt);
  registerTokens(program, rt);
  registerPolicy(program, rt);
}

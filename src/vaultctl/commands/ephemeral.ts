import { Command, Option } from 'commander';
import type { ClaimView, EphemeralView } from '../../views';
import { seg } from '../client';
import { Context } from '../context';
import { usage } from '../errors';
import { runWithCredential, TargetType } from '../exec';
import { fields, morePages, note, out, short, table } from '../output';
import type { Runtime } from '../runtime';
import { execType, targetInfo, typeOption } from './checkouts';
import { approvalsThatCount, collect, commaList, intIn, ListOptions, Page, pageQuery } from './common';

/** The API's own shapes (type-only: nothing of the server is loaded by the CLI). */
export type { EphemeralView };


const STATUSES = ['pending_approval', 'approved', 'denied', 'creating', 'active', 'revoking', 'revoked', 'expired', 'needs_attention'];

/** `SELECT,INSERT:db.*` → `{privileges: ['SELECT', 'INSERT'], on: 'db.*'}`. */
export function parseGrant(text: string): { privileges: string[]; on: string } {
  const colon = text.lastIndexOf(':');
  if (colon <= 0 || colon === text.length - 1) throw usage(`--grants takes PRIVILEGE[,PRIVILEGE…]:db.table, e.g. 'SELECT,INSERT:shop.*' (got ${text})`);
  return { privileges: commaList(text.slice(0, colon)), on: text.slice(colon + 1) };
}

export function registerEphemeral(program: Command, rt: Runtime): void {
  const eph = program.command('ephemeral').description('one-time accounts for vendors: request, claim, revoke, list');

  eph
    .command('request')
    .description('operators: ask for a one-time account on a target for a vendor (approved by an approver)')
    .requiredOption('--target <targetId>', 'target id')
    .requiredOption('--vendor <userId>', 'id of the vendor user who will claim it')
    .requiredOption('--ttl <seconds>', "the account's lifetime from the claim", intIn(60, 7 * 24 * 3600))
    .requiredOption('-r, --reason <text>', 'justification')
    .option('--groups <a,b>', 'ssh: supplementary groups', commaList)
    .option('--database <name>', 'postgres: database to grant CONNECT on')
    .option('--grant-roles <a,b>', 'postgres: roles to grant', commaList)
    .option('--grants <priv,priv:db.table>', "mysql: a grant, e.g. 'SELECT:shop.*' (repeatable)", collect)
    .action(
      async (
        o: { target: string; vendor: string; ttl: number; reason: string; groups?: string[]; database?: string; grantRoles?: string[]; grants?: string[] },
        cmd: Command,
      ) => {
        const ctx = Context.of(cmd, rt.execArgs);
        const access: Record<string, unknown> = {};
        if (o.groups) access.groups = o.groups;
        if (o.database) access.database = o.database;
        if (o.grantRoles) access.grantRoles = o.grantRoles;
        if (o.grants) access.grants = o.grants.map(parseGrant);
        const res = await ctx.client().post<EphemeralView>('/v1/ephemeral-accounts', {
          targetId: o.target,
          vendorUserId: o.vendor,
          ttlSeconds: o.ttl,
          justification: o.reason,
          ...(Object.keys(access).length ? { access } : {}),
        });
        ctx.print(res, () => {
          out(`one-time account request ${res.id} is ${res.status}`);
          if (res.status === 'pending_approval') note(`an approver runs \`vaultctl approve ${res.id}\`; then the vendor runs \`vaultctl ephemeral claim ${res.id}\``);
          else note(`the vendor runs \`vaultctl ephemeral claim ${res.id}\``);
        });
      },
    );

  eph
    .command('claim')
    .description('vendors: create the account on the target and get its credential, once (step-up MFA); or run a client with --exec')
    .argument('<id>')
    .option('--exec', 'run the command after `--` with the credential in its environment instead of printing it')
    .option('--revoke-after', 'with --exec: revoke the account when the command exits')
    .addOption(typeOption())
    .action(async (id: string, o: { exec?: boolean; revokeAfter?: boolean; type?: TargetType }, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const command = ctx.execCommand(o.exec);
      if (o.revokeAfter && !command) throw usage('--revoke-after goes with --exec');
      let info: { type?: TargetType; database?: string } = {};
      let database: string | undefined;
      if (command && !o.type) {
        const view = await ctx.client().get<EphemeralView>(`/v1/ephemeral-accounts/${seg(id)}`);
        info = await targetInfo(ctx, view.targetId);
        database = typeof view.access?.database === 'string' ? view.access.database : info.database;
      }
      const code = await ctx.mfa();
      const res = await ctx.client().post<ClaimView>(`/v1/ephemeral-accounts/${seg(id)}/claim`, {}, code);
      if (!command) {
        return ctx.print(res, () => {
          note(`one-time account ${res.id} valid until ${res.expiresAt}; this is the only time the password is shown`);
          fields([
            ['username', res.username],
            ['password', res.password],
            ['host', res.host],
            ['port', res.port],
          ]);
        });
      }
      // brokered only: the vault keeps the password; the account is reached through the SSH gateway (vaultctl ssh)
      if (res.password === undefined) throw usage(`one-time account ${res.id} is brokered only: no password is handed out; connect with vaultctl ssh`);
      const type = execType(o.type, command, info);
      if (!ctx.json) note(`one-time account ${res.id} valid until ${res.expiresAt}; running ${command[0]} with the credential in its environment${type ? ` (${type})` : ''}`);
      rt.exitCode = await runWithCredential(command, { ...res, password: res.password }, type, { database, extra: { VAULT_EPHEMERAL_ID: res.id } });
      if (o.revokeAfter) {
        const view = await ctx.client().post<EphemeralView>(`/v1/ephemeral-accounts/${seg(id)}/revoke`);
        if (!ctx.json) note(`revoked ${view.id} (${view.status})`);
      }
    });

  eph
    .command('revoke')
    .description('remove the one-time account from the target and end its sessions (vendor, requester or admin)')
    .argument('<id>')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const res = await ctx.client().post<EphemeralView>(`/v1/ephemeral-accounts/${seg(id)}/revoke`);
      ctx.print(res, () => out(`one-time account ${res.id} is ${res.status}`));
    });

  eph
    .command('list')
    .description('one-time account requests (requesters and vendors see their own)')
    .addOption(new Option('--status <status>').choices(STATUSES))
    .option('--target <targetId>', 'only this target')
    .option('--limit <n>', 'page size', intIn(1, 200))
    .option('--cursor <cursor>', 'next page')
    .action(async (o: ListOptions & { status?: string; target?: string }, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const page = await ctx.client().get<Page<EphemeralView>>('/v1/ephemeral-accounts', { ...pageQuery(o), status: o.status, targetId: o.target });
      ctx.print(page, () => {
        table(
          ['ID', 'TARGET', 'VENDOR', 'STATUS', 'USERNAME', 'EXPIRES', 'JUSTIFICATION'],
          page.items.map((e) => [e.id, e.targetId, e.vendorId, e.status, e.username, e.expiresAt ?? e.requestDeadline, short(e.justification)]),
        );
        morePages(page.nextCursor);
      });
    });

  eph
    .command('show')
    .description('one request, without any credential')
    .argument('<id>')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const e = await ctx.client().get<EphemeralView>(`/v1/ephemeral-accounts/${seg(id)}`);
      ctx.print(e, () =>
        fields([
          ['id', e.id],
          ['target', e.targetId],
          ['vendor', e.vendorId],
          ['requester', e.requesterId],
          ['status', e.status],
          ['access', e.access],
          ['ttl', `${e.ttlSeconds} s`],
          ['approvals', `${approvalsThatCount(e)}/${e.approvalsRequired}`],
          ['username', e.username],
          ['claimed', e.claimedAt],
          ['expires', e.expiresAt],
          ['ended', e.endedAt ? `${e.endedAt} (${e.endReason})` : null],
          ['justification', e.justification],
        ]),
      );
    });
}

import { Command, Option } from 'commander';
import { seg } from '../client';
import { Context } from '../context';
import { ApiError, EXIT, usage } from '../errors';
import { Credential, guessType, runWithCredential, TARGET_TYPES, TargetType } from '../exec';
import { fields, morePages, note, out, short, table } from '../output';
import type { Runtime } from '../runtime';
import { allPages, approvalsThatCount, intIn, isUuid, ListOptions, Page, pageQuery } from './common';
// the API's own shapes (type-only: nothing of the server is loaded by the CLI)
import type { AccountView, CheckoutView, TargetView } from '../../views';

export type { CheckoutView };




const TTL_MAX = 7 * 24 * 3600;
export const typeOption = () => new Option('--type <type>', 'target type for --exec (default: from the vault, else from the command name)').choices(TARGET_TYPES);

/** The target's type and database for --exec; {} when the caller may not read targets (vendors). */
export async function targetInfo(ctx: Context, targetId: string): Promise<{ type?: TargetType; database?: string }> {
  try {
    const t = await ctx.client().get<TargetView>(`/v1/targets/${seg(targetId)}`);
    return { type: t.type, database: t.options?.database };
  } catch (e) {
    if (e instanceof ApiError && e.code === 'FORBIDDEN') return {};
    throw e;
  }
}

/** Type for --exec: `--type`, else what the vault says, else a guess from the client's name. */
export function execType(option: TargetType | undefined, command: string[], info: { type?: TargetType }): TargetType | undefined {
  return option ?? info.type ?? guessType(command[0]);
}

/** An account id, or `<target name>/<username>` looked up through the lists. */
export async function resolveAccount(ctx: Context, ref: string): Promise<string> {
  if (isUuid(ref)) return ref;
  const slash = ref.lastIndexOf('/');
  if (slash <= 0) throw usage(`account must be an id or <target name>/<username>: ${ref}`);
  const [targetName, username] = [ref.slice(0, slash), ref.slice(slash + 1)];
  const target = (await allPages<TargetView>(ctx.client(), '/v1/targets')).find((t) => t.name === targetName);
  if (!target) throw new ApiError(404, 'NOT_FOUND', { message: `no target named ${targetName}` });
  const account = (await allPages<AccountView>(ctx.client(), '/v1/accounts', { targetId: target.id })).find((a) => a.username === username);
  if (!account) throw new ApiError(404, 'NOT_FOUND', { message: `no account ${username} on target ${targetName}` });
  return account.id;
}

function printCredential(ctx: Context, answer: unknown, cred: Credential, header: string): void {
  ctx.print(answer, () => {
    note(header);
    fields([
      ['username', cred.username],
      ['password', cred.password],
      ['host', cred.host],
      ['port', cred.port],
    ]);
  });
}

async function checkinNow(ctx: Context, id: string): Promise<CheckoutView> {
  return ctx.client().post<CheckoutView>(`/v1/checkouts/${seg(id)}/checkin`);
}

/**
 * Runs the --exec command with the credential; then, with --checkin-after, checks in. Exit status: the child's,
 * unless the check-in fails (then its code: the account is still checked out and the caller must know).
 */
async function execThenMaybeCheckin(
  ctx: Context,
  rt: Runtime,
  command: string[],
  cred: Credential,
  type: TargetType | undefined,
  database: string | undefined,
  checkout: { id: string; expiresAt: string | null },
  checkinAfter: boolean,
): Promise<void> {
  if (!ctx.json) note(`checkout ${checkout.id} active until ${checkout.expiresAt}; running ${command[0]} with the credential in its environment${type ? ` (${type})` : ''}`);
  const status = await runWithCredential(command, cred, type, { database, extra: { VAULT_CHECKOUT_ID: checkout.id } });
  rt.exitCode = status;
  if (checkinAfter) {
    const view = await checkinNow(ctx, checkout.id);
    if (!ctx.json) note(`checked in ${view.id} (${view.status}); the password is rotated now`);
  }
}

export function registerCheckouts(program: Command, rt: Runtime): void {
  program
    .command('checkout')
    .description('check out a shared account (step-up MFA): prints the credential, or runs a client with --exec -- <command>')
    .argument('<account>', 'account id, or <target name>/<username>')
    .requiredOption('-r, --reason <text>', 'justification (kept in the audit log, shown to approvers)')
    .option('--ttl <seconds>', "lease length (default: the account policy's)", intIn(60, TTL_MAX))
    .option('--break-glass', "emergency: skip approvals where the account's policy allows it (reviewed afterwards)")
    .option('--exec', 'run the command after `--` with the credential in its environment instead of printing it')
    .option('--checkin-after', 'with --exec: check in when the command exits')
    .addOption(typeOption())
    .action(async (ref: string, o: { reason: string; ttl?: number; breakGlass?: boolean; exec?: boolean; checkinAfter?: boolean; type?: TargetType }, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const command = ctx.execCommand(o.exec);
      if (o.checkinAfter && !command) throw usage('--checkin-after goes with --exec');
      const accountId = await resolveAccount(ctx, ref);
      // looked up before the checkout, so a failure here does not leave the account checked out
      let info: { type?: TargetType; database?: string } = {};
      if (command && !o.type) {
        const account = await ctx.client().get<AccountView>(`/v1/accounts/${seg(accountId)}`);
        info = await targetInfo(ctx, account.targetId);
      }
      const code = await ctx.mfa();
      const res = await ctx.client().post<CheckoutView & { credential?: Credential }>(
        '/v1/checkouts',
        { accountId, justification: o.reason, ...(o.ttl ? { ttlSeconds: o.ttl } : {}), ...(o.breakGlass ? { breakGlass: true } : {}) },
        code,
      );
      if (res.status !== 'active' || !res.credential) {
        ctx.print(res, () => {
          out(`checkout ${res.id} is ${res.status}: ${res.approvalsRequired} approval(s) needed before ${res.expiresAt}`);
          note(`an approver runs \`vaultctl approve ${res.id}\`; then \`vaultctl reveal ${res.id}${command ? ' --exec -- …' : ''}\``);
        });
        if (command) {
          note('vaultctl: nothing was run: the checkout is waiting for approval (exit 14)');
          rt.exitCode = EXIT.PENDING_APPROVAL;
        }
        return;
      }
      if (!command) return printCredential(ctx, res, res.credential, `checkout ${res.id} active until ${res.expiresAt}; check in with \`vaultctl checkin ${res.id}\``);
      await execThenMaybeCheckin(ctx, rt, command, res.credential, execType(o.type, command, info), info.database, res, Boolean(o.checkinAfter));
    });

  program
    .command('reveal')
    .description('show the credential of your active checkout again (step-up MFA), or run a client with --exec')
    .argument('<checkoutId>')
    .option('--exec', 'run the command after `--` with the credential in its environment instead of printing it')
    .option('--checkin-after', 'with --exec: check in when the command exits')
    .addOption(typeOption())
    .action(async (id: string, o: { exec?: boolean; checkinAfter?: boolean; type?: TargetType }, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const command = ctx.execCommand(o.exec);
      if (o.checkinAfter && !command) throw usage('--checkin-after goes with --exec');
      let info: { type?: TargetType; database?: string } = {};
      if (command && !o.type) {
        const checkout = await ctx.client().get<CheckoutView>(`/v1/checkouts/${seg(id)}`);
        const account = await ctx.client().get<AccountView>(`/v1/accounts/${seg(checkout.accountId)}`);
        info = await targetInfo(ctx, account.targetId);
      }
      const code = await ctx.mfa();
      const res = await ctx.client().post<{ credential: Credential; expiresAt: string }>(`/v1/checkouts/${seg(id)}/reveal`, {}, code);
      if (!command) return printCredential(ctx, res, res.credential, `checkout ${id} active until ${res.expiresAt}`);
      await execThenMaybeCheckin(ctx, rt, command, res.credential, execType(o.type, command, info), info.database, { id, expiresAt: res.expiresAt }, Boolean(o.checkinAfter));
    });

  program
    .command('extend')
    .description('extend your active checkout (step-up MFA), within the policy maximum')
    .argument('<checkoutId>')
    .requiredOption('--ttl <seconds>', 'seconds added to the current expiry', intIn(60, TTL_MAX))
    .action(async (id: string, o: { ttl: number }, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const code = await ctx.mfa();
      const res = await ctx.client().post<CheckoutView>(`/v1/checkouts/${seg(id)}/extend`, { ttlSeconds: o.ttl }, code);
      ctx.print(res, () => out(`checkout ${res.id} now expires at ${res.expiresAt}`));
    });

  program
    .command('checkin')
    .description('return a checkout; the password is rotated (when the policy says so) and the old one stops working')
    .argument('<checkoutId>')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const res = await checkinNow(ctx, id);
      ctx.print(res, () => out(`checkout ${res.id} ${res.status}${res.rotationId ? `; password rotation ${res.rotationId}` : ''}`));
    });

  program
    .command('revoke')
    .description('admin: force-end a checkout (sessions terminated, password rotated)')
    .argument('<checkoutId>')
    .option('-r, --reason <text>', 'why (audit log)')
    .action(async (id: string, o: { reason?: string }, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const res = await ctx.client().post<CheckoutView>(`/v1/checkouts/${seg(id)}/revoke`, o.reason ? { reason: o.reason } : {});
      ctx.print(res, () => out(`checkout ${res.id} ${res.status}`));
    });

  program
    .command('checkouts')
    .description('list checkouts (operators see their own), or show one')
    .argument('[checkoutId]')
    .addOption(new Option('--status <status>').choices(['pending_approval', 'active', 'returned', 'expired', 'revoked', 'denied']))
    .option('--account <accountId>', 'only this account')
    .option('--limit <n>', 'page size', intIn(1, 200))
    .option('--cursor <cursor>', 'next page')
    .action(async (id: string | undefined, o: ListOptions & { status?: string; account?: string }, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      if (id) {
        const c = await ctx.client().get<CheckoutView>(`/v1/checkouts/${seg(id)}`);
        return ctx.print(c, () =>
          fields([
            ['id', c.id],
            ['account', c.accountId],
            ['requester', c.requesterId],
            ['status', c.status],
            ['break-glass', c.breakGlass ? 'yes' : 'no'],
            ['justification', c.justification],
            ['ttl', `${c.ttlSeconds} s`],
            ['approvals', `${approvalsThatCount(c)}/${c.approvalsRequired}`],
            ['requested', c.requestedAt],
            ['expires', c.expiresAt],
            ['ended', c.endedAt ? `${c.endedAt} (${c.endReason})` : null],
            ['rotation', c.rotationId],
          ]),
        );
      }
      const page = await ctx.client().get<Page<CheckoutView>>('/v1/checkouts', { ...pageQuery(o), status: o.status, accountId: o.account });
      ctx.print(page, () => {
        table(
          ['ID', 'ACCOUNT', 'STATUS', 'REQUESTER', 'EXPIRES', 'JUSTIFICATION'],
          page.items.map((c) => [c.id, c.accountId, c.breakGlass ? `${c.status} (break-glass)` : c.status, c.requesterId, c.expiresAt, short(c.justification)]),
        );
        morePages(page.nextCursor);
      });
    });
}

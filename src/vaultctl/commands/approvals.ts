import { Command, Option } from 'commander';
import { seg } from '../client';
import { Context } from '../context';
import { ApiError, clean, usage } from '../errors';
import { note, out, short, table } from '../output';
import type { Runtime } from '../runtime';
import type { CheckoutView } from './checkouts';
import type { EphemeralView } from './ephemeral';
import { allPages, approvalsThatCount, Page } from './common';

type Kind = 'checkout' | 'ephemeral';
const PATHS: Record<Kind, string> = { checkout: '/v1/checkouts', ephemeral: '/v1/ephemeral-accounts' };

/** GET of a list the caller may not be allowed to read: empty (with a note) on FORBIDDEN. */
async function pendingOf<T>(ctx: Context, kind: Kind): Promise<T[] | undefined> {
  try {
    return (await ctx.client().get<Page<T>>(PATHS[kind], { status: 'pending_approval', limit: 200 })).items;
  } catch (e) {
    if (e instanceof ApiError && e.code === 'FORBIDDEN') return undefined;
    throw e;
  }
}

/** Which kind of request an id is: `--kind`, else a GET on checkouts, then on one-time accounts. */
async function findRequest(ctx: Context, id: string, kind?: Kind): Promise<{ kind: Kind; view: CheckoutView | EphemeralView }> {
  const kinds: Kind[] = kind ? [kind] : ['checkout', 'ephemeral'];
  let last: unknown;
  for (const k of kinds) {
    try {
      return { kind: k, view: await ctx.client().get<CheckoutView | EphemeralView>(`${PATHS[k]}/${seg(id)}`) };
    } catch (e) {
      if (!(e instanceof ApiError) || (e.code !== 'NOT_FOUND' && e.code !== 'FORBIDDEN')) throw e;
      last = e;
    }
  }
  if (!kind && last instanceof ApiError && last.code === 'NOT_FOUND') throw new ApiError(404, 'NOT_FOUND', { message: `no checkout or one-time account request ${id}` });
  throw last;
}

function describe(kind: Kind, v: CheckoutView | EphemeralView): string {
  if (kind === 'checkout') {
    const c = v as CheckoutView;
    return `checkout ${c.id}: account ${c.accountId} for ${c.requesterId}, ${c.ttlSeconds} s${c.breakGlass ? ', BREAK-GLASS' : ''}, "${clean(c.justification)}"`;
  }
  const e = v as EphemeralView;
  return `one-time account ${e.id}: target ${e.targetId} for vendor ${e.vendorId}, asked by ${e.requesterId}, ${e.ttlSeconds} s, access ${clean(JSON.stringify(e.access ?? {}))}, "${clean(e.justification)}"`;
}

export function registerApprovals(program: Command, rt: Runtime): void {
  program
    .command('requests')
    .description('approvers: checkouts and one-time accounts waiting for approval')
    .action(async (_o: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const checkouts = await pendingOf<CheckoutView>(ctx, 'checkout');
      const ephemeral = await pendingOf<EphemeralView>(ctx, 'ephemeral');
      if (!checkouts && !ephemeral) throw new ApiError(403, 'FORBIDDEN', { message: 'your roles may read neither checkouts nor one-time account requests' });
      const approved = (v: { approvals: Array<{ decision: string; matchesRequest: boolean }>; approvalsRequired: number }) =>
        `${approvalsThatCount(v)}/${v.approvalsRequired}`;
      ctx.print({ checkouts: checkouts ?? [], ephemeralAccounts: ephemeral ?? [] }, () =>
        table(
          ['KIND', 'ID', 'REQUESTER', 'FOR', 'TTL', 'APPROVALS', 'DEADLINE', 'JUSTIFICATION'],
          [
            ...(checkouts ?? []).map((c) => ['checkout', c.id, c.requesterId, `account ${c.accountId}${c.breakGlass ? ' (break-glass)' : ''}`, c.ttlSeconds, approved(c), c.expiresAt, short(c.justification)]),
            ...(ephemeral ?? []).map((e) => ['ephemeral', e.id, e.requesterId, `vendor ${e.vendorId} on ${e.targetId}`, e.ttlSeconds, approved(e), e.requestDeadline, short(e.justification)]),
          ],
        ),
      );
    });

  for (const decision of ['approve', 'deny'] as const) {
    program
      .command(decision)
      .description(`${decision} a pending checkout or one-time account request (step-up MFA; never your own)`)
      .argument('<requestId>')
      .option('-m, --comment <text>', 'comment kept with the decision')
      .addOption(new Option('--kind <kind>', 'what the id is (default: looked up)').choices(['checkout', 'ephemeral']))
      .action(async (id: string, o: { comment?: string; kind?: Kind }, cmd: Command) => {
        const ctx = Context.of(cmd, rt.execArgs);
        const { kind, view } = await findRequest(ctx, id, o.kind);
        if (!ctx.json) note(`${decision === 'approve' ? 'approving' : 'denying'} ${describe(kind, view)}`);
        const code = await ctx.mfa();
        // the digest of what was just shown: the vault refuses (REQUEST_CHANGED) if the request changed since
        const body = { requestDigest: view.requestDigest, ...(o.comment ? { comment: o.comment } : {}) };
        const res = await ctx.client().post<CheckoutView | EphemeralView>(`${PATHS[kind]}/${seg(id)}/${decision}`, body, code);
        ctx.print(res, () => out(`${kind} ${res.id} is ${res.status}`));
      });
  }

  program
    .command('review')
    .description('approvers and auditors: review a break-glass checkout once it has ended (step-up MFA; without an id: list those waiting for review)')
    .argument('[checkoutId]')
    .option('-m, --comment <text>', 'your finding, kept in the audit log (required with an id)')
    .action(async (id: string | undefined, o: { comment?: string }, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      if (!id) {
        const waiting = await allPages<CheckoutView>(ctx.client(), '/v1/checkouts', { breakGlass: 'true', reviewed: 'false' });
        ctx.print(waiting, () =>
          table(['ID', 'REQUESTER', 'ACCOUNT', 'STATUS', 'REQUESTED', 'JUSTIFICATION'], waiting.map((c) => [c.id, c.requesterId, c.accountId, c.status, c.requestedAt, short(c.justification)])),
        );
        return;
      }
      if (!o.comment) throw usage('review needs --comment: what you found');
      const code = await ctx.mfa();
      const res = await ctx.client().post<CheckoutView>(`/v1/checkouts/${seg(id)}/review`, { comment: o.comment }, code);
      ctx.print(res, () => out(`break-glass checkout ${res.id} reviewed`));
    });
}

import { Command, Option } from 'commander';
import { seg } from '../client';
import { Context } from '../context';
import { ApiError, CliError, clean, EXIT, usage } from '../errors';
import { note, out, table } from '../output';
import { Progress } from '../progress';
import type { Runtime } from '../runtime';
import type { RotationView } from '../../views';
import { allPages, intIn, Page } from './common';


export type Outcome = 'succeeded' | 'requested' | 'failed' | 'skipped';

export interface RotateResult {
  accountId: string;
  outcome: Outcome;
  rotationId?: string;
  /** The vault's code for failed and skipped ones. */
  code?: string;
  message?: string;
}

/** 409s that mean "not now, and that is fine": a checked-out account rotates at check-in anyway. */
const SKIP_CODES = new Set(['ACCOUNT_CHECKED_OUT', 'ACCOUNT_BUSY', 'ACCOUNT_ROTATION_PENDING', 'ACCOUNT_CLEANUP_PENDING']);
/** Errors that would be the same for every account: stop instead of failing them one by one. */
const FATAL_EXITS: number[] = [EXIT.UNAUTHENTICATED, EXIT.FORBIDDEN, EXIT.UNAVAILABLE, EXIT.MFA, EXIT.THROTTLED];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `work` over `items` with at most `limit` at a time; stops starting new ones once `stop()` is true. */
async function pool<T>(items: T[], limit: number, work: (item: T) => Promise<void>, stop: () => boolean): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length && !stop()) await work(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

async function waitFor(ctx: Context, accountId: string, rotationId: string, deadline: number): Promise<RotationView | undefined> {
  for (let delay = 250; Date.now() < deadline; delay = Math.min(delay * 2, 2000)) {
    const page = await ctx.client().get<Page<RotationView>>(`/v1/accounts/${seg(accountId)}/rotations`);
    const r = page.items.find((i) => i.id === rotationId);
    if (r && r.status !== 'pending') return r;
    await sleep(Math.min(delay, Math.max(0, deadline - Date.now())));
  }
  return undefined;
}

/** The accounts a selection names; a scheduler token may rotate but not list accounts, so it must give ids. */
async function selectAccounts(ctx: Context, status?: string, targetId?: string): Promise<string[]> {
  try {
    return (await allPages<{ id: string }>(ctx.client(), '/v1/accounts', { status, targetId })).map((a) => a.id);
  } catch (e) {
    if (e instanceof ApiError && e.code === 'FORBIDDEN') {
      e.message += '\n  --all, --status and --target list accounts, which scheduler tokens may not: give the account ids instead';
    }
    throw e;
  }
}

export function registerRotate(program: Command, rt: Runtime): void {
  program
    .command('rotate')
    .description('rotate the passwords of many accounts at once (admin, scheduler), with a progress bar and a summary')
    .argument('[accountIds...]', 'accounts to rotate (or select with --all / --status / --target)')
    .option('--all', 'every account (with --target: every account of that target)')
    .addOption(new Option('--status <status>', 'accounts in this status, e.g. needs_attention').choices(['available', 'checked_out', 'rotating', 'needs_attention']))
    .option('--target <targetId>', 'accounts of this target')
    .option('--concurrency <n>', 'rotations requested at the same time', intIn(1, 64), 4)
    .option('--wait', 'wait for each rotation to finish on the target (otherwise: requested is success)')
    .option('--wait-timeout <seconds>', 'with --wait: give up waiting after this long', intIn(1, 86400), 300)
    .action(
      async (
        ids: string[],
        o: { all?: boolean; status?: string; target?: string; concurrency: number; wait?: boolean; waitTimeout: number },
        cmd: Command,
      ) => {
        const ctx = Context.of(cmd, rt.execArgs);
        const selecting = Boolean(o.all || o.status || o.target);
        if (ids.length && selecting) throw usage('give account ids or a selection (--all, --status, --target), not both');
        if (!ids.length && !selecting) throw usage('which accounts? give ids, or --all, --status <status>, --target <targetId>');
        const accountIds = ids.length ? [...new Set(ids)] : await selectAccounts(ctx, o.status, o.target);

        const results: RotateResult[] = [];
        const progress = Progress.for(accountIds.length, ctx.json);
        const deadline = Date.now() + o.waitTimeout * 1000;
        let fatal: CliError | undefined;
        const record = (r: RotateResult) => {
          results.push(r);
          const why = r.code ? ` ${r.code}${r.message ? `: ${clean(r.message)}` : ''}` : '';
          progress.item(r.outcome, `${r.accountId} ${r.outcome}${r.rotationId ? ` (rotation ${r.rotationId})` : ''}${why}`);
        };

        await pool(
          accountIds,
          o.concurrency,
          async (accountId) => {
            let rotationId: string;
            try {
              rotationId = (await ctx.client().post<{ rotationId: string }>(`/v1/accounts/${seg(accountId)}/rotate`)).rotationId;
            } catch (e) {
              if (e instanceof CliError && FATAL_EXITS.includes(e.exitCode)) {
                fatal ??= e;
                return;
              }
              if (e instanceof ApiError && SKIP_CODES.has(e.code)) return record({ accountId, outcome: 'skipped', code: e.code, message: String(e.body.message ?? '') });
              if (e instanceof ApiError) return record({ accountId, outcome: 'failed', code: e.code, message: String(e.body.message ?? '') });
              throw e;
            }
            if (!o.wait) return record({ accountId, outcome: 'requested', rotationId });
            try {
              const done = await waitFor(ctx, accountId, rotationId, deadline);
              if (!done) return record({ accountId, outcome: 'failed', rotationId, code: 'WAIT_TIMEOUT', message: `still pending after ${o.waitTimeout} s` });
              if (done.status === 'succeeded') return record({ accountId, outcome: 'succeeded', rotationId });
              record({ accountId, outcome: 'failed', rotationId, code: done.errorCode ?? done.status.toUpperCase(), message: `rotation ${done.status}` });
            } catch (e) {
              if (e instanceof ApiError) return record({ accountId, outcome: 'failed', rotationId, code: e.code, message: String(e.body.message ?? '') });
              throw e;
            }
          },
          () => fatal !== undefined,
        );
        progress.finish();
        if (fatal) {
          if (results.length) note(`stopped after ${results.length} of ${accountIds.length} accounts`);
          throw fatal;
        }

        const count = (k: Outcome) => results.filter((r) => r.outcome === k).length;
        const summary = {
          total: accountIds.length,
          succeeded: count('succeeded'),
          requested: count('requested'),
          failed: count('failed'),
          skipped: count('skipped'),
          results: accountIds.map((id) => results.find((r) => r.accountId === id)!),
        };
        ctx.print(summary, () => {
          const notOk = summary.results.filter((r) => r.outcome === 'failed' || r.outcome === 'skipped');
          if (notOk.length) table(['ACCOUNT', 'OUTCOME', 'CODE', 'MESSAGE'], notOk.map((r) => [r.accountId, r.outcome, r.code, r.message]));
          const done = o.wait ? `${summary.succeeded} succeeded` : `${summary.requested} requested (not waited for: add --wait)`;
          out(`rotate: ${summary.total} account(s): ${done}, ${summary.failed} failed, ${summary.skipped} skipped`);
        });
        if (summary.failed > 0) rt.exitCode = EXIT.ROTATION_FAILED;
      },
    );
}

import type { AuditEventView } from '../../views';
import { Command } from 'commander';
import { Context } from '../context';
import { clean, EXIT, usage } from '../errors';
import { morePages, note, out, short, table } from '../output';
import type { Runtime } from '../runtime';
import { intIn, Page } from './common';

type VerifyResult = { ok: true; count: number; headSeq: string; headHash: string } | { ok: false; firstInvalidId: string | null; reason?: string };

type AuditEvent = AuditEventView;

export function registerAudit(program: Command, rt: Runtime): void {
  const audit = program.command('audit').description('the tamper-evident audit log (auditor, admin)');

  audit
    .command('verify')
    .description('check the hash chain; with the head of an earlier run (kept outside the vault) also that nothing was cut off')
    .option('--head-seq <n>', 'headSeq of an earlier verify')
    .option('--head-hash <hex>', 'headHash of an earlier verify')
    .action(async (o: { headSeq?: string; headHash?: string }, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      if (Boolean(o.headSeq) !== Boolean(o.headHash)) throw usage('--head-seq and --head-hash go together');
      const res = await ctx.client().get<VerifyResult>('/v1/audit-events/verify', { headSeq: o.headSeq, headHash: o.headHash });
      ctx.print(res, () => {
        if (res.ok) {
          out(`ok: ${res.count} events, head seq ${res.headSeq}, head hash ${res.headHash}`);
          note(`keep the head outside the vault; next time: vaultctl audit verify --head-seq ${res.headSeq} --head-hash ${res.headHash}`);
        } else {
          out(`NOT OK: ${clean(res.reason ?? 'the chain is broken')}${res.firstInvalidId ? `; first invalid event ${res.firstInvalidId}` : ''}`);
        }
      });
      if (!res.ok) rt.exitCode = EXIT.AUDIT_INVALID;
    });

  audit
    .command('list')
    .description('audit events, newest first')
    .option('--type <type>', 'e.g. checkout.requested')
    .option('--subject <id>', 'events about this subject')
    .option('--actor <id>', 'events by this actor')
    .option('--limit <n>', 'page size', intIn(1, 200), 50)
    .option('--cursor <cursor>', 'next page')
    .action(async (o: { type?: string; subject?: string; actor?: string; limit: number; cursor?: string }, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const page = await ctx.client().get<Page<AuditEvent>>('/v1/audit-events', {
        type: o.type,
        subjectId: o.subject,
        actorId: o.actor,
        limit: o.limit,
        cursor: o.cursor,
      });
      ctx.print(page, () => {
        table(
          ['AT', 'TYPE', 'OUTCOME', 'ACTOR', 'SUBJECT', 'DETAILS'],
          page.items.map((e) => [e.at, e.type, e.outcome, e.actorId, `${e.subjectType}:${e.subjectId ?? '-'}`, short(JSON.stringify(e.details ?? {}), 60)]),
        );
        morePages(page.nextCursor);
      });
    });
}

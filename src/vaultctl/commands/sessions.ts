import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { Command } from 'commander';
import { seg } from '../client';
import { Context } from '../context';
import { EXIT } from '../errors';
import { fields, morePages, note, out, table } from '../output';
import type { Runtime } from '../runtime';
import type { Page, RecordingVerifyView, SessionTerminationView, SessionView } from '../../views';
import { listOptions, ListOptions, pageQuery } from './common';

/** `12.3 KiB, complete` */
function recordingText(s: SessionView): string {
  const r = s.recording;
  if (!r) return 'none';
  const size = r.size >= 1024 * 1024 ? `${(r.size / 1024 / 1024).toFixed(1)} MiB` : r.size >= 1024 ? `${(r.size / 1024).toFixed(1)} KiB` : `${r.size} B`;
  return `${r.status}, ${size}${r.failure ? ` (${r.failure})` : ''}`;
}

/**
 * The SSH gateway's sessions and their recordings (README "Sessions and the SSH gateway"): list and show (operators and
 * vendors their own; auditors and admins all), download a recording (asciicast v2: `asciinema play` replays it), verify
 * it against the hash in the audit chain (auditors), end a live one (admins, MFA).
 */
export function registerSessions(program: Command, rt: Runtime): void {
  const sessions = program.command('sessions').description('SSH gateway sessions: list, show, download and verify recordings, terminate');

  listOptions(
    sessions
      .command('list')
      .description('gateway sessions, newest first (operators and vendors: their own)')
      .option('--checkout <checkoutId>', 'of this checkout')
      .option('--ephemeral <id>', 'of this one-time account')
      .option('--target <targetId>', 'on this target')
      .option('--user <userId>', 'of this user')
      .option('--live', 'only sessions still open')
      .option('--ended', 'only ended sessions'),
  ).action(async (o: ListOptions & { checkout?: string; ephemeral?: string; target?: string; user?: string; live?: boolean; ended?: boolean }, cmd: Command) => {
    const ctx = Context.of(cmd, rt.execArgs);
    const live = o.live ? 'true' : o.ended ? 'false' : undefined;
    const page = await ctx
      .client()
      .get<Page<SessionView>>('/v1/sessions', { ...pageQuery(o), checkoutId: o.checkout, ephemeralId: o.ephemeral, targetId: o.target, userId: o.user, live });
    ctx.print(page, () => {
      table(
        ['ID', 'ACCOUNT', 'USER', 'STARTED', 'ENDED', 'RECORDING'],
        page.items.map((s) => [s.id, s.account, s.userId, s.startedAt, s.endedAt ? `${s.endedAt} (${s.endReason})` : 'live', recordingText(s)]),
      );
      morePages(page.nextCursor);
    });
  });

  sessions
    .command('show')
    .description('one gateway session and its recording')
    .argument('<sessionId>')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const s = await ctx.client().get<SessionView>(`/v1/sessions/${seg(id)}`);
      ctx.print(s, () =>
        fields([
          ['id', s.id],
          ['user', s.userId],
          ['checkout', s.checkoutId],
          ['one-time account', s.ephemeralId],
          ['target', s.targetId],
          ['account', s.account],
          ['from', s.clientAddress],
          ['started', s.startedAt],
          ['ended', s.endedAt ? `${s.endedAt} (${s.endReason})` : s.endRequestedAt ? `terminate requested at ${s.endRequestedAt}` : 'live'],
          ['recording', recordingText(s)],
          ['sha256', s.recording?.sha256 ?? null],
          ['input recorded', s.recording ? (s.recording.recordInput ? 'yes' : 'no') : null],
        ]),
      );
    });

  sessions
    .command('recording')
    .description('auditors, admins: download the recording (asciicast v2; play it with `asciinema play <file>`); audited')
    .argument('<sessionId>')
    .option('-o, --output <file>', 'write it to this file (created 0600) instead of stdout')
    .action(async (id: string, o: { output?: string }, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const bytes = await ctx.client().download(`/v1/sessions/${seg(id)}/recording`);
      const sha256 = createHash('sha256').update(bytes).digest('hex');
      if (o.output) {
        writeFileSync(o.output, bytes, { mode: 0o600, flag: 'wx' });
        note(`recording of ${id}: ${bytes.length} bytes, sha256 ${sha256} → ${o.output}`);
      } else {
        process.stdout.write(bytes);
        note(`recording of ${id}: ${bytes.length} bytes, sha256 ${sha256}`);
      }
    });

  sessions
    .command('verify')
    .description("auditors: check the stored recording against the hash in its session's closing audit event (exit 13 when it does not match)")
    .argument('<sessionId>')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const v = await ctx.client().post<RecordingVerifyView>(`/v1/sessions/${seg(id)}/verify`);
      ctx.print(v, () => {
        fields([
          ['ok', v.ok ? 'yes' : 'NO'],
          ['computed sha256', v.computedSha256],
          ['stored sha256', v.storedSha256],
          ['audited sha256', v.auditedSha256],
          ['audit event', v.auditEventId],
        ]);
        for (const p of v.problems) out(`problem: ${p}`);
      });
      if (!v.ok) rt.exitCode = EXIT.AUDIT_INVALID;
    });

  sessions
    .command('terminate')
    .description('admins: end a live gateway session (step-up MFA); it closes within about a second')
    .argument('<sessionId>')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const code = await ctx.mfa();
      const res = await ctx.client().post<SessionTerminationView>(`/v1/sessions/${seg(id)}/terminate`, {}, code);
      ctx.print(res, () => out(`session ${res.id}: end requested at ${res.endRequestedAt}`));
    });
}

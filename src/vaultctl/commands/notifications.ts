import { Command, Option } from 'commander';
import { seg } from '../client';
import { Context } from '../context';
import { ApiError, clean, EXIT, usage } from '../errors';
import { fields, morePages, note, out, short, table } from '../output';
import { interactive, promptHidden, readLineFromStdin } from '../prompt';
import type { Runtime } from '../runtime';
import { allPages, commaList, intIn, isUuid, ListOptions, listOptions, Page, pageQuery, resolveUser } from './common';
import type { MeView, NotificationChannelView, NotificationDeliveryView, NotificationRouteView, NotificationTestView } from '../../views';

const KINDS = ['email', 'webhook', 'slack', 'teams'];
const STATUSES = ['pending', 'sent', 'failed', 'muted', 'no_address'];

/**
 * A channel secret (a webhook's signing secret, a Slack or Teams incoming-webhook URL): from the first line of stdin
 * or asked without echo, never an argument (a command line is visible to every user of the machine and kept in shell
 * history).
 */
async function readSecret(stdin: boolean | undefined, what: string): Promise<string> {
  if (stdin) return readLineFromStdin('--secret-stdin');
  if (!interactive()) throw usage(`give the ${what} on stdin with --secret-stdin (never as an argument), or run on a terminal to be asked`);
  const value = await promptHidden(`${what[0].toUpperCase()}${what.slice(1)}: `);
  if (!value) throw usage(`the ${what} is empty`);
  return value;
}

const secretName = (kind: string) => (kind === 'webhook' ? 'signing secret (at least 16 characters)' : `${kind} incoming-webhook URL`);

/** A channel id, or a channel name looked up in the list. */
async function resolveChannel(ctx: Context, ref: string): Promise<string> {
  if (isUuid(ref)) return ref;
  const channel = (await allPages<NotificationChannelView>(ctx.client(), '/v1/notification-channels')).find((c) => c.name === ref);
  if (!channel) throw new ApiError(404, 'NOT_FOUND', { message: `no notification channel named ${ref}` });
  return channel.id;
}

const where = (c: NotificationChannelView) => (c.kind === 'email' ? (c.config.to ?? []).join(',') : c.kind === 'webhook' ? (c.config.url ?? '') : '(URL kept secret)');

function showChannel(ctx: Context, c: NotificationChannelView): void {
  ctx.print(c, () =>
    fields([
      ['id', c.id],
      ['name', c.name],
      ['kind', c.kind],
      ['to', where(c)],
      ['secret', c.secretSet ? 'set (never shown)' : 'none'],
      ['enabled', c.enabled ? 'yes' : 'no'],
      ['updated', c.updatedAt],
    ]),
  );
}

function registerChannels(parent: Command, rt: Runtime): void {
  const channels = parent
    .command('channels')
    .description('where messages go: e-mail addresses, a signed webhook, Slack or Teams (admin; changes need your step-up code: --code)');

  listOptions(channels.command('list').description('list channels (admin, auditor)').addOption(new Option('--kind <kind>').choices(KINDS))).action(
    async (o: ListOptions & { kind?: string }, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const page = await ctx.client().get<Page<NotificationChannelView>>('/v1/notification-channels', { ...pageQuery(o), kind: o.kind });
      ctx.print(page, () => {
        table(['ID', 'NAME', 'KIND', 'ENABLED', 'SECRET', 'TO'], page.items.map((c) => [c.id, c.name, c.kind, c.enabled ? 'yes' : 'no', c.secretSet ? 'set' : '-', short(where(c), 60)]));
        morePages(page.nextCursor);
      });
    },
  );

  channels
    .command('add')
    .description('add a channel; a webhook signing secret or a Slack/Teams URL is read from stdin (--secret-stdin) or asked, never an argument')
    .requiredOption('--name <name>', 'the channel name (shown in the delivery log)')
    .addOption(new Option('--kind <kind>', 'email: --to; webhook: --webhook-url and a signing secret; slack, teams: their incoming-webhook URL as the secret').choices(KINDS).makeOptionMandatory())
    .option('--to <a,b>', 'email: the addresses (comma-separated)', commaList)
    .option('--webhook-url <url>', 'webhook: the URL to post to (https, or http to a loopback host)')
    .option('--secret-stdin', 'read the secret from the first line of stdin')
    .option('--disabled', 'add it disabled')
    .action(async (o: { name: string; kind: string; to?: string[]; webhookUrl?: string; secretStdin?: boolean; disabled?: boolean }, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const config = o.kind === 'email' ? { to: o.to ?? [] } : o.kind === 'webhook' ? { url: o.webhookUrl } : {};
      if (o.kind === 'email' && !o.to?.length) throw usage('an e-mail channel needs --to <addresses>');
      if (o.kind === 'webhook' && !o.webhookUrl) throw usage('a webhook channel needs --webhook-url <url>');
      if (o.kind !== 'email' && o.to) throw usage('--to is for e-mail channels');
      if (o.kind !== 'webhook' && o.webhookUrl) throw usage(`--webhook-url is for webhook channels${o.kind === 'email' ? '' : `: a ${o.kind} URL is a secret (--secret-stdin, or asked)`}`);
      if (o.kind === 'email' && o.secretStdin) throw usage('an e-mail channel has no secret');
      const body: Record<string, unknown> = { name: o.name, kind: o.kind, config, ...(o.disabled ? { enabled: false } : {}) };
      if (o.kind !== 'email') body.secret = await readSecret(o.secretStdin, secretName(o.kind));
      const c = await ctx.client().post<NotificationChannelView>('/v1/notification-channels', body, await ctx.mfa());
      ctx.print(c, () => out(`channel ${c.name} added: ${c.id} (${c.kind}${c.enabled ? '' : ', disabled'}); route events to it: vaultctl notifications routes add --channel ${c.name}`));
    });

  channels
    .command('update')
    .description("change a channel: name, addresses or URL, its secret (--new-secret: asked, or --secret-stdin), enabled")
    .argument('<channel>', 'channel id or name')
    .option('--name <name>', 'a new name')
    .option('--to <a,b>', 'email: the new addresses (replace the old ones)', commaList)
    .option('--webhook-url <url>', 'webhook: the new URL')
    .option('--new-secret', 'replace the secret: asked on the terminal')
    .option('--secret-stdin', 'replace the secret: the first line of stdin')
    .option('--enable', 'enable it')
    .option('--disable', 'pause it: new events are not routed to it; what was already queued for it waits and is sent once it is enabled again')
    .action(async (ref: string, o: { name?: string; to?: string[]; webhookUrl?: string; newSecret?: boolean; secretStdin?: boolean; enable?: boolean; disable?: boolean }, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      if (o.enable && o.disable) throw usage('--enable or --disable, not both');
      if (o.to && o.webhookUrl) throw usage('--to (e-mail) or --webhook-url (webhook), not both');
      const id = await resolveChannel(ctx, ref);
      const body: Record<string, unknown> = {};
      if (o.name) body.name = o.name;
      if (o.to) body.config = { to: o.to };
      if (o.webhookUrl) body.config = { url: o.webhookUrl };
      if (o.enable || o.disable) body.enabled = Boolean(o.enable);
      if (o.newSecret || o.secretStdin) {
        const current = await ctx.client().get<NotificationChannelView>(`/v1/notification-channels/${seg(id)}`);
        body.secret = await readSecret(o.secretStdin, secretName(current.kind));
      }
      if (Object.keys(body).length === 0) throw usage('nothing to change: give --name, --to, --webhook-url, --new-secret, --secret-stdin, --enable or --disable');
      const c = await ctx.client().request<NotificationChannelView>('PATCH', `/v1/notification-channels/${seg(id)}`, { body, mfaCode: await ctx.mfa() });
      showChannel(ctx, c);
    });

  channels
    .command('remove')
    .description('delete a channel and its routes (what it still had to send is failed; the log keeps it)')
    .argument('<channel>', 'channel id or name')
    .action(async (ref: string, _o: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const id = await resolveChannel(ctx, ref);
      await ctx.client().request('DELETE', `/v1/notification-channels/${seg(id)}`, { mfaCode: await ctx.mfa() });
      ctx.print({ deleted: id }, () => out(`channel ${ref} deleted`));
    });

  channels
    .command('test')
    .description(`send a test message to this channel alone; --wait: until it is sent or failed (exit ${EXIT.NOTIFICATION_FAILED} when it was not delivered)`)
    .argument('<channel>', 'channel id or name')
    .option('--wait [seconds]', 'wait for the outcome (default 30 s)', intIn(1, 3600))
    .action(async (ref: string, o: { wait?: number | true }, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const id = await resolveChannel(ctx, ref);
      const res = await ctx.client().post<NotificationTestView>(`/v1/notification-channels/${seg(id)}/test`, {}, await ctx.mfa());
      if (o.wait === undefined) {
        ctx.print(res, () => out(`test message queued: delivery ${res.deliveryId} (vaultctl notifications log --channel ${id} --type notification.test)`));
        return;
      }
      const end = Date.now() + (o.wait === true ? 30 : o.wait) * 1000;
      let delivery: NotificationDeliveryView | undefined;
      for (;;) {
        const page = await ctx.client().get<Page<NotificationDeliveryView>>('/v1/notifications', { channelId: id, eventType: 'notification.test', limit: 20 });
        delivery = page.items.find((d) => d.id === res.deliveryId);
        if ((delivery && delivery.status !== 'pending') || Date.now() > end) break;
        await new Promise((r) => setTimeout(r, 500));
      }
      const outcome = delivery ?? { id: res.deliveryId, status: 'pending', attempts: 0, lastError: null };
      ctx.print(outcome, () =>
        out(
          outcome.status === 'sent'
            ? `test message delivered to ${clean(ref)} (delivery ${outcome.id})`
            : `test message ${outcome.status === 'pending' ? 'not delivered yet' : outcome.status} (delivery ${outcome.id}, ${outcome.attempts} attempt(s))${outcome.lastError ? `: ${clean(outcome.lastError)}` : ''}`,
        ),
      );
      if (outcome.status !== 'sent') rt.exitCode = EXIT.NOTIFICATION_FAILED;
    });
}

function registerRoutes(parent: Command, rt: Runtime): void {
  const routes = parent.command('routes').description('which events go to which channel (admin; changes need your step-up code: --code)');

  listOptions(routes.command('list').description('list routes (admin, auditor)').option('--channel <channel>', 'only this channel (id or name)')).action(
    async (o: ListOptions & { channel?: string }, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const channelId = o.channel ? await resolveChannel(ctx, o.channel) : undefined;
      const page = await ctx.client().get<Page<NotificationRouteView>>('/v1/notification-routes', { ...pageQuery(o), channelId });
      ctx.print(page, () => {
        table(['ID', 'CHANNEL', 'EVENTS', 'TARGETS'], page.items.map((r) => [r.id, r.channelName, r.eventTypes.length ? r.eventTypes : 'all', r.targetIds ?? 'any']));
        morePages(page.nextCursor);
      });
    },
  );

  routes
    .command('add')
    .description('send these events (default: all) about these targets (default: any) to a channel')
    .requiredOption('--channel <channel>', 'channel id or name')
    .option('--events <a,b>', 'event types, e.g. approval.requested,alert.break_glass (default: every type)', commaList)
    .option('--targets <id,id>', 'only events about these targets (default: any)', commaList)
    .action(async (o: { channel: string; events?: string[]; targets?: string[] }, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const channelId = await resolveChannel(ctx, o.channel);
      const body = { channelId, ...(o.events ? { eventTypes: o.events } : {}), ...(o.targets ? { targetIds: o.targets } : {}) };
      const r = await ctx.client().post<NotificationRouteView>('/v1/notification-routes', body, await ctx.mfa());
      ctx.print(r, () => out(`route ${r.id}: ${r.eventTypes.length ? r.eventTypes.join(', ') : 'every event'}${r.targetIds ? ` about ${r.targetIds.length} target(s)` : ''} → ${r.channelName}`));
    });

  routes
    .command('remove')
    .argument('<routeId>')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      await ctx.client().request('DELETE', `/v1/notification-routes/${seg(id)}`, { mfaCode: await ctx.mfa() });
      ctx.print({ deleted: id }, () => out(`route ${id} deleted`));
    });
}

export function registerNotifications(program: Command, rt: Runtime): void {
  const notifications = program.command('notifications').description('messages the vault sends: channels, routes and the delivery log');
  registerChannels(notifications, rt);
  registerRoutes(notifications, rt);

  listOptions(
    notifications
      .command('log')
      .description('the delivery log, newest first (admin, auditor): what was sent to whom, attempts, errors (never a secret)')
      .addOption(new Option('--status <status>').choices(STATUSES))
      .option('--type <eventType>', 'e.g. approval.requested')
      .option('--channel <channel>', 'channel id or name')
      .option('--recipient <user>', 'user id (or, for admins, username)')
      .option('--since <iso8601>', 'created at or after, e.g. 2030-01-01T00:00:00Z'),
  ).action(async (o: ListOptions & { status?: string; type?: string; channel?: string; recipient?: string; since?: string }, cmd: Command) => {
    const ctx = Context.of(cmd, rt.execArgs);
    const page = await ctx.client().get<Page<NotificationDeliveryView>>('/v1/notifications', {
      ...pageQuery(o),
      status: o.status,
      eventType: o.type,
      channelId: o.channel ? await resolveChannel(ctx, o.channel) : undefined,
      recipientUserId: o.recipient ? await resolveUser(ctx, o.recipient) : undefined,
      since: o.since,
    });
    ctx.print(page, () => {
      table(
        ['CREATED', 'EVENT', 'STATUS', 'TRIES', 'CHANNEL', 'RECIPIENT', 'ERROR'],
        page.items.map((d) => [d.createdAt, d.eventType, d.status, d.attempts, d.channel.name ? `${d.channel.kind}:${d.channel.name}` : d.channel.kind, short(d.recipient, 40), short(d.lastError, 50)]),
      );
      morePages(page.nextCursor);
    });
  });
}

/** `vaultctl me …`: your own e-mail address and the optional notifications you mute (changes need your step-up code). */
export function registerMe(program: Command, rt: Runtime): void {
  const me = program.command('me').description('your own notification settings: e-mail address and muted kinds (changes need your step-up code: --code)');
  const show = (ctx: Context, m: MeView) =>
    ctx.print(m, () =>
      fields([
        ['user', m.username],
        ['email', m.email ?? '(none: you get no messages)'],
        ['muted', m.mutedNotifications.length ? m.mutedNotifications : '(none)'],
      ]),
    );
  const patch = async (ctx: Context, body: Record<string, unknown>) => show(ctx, await ctx.client().request<MeView>('PATCH', '/v1/me', { body, mfaCode: await ctx.mfa() }));

  me.command('show')
    .description('your e-mail address and muted kinds')
    .action(async (_o: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      show(ctx, await ctx.client().get<MeView>('/v1/me'));
    });

  me.command('set-email')
    .description('where your messages go (approval requests too, hence your step-up code)')
    .argument('<address>')
    .action(async (address: string, _o: unknown, cmd: Command) => patch(Context.of(cmd, rt.execArgs), { email: address }));

  me.command('mute')
    .description('stop these optional kinds (request.approved, request.denied, request.lapsed, request.revoked, checkout.expiring, ephemeral.expiring); the ones your role requires cannot be muted')
    .argument('<kinds...>')
    .action(async (kinds: string[], _o: unknown, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      const current = await ctx.client().get<MeView>('/v1/me');
      await patch(ctx, { mutedNotifications: [...new Set([...current.mutedNotifications, ...kinds.flatMap(commaList)])] });
    });

  me.command('unmute')
    .description('get these kinds again (--all: every muted kind)')
    .argument('[kinds...]')
    .option('--all', 'unmute every kind')
    .action(async (kinds: string[], o: { all?: boolean }, cmd: Command) => {
      const ctx = Context.of(cmd, rt.execArgs);
      if (!o.all && kinds.length === 0) throw usage('name the kinds to unmute, or --all');
      const current = await ctx.client().get<MeView>('/v1/me');
      const drop = new Set(kinds.flatMap(commaList));
      const missing = [...drop].filter((k) => !current.mutedNotifications.includes(k));
      if (missing.length) note(`not muted: ${missing.map(clean).join(', ')}`);
      await patch(ctx, { mutedNotifications: o.all ? [] : current.mutedNotifications.filter((k) => !drop.has(k)) });
    });
}

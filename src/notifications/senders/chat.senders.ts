import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '../../config/config';
import { EgressPolicy } from './egress';
import { FACT_LABELS, NOTIFICATION_TYPES, NotificationType } from '../events';
import { channelUrl, postJson } from './http-post';
import { DeliveryError, OutgoingDelivery, RenderedMessage, Sender, WebhookPayload } from './sender';

const title = (p: WebhookPayload) => NOTIFICATION_TYPES[p.type as NotificationType]?.title ?? p.type;

/** The payload's facts with their labels, in the order of the e-mail's table. */
export function labelledFacts(p: WebhookPayload): Array<{ label: string; value: string }> {
  return FACT_LABELS.filter(([k]) => p.facts[k] !== undefined && p.facts[k] !== '').map(([k, label]) => ({ label, value: String(p.facts[k]) }));
}

/** Slack's mrkdwn treats these three as control characters (`<!channel>`, `<url|text>`). */
const slackEscape = (s: string) => s.replace(/[&<>]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;' })[c] as string);

/**
 * Requester text in mrkdwn: escaped, and `verbatim` (Slack neither links URLs nor parses `@channel`, `@here` or
 * `#channel` in it).
 */
const slackText = (text: string) => ({ type: 'mrkdwn', text, verbatim: true });

/**
 * A Slack incoming-webhook message: `text` (notifications, clients without blocks; not mrkdwn) and Block Kit blocks.
 * Every value someone typed (summary, justification, names) is escaped verbatim mrkdwn.
 */
export function slackMessage(p: WebhookPayload): { text: string; mrkdwn: false; blocks: unknown[] } {
  const facts = labelledFacts(p);
  const blocks: unknown[] = [
    { type: 'header', text: { type: 'plain_text', text: title(p).slice(0, 150) } },
    { type: 'section', text: slackText(slackEscape(p.summary).slice(0, 3000)) },
  ];
  // a section holds at most 10 fields of at most 2000 characters
  if (facts.length) blocks.push({ type: 'section', fields: facts.slice(0, 10).map((f) => slackText(`*${slackEscape(f.label)}*\n${slackEscape(f.value)}`.slice(0, 2000))) });
  if (p.link) blocks.push({ type: 'actions', elements: [{ type: 'button', text: { type: 'plain_text', text: 'Open in the vault' }, url: p.link }] });
  blocks.push({ type: 'context', elements: [slackText(`${slackEscape(p.type)} · delivery ${p.id}`)] });
  return { text: slackEscape(`${title(p)}: ${p.summary}`), mrkdwn: false, blocks };
}

/** Teams renders markdown in TextBlocks and FactSet values: every character that can start markup is escaped. */
export const teamsEscape = (s: string) => s.replace(/[\\[\]()*_~#>\-+!|`<]/g, (c) => `\\${c}`);

/** A Microsoft Teams incoming-webhook (or Workflows) message: one Adaptive Card 1.4, every value markdown-escaped. */
export function teamsMessage(p: WebhookPayload): { type: 'message'; attachments: unknown[] } {
  const facts = labelledFacts(p);
  const body: unknown[] = [
    { type: 'TextBlock', text: teamsEscape(title(p)), weight: 'Bolder', size: 'Medium', wrap: true },
    { type: 'TextBlock', text: teamsEscape(p.summary), wrap: true },
  ];
  if (facts.length) body.push({ type: 'FactSet', facts: facts.map((f) => ({ title: teamsEscape(f.label), value: teamsEscape(f.value) })) });
  body.push({ type: 'TextBlock', text: teamsEscape(`${p.type} · delivery ${p.id}`), isSubtle: true, size: 'Small', wrap: true });
  const content: Record<string, unknown> = { $schema: 'http://adaptivecards.io/schemas/adaptive-card.json', type: 'AdaptiveCard', version: '1.4', body };
  if (p.link) content.actions = [{ type: 'Action.OpenUrl', title: 'Open in the vault', url: p.link }];
  return { type: 'message', attachments: [{ contentType: 'application/vnd.microsoft.card.adaptive', contentUrl: null, content }] };
}

/**
 * Slack and Teams incoming webhooks: the URL is the credential (it is the channel's encrypted secret, never its
 * config), so no error, log line or delivery-log entry names it. Same answers as the generic webhook
 * (WEBHOOK_HTTP_<status>, WEBHOOK_UNREACHABLE, TIMEOUT), with the delivery id as `Idempotency-Key`.
 */
class IncomingWebhookSender implements Sender {
  private readonly egress: EgressPolicy;

  constructor(
    readonly kind: 'slack' | 'teams',
    private readonly label: string,
    private readonly body: (p: WebhookPayload) => unknown,
    config: AppConfig,
  ) {
    this.egress = new EgressPolicy(config.notify.allowedHosts);
  }

  async send(d: OutgoingDelivery, m: RenderedMessage, signal: AbortSignal): Promise<void> {
    if (!d.channel.secret) throw new DeliveryError('CHANNEL_MISCONFIGURED', `the ${this.label} channel has no webhook URL`, false);
    const url = channelUrl(d.channel.secret, 'webhook URL');
    await postJson(url, JSON.stringify(this.body(m.payload)), { 'Idempotency-Key': d.id, 'X-Vault-Delivery': d.id }, signal, `${this.label} webhook`, this.egress);
  }
}

@Injectable()
export class SlackSender extends IncomingWebhookSender {
  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    super('slack', 'Slack', slackMessage, config);
  }
}

@Injectable()
export class TeamsSender extends IncomingWebhookSender {
  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    super('teams', 'Teams', teamsMessage, config);
  }
}

/**
 * How a message leaves the vault: one Sender per channel kind (e-mail over SMTP, a signed JSON webhook, Slack and
 * Microsoft Teams incoming webhooks). The deliverer renders the message once and hands it to the sender of the
 * delivery's channel kind; a sender throws DeliveryError (a stable code, a message without secrets, and whether a
 * retry may help) and nothing else.
 */
export const CHANNEL_KINDS = ['email', 'webhook', 'slack', 'teams'] as const;
export type ChannelKind = (typeof CHANNEL_KINDS)[number];

/** A channel's non-secret settings. e-mail: fixed addresses (people's e-mail needs no channel); webhook: its URL. */
export interface ChannelConfig {
  to?: string[];
  url?: string;
}

/** The JSON a webhook receives (and what Slack and Teams formats are made from). Never a password, code or token. */
export interface WebhookPayload {
  /** The delivery's id: the idempotency key (the same on every retry of this delivery). */
  id: string;
  eventId: string;
  type: string;
  occurredAt: string;
  subject: { type: string; id: string | null };
  summary: string;
  /** The item in the web portal (VAULT_PUBLIC_URL), when one is configured. */
  link: string | null;
  facts: Record<string, string | number>;
}

export interface RenderedMessage {
  subject: string;
  text: string;
  html: string;
  payload: WebhookPayload;
}

export interface OutgoingDelivery {
  /** The idempotency key: `Message-ID: <id@vault>`, `X-Vault-Delivery`, `Idempotency-Key`. */
  id: string;
  eventType: string;
  /** E-mail: the recipient's address. */
  to?: string;
  /** `id` null: a person's e-mail through the vault's SMTP server (VAULT_SMTP_*). */
  channel: { id: string | null; name: string; kind: ChannelKind; config: ChannelConfig; secret: string | null };
}

export interface Sender {
  readonly kind: ChannelKind;
  /** Resolves when the receiver accepted the message; honours `signal` (the deliverer's deadline). */
  send(d: OutgoingDelivery, m: RenderedMessage, signal: AbortSignal): Promise<void>;
}

/** A failed send: `code` is stable (`SMTP_REJECTED`, `WEBHOOK_HTTP_500`, `TIMEOUT`, …); the message holds no secret. */
export class DeliveryError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = 'DeliveryError';
  }
}

/** Nest token for the senders (one per kind). */
export const SENDERS = Symbol('SENDERS');

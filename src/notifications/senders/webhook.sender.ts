import { createHmac, timingSafeEqual } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '../../config/config';
import { EgressPolicy } from './egress';
import { channelUrl, postJson } from './http-post';
import { DeliveryError, OutgoingDelivery, RenderedMessage, Sender } from './sender';

/**
 * The signature of a webhook body: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`. The timestamp
 * is inside the MAC, so a receiver that checks it against its own clock refuses a replay outside its window, and
 * the raw body is, so any change to it is found.
 */
export function signVaultPayload(secret: string, rawBody: string | Buffer, timestamp: number): string {
  const mac = createHmac('sha256', secret).update(`${timestamp}.`).update(rawBody).digest('hex');
  return `t=${timestamp},v1=${mac}`;
}

/**
 * What a receiver does with `X-Vault-Signature` (README "Webhook signatures" shows this function): true when one of
 * the header's `v1` signatures is the HMAC of this raw body (the bytes as received, before any JSON parsing) with
 * the shared secret, and its timestamp is within `toleranceSeconds` of now. Compared in constant time.
 */
export function verifyVaultSignature(secret: string, header: string | undefined, rawBody: string | Buffer, toleranceSeconds = 300, nowSeconds = Date.now() / 1000): boolean {
  if (!secret || !header) return false;
  let t: number | undefined;
  const signatures: string[] = [];
  for (const part of header.split(',')) {
    const [key, value] = part.trim().split('=', 2);
    if (key === 't' && /^\d{1,12}$/.test(value ?? '')) t = Number(value);
    else if (key === 'v1' && /^[0-9a-f]{64}$/.test(value ?? '')) signatures.push(value);
  }
  if (t === undefined || signatures.length === 0 || Math.abs(nowSeconds - t) > toleranceSeconds) return false;
  const expected = Buffer.from(createHmac('sha256', secret).update(`${t}.`).update(rawBody).digest('hex'));
  return signatures.some((s) => timingSafeEqual(Buffer.from(s), expected));
}

/**
 * The generic webhook: the RenderedMessage's JSON payload, POSTed to the channel's URL and signed with the channel's
 * secret (refused without one), with the delivery id as `X-Vault-Delivery` and `Idempotency-Key` so a receiver can
 * drop the duplicates of a retried delivery.
 */
@Injectable()
export class WebhookSender implements Sender {
  readonly kind = 'webhook' as const;
  private readonly egress: EgressPolicy;

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    this.egress = new EgressPolicy(config.notify.allowedHosts);
  }

  async send(d: OutgoingDelivery, m: RenderedMessage, signal: AbortSignal): Promise<void> {
    if (!d.channel.secret) throw new DeliveryError('WEBHOOK_NO_SECRET', 'the webhook channel has no signing secret', false);
    const url = channelUrl(d.channel.config.url, 'url');
    const body = JSON.stringify(m.payload);
    // wall time, not the vault's Clock: the receiver compares it with its own clock
    const signature = signVaultPayload(d.channel.secret, body, Math.floor(Date.now() / 1000));
    await postJson(url, body, { 'X-Vault-Signature': signature, 'X-Vault-Delivery': d.id, 'Idempotency-Key': d.id }, signal, 'webhook', this.egress);
  }
}

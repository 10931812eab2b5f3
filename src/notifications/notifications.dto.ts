import { isIP } from 'node:net';
import { Type } from 'class-transformer';
import {
  ArrayMaxSize, ArrayMinSize, ArrayUnique, IsArray, IsBoolean, IsIn, IsObject, IsOptional, IsString, IsUUID, Matches, MaxLength, MinLength, ValidateBy, ValidateNested,
} from 'class-validator';
import { z } from 'zod';
import { apiView, timestamp, typedSchema, uuid } from '../common/api-responses';
import { PageQuery } from '../common/pagination';
import { IsTimestamp, Optional } from '../common/validation';
import { IsEmailAddress } from '../identity/users.dto';
import { NOTIFICATION_TYPES } from './events';
import type { DeliveryStatus } from './notification-store';
import { CHANNEL_KINDS, ChannelConfig, ChannelKind } from './senders/sender';

export const NOTIFICATION_TYPE_NAMES = Object.keys(NOTIFICATION_TYPES);
export const DELIVERY_STATUSES: DeliveryStatus[] = ['pending', 'sent', 'failed', 'muted', 'no_address'];
/** A channel's name: shown in the delivery log as the recipient, and in messages about it. */
const CHANNEL_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$/;
const NO_CONTROL = /^[^\u0000-\u001f\u007f-\u009f]*$/;
const MAX_URL = 2048;

const LOOPBACK_NAMES = new Set(['localhost', 'localhost.']);
function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (LOOPBACK_NAMES.has(bare)) return true;
  if (isIP(bare) === 4) return bare.startsWith('127.');
  if (isIP(bare) === 6) return bare === '::1' || bare === '0:0:0:0:0:0:0:1';
  return false;
}

/**
 * Where the vault may post a message: an absolute https URL (or http to a loopback host: a receiver on the vault's own
 * machine), with a host, without a user or password in it (a URL is shown by the API; secrets go in `secret`) and
 * without a fragment. Null when it is not one, else why not.
 */
export function urlProblem(v: unknown): string | null {
  if (typeof v !== 'string' || v.length > MAX_URL || !/^[\x21-\x7e]+$/.test(v)) return `must be an https URL of at most ${MAX_URL} printable ASCII characters`;
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    return 'must be an absolute https URL';
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopback(url.hostname))) return 'must be an https URL (http only to a loopback host)';
  if (!url.hostname) return 'must name a host';
  if (url.username || url.password) return 'must not hold a user name or password';
  if (url.hash) return 'must not have a #fragment';
  return null;
}
const IsDeliveryUrl = () =>
  ValidateBy({ name: 'isDeliveryUrl', validator: { validate: (v: unknown) => urlProblem(v) === null, defaultMessage: (a) => `${a?.property ?? 'url'} must be an https URL (http only to a loopback host), without user, password or fragment` } });

/**
 * What the channel's kind asks for: email `config.to` (and no secret); webhook `config.url` and a signing secret;
 * slack and teams no config, their incoming-webhook URL as the secret. `secretGiven`: a secret is sent now (or kept).
 * Null when the channel fits, else why not.
 */
export function channelProblem(kind: ChannelKind, config: ChannelConfig, secret: { given: string | undefined; stored: boolean }): string | null {
  const fields = Object.keys(config).filter((k) => (config as Record<string, unknown>)[k] !== undefined);
  const only = (allowed: string[]) => fields.filter((f) => !allowed.includes(f));
  if (kind === 'email') {
    if (only(['to']).length) return `config: an e-mail channel takes only \`to\`, not ${only(['to']).join(', ')}`;
    if (!config.to?.length) return 'config.to: an e-mail channel needs at least one address';
    if (secret.given !== undefined || secret.stored) return 'secret: an e-mail channel has no secret (it sends through the vault\'s SMTP server)';
    return null;
  }
  if (kind === 'webhook') {
    if (only(['url']).length) return `config: a webhook channel takes only \`url\`, not ${only(['url']).join(', ')}`;
    if (!config.url) return 'config.url: a webhook channel needs the URL to post to';
    if (secret.given === undefined && !secret.stored) return 'secret: a webhook channel needs a signing secret (at least 16 characters)';
    if (secret.given !== undefined && secret.given.length < 16) return 'secret: a webhook signing secret has at least 16 characters';
    return null;
  }
  if (fields.length) return `config: a ${kind} channel takes no config (its incoming-webhook URL is the secret)`;
  if (secret.given === undefined && !secret.stored) return `secret: a ${kind} channel needs its incoming-webhook URL as secret`;
  // the problem says what is wrong without the value (it is a secret)
  if (secret.given !== undefined && urlProblem(secret.given) !== null) return `secret: a ${kind} incoming-webhook URL ${urlProblem(secret.given)}`;
  return null;
}

/** A channel kind's settings that are not secret. */
export class ChannelConfigDto implements ChannelConfig {
  @Optional() @IsArray() @ArrayMinSize(1) @ArrayMaxSize(20) @ArrayUnique() @IsString({ each: true }) @IsEmailAddress(true) to?: string[];
  /**
   * The generic webhook's URL: shown (and audited) without its query (`https://host/path?…`). A credential belongs in
   * the signing secret, not in the URL; a host that is an internal address is refused unless VAULT_NOTIFY_ALLOWED_HOSTS
   * lists it.
   */
  @Optional() @IsString() @IsDeliveryUrl() url?: string;
}

/** The kind's rules for a new channel; a bad kind, config or secret is reported by its own validators. */
function kindProblem(object: unknown): string | null {
  const o = (object ?? {}) as Partial<Record<'kind' | 'config' | 'secret', unknown>>;
  if (!CHANNEL_KINDS.includes(o.kind as ChannelKind) || typeof o.config !== 'object' || o.config === null || Array.isArray(o.config)) return null;
  return channelProblem(o.kind as ChannelKind, o.config as ChannelConfig, { given: typeof o.secret === 'string' ? o.secret : undefined, stored: false });
}

/** The kind's rules, checked with the rest of the body (before the step-up code is used). */
const FitsKind = () =>
  ValidateBy({
    name: 'fitsChannelKind',
    validator: {
      validate: (_v: unknown, a) => kindProblem(a?.object) === null,
      defaultMessage: (a) => kindProblem(a?.object) ?? 'config must fit the kind',
    },
  });

export class CreateChannelDto {
  @IsString() @Matches(CHANNEL_NAME_PATTERN, { message: 'name must be 1-100 letters, digits, spaces, dots, dashes or underscores' }) name: string;
  @IsIn(CHANNEL_KINDS) kind: ChannelKind;
  /** email: `{ to: [addresses] }`; webhook: `{ url }`; slack, teams: `{}`. */
  @IsObject() @ValidateNested() @Type(() => ChannelConfigDto) @FitsKind() config: ChannelConfigDto;
  /** Write-only: a webhook's signing secret, or the Slack/Teams incoming-webhook URL. Stored encrypted, never returned. */
  @Optional() @IsString() @MinLength(1) @MaxLength(MAX_URL) @Matches(NO_CONTROL, { message: 'secret must not contain control characters' }) secret?: string;
  @Optional() @IsBoolean() enabled?: boolean;
}

/** Each field given replaces the stored one (`config` as a whole); `secret` replaces the stored secret. */
export class UpdateChannelDto {
  @Optional() @IsString() @Matches(CHANNEL_NAME_PATTERN, { message: 'name must be 1-100 letters, digits, spaces, dots, dashes or underscores' }) name?: string;
  @Optional() @IsObject() @ValidateNested() @Type(() => ChannelConfigDto) config?: ChannelConfigDto;
  @Optional() @IsString() @MinLength(1) @MaxLength(MAX_URL) @Matches(NO_CONTROL, { message: 'secret must not contain control characters' }) secret?: string;
  @Optional() @IsBoolean() enabled?: boolean;
}

export class ChannelListQuery extends PageQuery {
  @IsOptional() @IsIn(CHANNEL_KINDS) kind?: ChannelKind;
}

export class CreateRouteDto {
  @IsUUID() channelId: string;
  /** The event types the channel receives; empty or absent: every type. */
  @Optional() @IsArray() @ArrayMaxSize(NOTIFICATION_TYPE_NAMES.length) @ArrayUnique() @IsIn(NOTIFICATION_TYPE_NAMES, { each: true }) eventTypes?: string[];
  /** Only events about these targets; absent: any (events about no target included). */
  @Optional() @IsArray() @ArrayMinSize(1) @ArrayMaxSize(100) @ArrayUnique() @IsUUID(undefined, { each: true }) targetIds?: string[];
}

export class RouteListQuery extends PageQuery {
  @IsOptional() @IsUUID() channelId?: string;
}

export class DeliveryListQuery extends PageQuery {
  @IsOptional() @IsIn(DELIVERY_STATUSES) status?: DeliveryStatus;
  @IsOptional() @IsIn(NOTIFICATION_TYPE_NAMES) eventType?: string;
  @IsOptional() @IsUUID() channelId?: string;
  @IsOptional() @IsUUID() recipientUserId?: string;
  /** Deliveries created at or after this time. */
  @IsOptional() @IsTimestamp() since?: string;
}

const DELIVERY_STATUS = z.enum(DELIVERY_STATUSES);
const CHANNEL_KIND = z.enum(CHANNEL_KINDS);

/** A channel kind's settings that are not secret (src/notifications/senders/sender.ts; the compiler keeps this schema equal to it). */
const ChannelConfigView = apiView(
  'ChannelConfig',
  typedSchema<ChannelConfig>()(
    z.object({
      to: z.array(z.string()).optional().describe('email: the addresses.'),
      url: z.string().optional().describe('webhook: the URL, shown without its query.'),
    }),
  ),
);

export const NotificationChannelView = apiView(
  'NotificationChannelView',
  z.object({
    id: uuid(),
    name: z.string(),
    kind: CHANNEL_KIND,
    config: ChannelConfigView,
    secretSet: z.boolean().describe('A secret (webhook signing secret, Slack/Teams URL) is stored; it is never shown.'),
    enabled: z.boolean(),
    createdAt: timestamp(),
    updatedAt: timestamp(),
  }),
  'A channel as the API shows it: never its secret, only whether one is stored.',
);
export type NotificationChannelView = z.output<typeof NotificationChannelView>;

export const NotificationRouteView = apiView(
  'NotificationRouteView',
  z.object({
    id: uuid(),
    channelId: uuid(),
    channelName: z.string(),
    eventTypes: z.array(z.string()).describe('Empty: every event type.'),
    targetIds: z.array(uuid()).nullable().describe('Null: events about any target (and about none).'),
    createdAt: timestamp(),
  }),
);
export type NotificationRouteView = z.output<typeof NotificationRouteView>;

export const NotificationDeliveryView = apiView(
  'NotificationDeliveryView',
  z.object({
    id: uuid(),
    eventId: uuid(),
    eventType: z.string(),
    subject: z.object({ type: z.string(), id: z.string().nullable() }),
    summary: z.string(),
    channel: z
      .object({ id: uuid().nullable(), kind: CHANNEL_KIND, name: z.string().nullable() })
      .describe("The channel (id and name null: a person's e-mail through the vault's SMTP server, or a channel deleted since)."),
    recipientUserId: uuid().nullable(),
    recipient: z.string().describe("An e-mail address, a username (no address), or the channel's name."),
    status: DELIVERY_STATUS,
    attempts: z.number().int(),
    lastError: z.string().nullable().describe('A stable code and a short reason, never a secret.'),
    nextAttemptAt: timestamp().nullable(),
    createdAt: timestamp(),
    sentAt: timestamp().nullable(),
  }),
  'One delivery of the log: to a person (`recipientUserId`, an address) or to a channel (its name). Never a secret.',
);
export type NotificationDeliveryView = z.output<typeof NotificationDeliveryView>;

export const NotificationTestView = apiView(
  'NotificationTestView',
  z.object({ eventId: uuid(), deliveryId: uuid(), status: DELIVERY_STATUS }),
  '`POST /v1/notification-channels/:id/test`: the delivery to watch in the log.',
);
export type NotificationTestView = z.output<typeof NotificationTestView>;

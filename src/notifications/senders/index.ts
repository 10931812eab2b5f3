import type { Provider } from '@nestjs/common';
import { SlackSender, TeamsSender } from './chat.senders';
import { EmailSender } from './email.sender';
import { Sender, SENDERS } from './sender';
import { WebhookSender } from './webhook.sender';

const SENDER_CLASSES = [EmailSender, WebhookSender, SlackSender, TeamsSender];

/** One sender per channel kind, each a Nest provider, gathered under SENDERS for the deliverer. */
export const SENDER_PROVIDERS: Provider[] = [...SENDER_CLASSES, { provide: SENDERS, useFactory: (...senders: Sender[]) => senders, inject: SENDER_CLASSES }];

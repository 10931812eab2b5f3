import { BrowserSessions1765000000000 } from './1765000000000-BrowserSessions';
import { Checkouts1763856000000 } from './1763856000000-Checkouts';
import { Ephemeral1763870400000 } from './1763870400000-Ephemeral';
import { Foundation1763798400000 } from './1763798400000-Foundation';
import { Identity1763812800000 } from './1763812800000-Identity';
import { Rotation1763827200000 } from './1763827200000-Rotation';
import { Notifications1764000000000 } from './1764000000000-Notifications';
import { NotificationRecipientIndex1765000000001 } from './1765000000001-NotificationRecipientIndex';
import { SshGateway1766000000000 } from './1766000000000-SshGateway';
import { SessionRecordings1766000000001 } from './1766000000001-SessionRecordings';
import { Oidc1767000000001 } from './1767000000001-Oidc';
import { WebAuthn1767000000000 } from './1767000000000-WebAuthn';

/** Every migration, oldest first. A test checks that each file in this folder is listed. */
export const MIGRATIONS = [Foundation1763798400000, Identity1763812800000, Rotation1763827200000, Checkouts1763856000000, Ephemeral1763870400000, Notifications1764000000000, BrowserSessions1765000000000, NotificationRecipientIndex1765000000001, SshGateway1766000000000, SessionRecordings1766000000001, WebAuthn1767000000000, Oidc1767000000001];

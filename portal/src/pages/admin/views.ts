/**
 * The answer shapes the admin and auditor pages read, written from the server's views until the generated schema
 * (portal/src/api/schema.d.ts) lands; then each becomes an alias of `components['schemas'][…]`, so a changed API fails
 * the portal's type-check here.
 */
import type { Role } from '../../api/views';

export type TargetType = 'ssh' | 'postgres' | 'mysql';

export interface TargetOptions {
  hostKeySha256?: string;
  sudo?: boolean;
  database?: string;
  accountHost?: string;
  tls?: boolean;
  tlsCa?: string;
  tlsCertSha256?: string;
}

export interface AdminTargetView {
  id: string;
  name: string;
  type: TargetType;
  host: string;
  port: number;
  admin: { username: string; credential: Array<'password' | 'privateKey'> };
  options: TargetOptions;
  createdAt: string;
  updatedAt: string;
}

export interface Capability {
  code: string;
  ok: boolean;
  message: string;
}

export interface VerifyView {
  ok: boolean;
  serverVersion?: string;
  hostKeySha256?: string;
  privilege?: 'root' | 'sudo-nopasswd' | 'sudo-password';
  capabilities: Capability[];
  missing: string[];
}

export interface RotationView {
  id: string;
  reason: string;
  status: string;
  errorCode: string | null;
  requestedBy: string | null;
  createdAt: string;
  finishedAt: string | null;
}

export interface UserView {
  id: string;
  username: string;
  roles: Role[];
  disabled: boolean;
  mfaEnrolled: boolean;
  email: string | null;
  mutedNotifications: string[];
  createdAt: string;
}

export interface ServiceTokenView {
  id: string;
  name: string;
  roles: Role[];
  expiresAt: string | null;
  revokedAt: string | null;
  createdAt: string;
}

export interface AuditEventView {
  id: string;
  at: string;
  type: string;
  actorId: string | null;
  subjectType: string;
  subjectId: string | null;
  outcome: string;
  details: Record<string, unknown>;
  sealed: boolean;
}

export type AuditVerifyView = { ok: true; count: number; headSeq: string; headHash: string } | { ok: false; firstInvalidId: string | null; reason: string };

export type ChannelKind = 'email' | 'webhook' | 'slack' | 'teams';

export interface ChannelView {
  id: string;
  name: string;
  kind: ChannelKind;
  config: { to?: string[]; url?: string };
  secretSet: boolean;
  enabled: boolean;
  createdAt: string;
  updatedAt: string;
}

export interface RouteView {
  id: string;
  channelId: string;
  channelName: string;
  eventTypes: string[];
  targetIds: string[] | null;
  createdAt: string;
}

export type DeliveryStatus = 'pending' | 'sent' | 'failed' | 'muted' | 'no_address';

export interface DeliveryView {
  id: string;
  eventId: string;
  eventType: string;
  subject: { type: string; id: string | null };
  summary: string;
  channel: { id: string | null; kind: ChannelKind; name: string | null };
  recipientUserId: string | null;
  recipient: string;
  status: DeliveryStatus;
  attempts: number;
  lastError: string | null;
  nextAttemptAt: string | null;
  createdAt: string;
  sentAt: string | null;
}

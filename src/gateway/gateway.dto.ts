import { IsString, Matches, MaxLength } from 'class-validator';
import { z } from 'zod';
import { apiView, timestamp, uuid } from '../common/api-responses';
import { Optional } from '../common/validation';

export class ConnectDto {
  /**
   * An OpenSSH public key line (`ssh-ed25519 AAAA… comment`; ecdsa-sha2-nistp256/384/521, or ssh-rsa of 2048 bits or
   * more): the ticket becomes the SSH user name and only this key may use it. Without it the ticket is the password.
   */
  @Optional() @IsString() @MaxLength(16384) @Matches(/^\S+ [A-Za-z0-9+/]+={0,2}( [^\r\n]*)?\s*$/, { message: 'publicKey must be an OpenSSH public key line' })
  publicKey?: string;
}

export const GatewayEndpointView = apiView(
  'GatewayEndpoint',
  z.object({
    host: z.string(),
    port: z.number().int(),
    hostKeySha256: z.string().describe("The gateway host key's OpenSSH SHA256 fingerprint, without the `SHA256:` prefix."),
    knownHostsLine: z.string().describe('`[host]:port ssh-ed25519 AAAA…`, for a known_hosts file.'),
  }),
  'Where the SSH gateway listens and how a client recognises it.',
);
export type GatewayEndpointView = z.output<typeof GatewayEndpointView>;

export const GatewayInfoView = apiView(
  'GatewayInfo',
  z.object({
    enabled: z.boolean(),
    host: z.string().nullable(),
    port: z.number().int().nullable(),
    hostKeySha256: z.string().nullable(),
    knownHostsLine: z.string().nullable(),
  }),
  'The SSH gateway (all null when it is disabled).',
);
export type GatewayInfoView = z.output<typeof GatewayInfoView>;

export const GatewayTicketView = apiView(
  'GatewayTicket',
  z.object({
    ticket: z.string().describe('`vgt_…`: single use, valid for 60 s, shown once.'),
    sshUser: z.string().describe('publickey: the ticket itself; password: the account (cosmetic) and the ticket is the password.'),
    mode: z.enum(['publickey', 'password']),
    expiresAt: timestamp(),
    gateway: GatewayEndpointView,
    sshCommand: z.string().describe('An OpenSSH command line that connects (add -i for the key; the host key is in gateway.knownHostsLine).'),
  }),
  'A connection ticket for the SSH gateway.',
);
export type GatewayTicketView = z.output<typeof GatewayTicketView>;

export const SessionTerminationView = apiView(
  'GatewaySessionTermination',
  z.object({ id: uuid(), endRequestedAt: timestamp().describe('The instance holding the session closes it within about a second.') }),
);
export type SessionTerminationView = z.output<typeof SessionTerminationView>;

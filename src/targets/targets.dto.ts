import { X509Certificate } from 'node:crypto';
import { Type } from 'class-transformer';
import {
  IsBoolean, IsIn, IsInt, IsObject, IsOptional, IsString, Matches, Max, MaxLength, Min, MinLength, ValidateBy, ValidateNested,
} from 'class-validator';
import { z } from 'zod';
import { apiView, timestamp, typedSchema, uuid } from '../common/api-responses';
import { PageQuery } from '../common/pagination';
import { Optional } from '../common/validation';
import type { TargetType } from '../crypto/password-generator';
import type { Capability, TargetOptions } from '../connectors/connector.interface';
import { ADMIN_NAME_PATTERN, DATABASE_NAME_PATTERN, HOST_KEY_SHA256_PATTERN, isValidHost } from '../connectors/names';
import { TargetEntity } from './target.entity';

/** A DNS name or an IPv4/IPv6 literal. */
const IsHost = () =>
  ValidateBy({ name: 'isHost', validator: { validate: (v: unknown) => typeof v === 'string' && isValidHost(v), defaultMessage: () => 'host must be a DNS name or an IP address' } });

export const TARGET_TYPES: TargetType[] = ['ssh', 'postgres', 'mysql'];
/** A target's name in the vault. */
const TARGET_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
const NO_CONTROL = /^[^\u0000-\u001f\u007f]*$/;
const CERT_SHA256_PATTERN = /^(?:[0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}$|^[0-9A-Fa-f]{64}$/;

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----/g;

/**
 * One or more PEM certificates and nothing else (whitespace between them): a private key or any other block pasted in
 * is refused, since `tlsCa` is public (shown by the API and in audit events). Normalised to the certificates alone.
 */
export function pemCertificates(v: unknown): string | null {
  if (typeof v !== 'string') return null;
  const pems = v.match(PEM_CERTIFICATE) ?? [];
  if (pems.length === 0 || pems.length > 50 || v.replace(PEM_CERTIFICATE, '').trim() !== '') return null;
  try {
    return pems.map((pem) => new X509Certificate(pem).toString()).join('');
  } catch {
    return null;
  }
}
const IsPemCertificates = () =>
  ValidateBy({
    name: 'isPemCertificates',
    validator: { validate: (v: unknown) => pemCertificates(v) !== null, defaultMessage: () => 'tlsCa must be one or more PEM certificates and nothing else' },
  });

/** Node's fingerprint256 form: upper-case hex pairs joined by ':'. */
export function normalizeCertSha256(v: string): string {
  const hex = v.replace(/:/g, '').toUpperCase();
  return hex.match(/../g)!.join(':');
}

export class TargetAdminDto {
  @IsString() @Matches(ADMIN_NAME_PATTERN, { message: 'username has characters that are not allowed' }) username: string;
  @Optional() @IsString() @MinLength(1) @MaxLength(1024) @Matches(NO_CONTROL, { message: 'password must not contain control characters' }) password?: string;
  @Optional() @IsString() @MinLength(1) @MaxLength(16384) privateKey?: string;
  @Optional() @IsString() @MinLength(1) @MaxLength(1024) passphrase?: string;
}

export class TargetOptionsDto implements TargetOptions {
  @Optional() @IsString() @Matches(HOST_KEY_SHA256_PATTERN, { message: 'hostKeySha256 must be an OpenSSH SHA256 fingerprint' }) hostKeySha256?: string;
  @Optional() @IsBoolean() sudo?: boolean;
  @Optional() @IsString() @Matches(DATABASE_NAME_PATTERN, { message: 'database has characters that are not allowed' }) database?: string;
  @Optional() @IsString() @Matches(/^[A-Za-z0-9.%_:-]{1,255}$/, { message: 'accountHost must be a MySQL host pattern such as % or 10.0.0.%' }) accountHost?: string;
  @Optional() @IsBoolean() tls?: boolean;
  @Optional() @IsString() @MaxLength(65536) @IsPemCertificates() tlsCa?: string;
  @Optional() @IsString() @Matches(CERT_SHA256_PATTERN, { message: 'tlsCertSha256 must be the SHA-256 of the certificate: 64 hex digits, optionally in pairs joined by :' }) tlsCertSha256?: string;
}

/** `POST /v1/targets/:id/verify`: the SSH host key the admin confirmed out of band, to pin now. */
export class VerifyTargetDto {
  @Optional() @IsString() @Matches(HOST_KEY_SHA256_PATTERN, { message: 'hostKeySha256 must be an OpenSSH SHA256 fingerprint' }) hostKeySha256?: string;
}

/** One capability the vault needs on a target (src/connectors/connector.interface.ts; the compiler keeps this schema equal to it). */
const CapabilityView = apiView(
  'Capability',
  typedSchema<Capability>()(
    z.object({
      code: z.string().describe('e.g. `SSH_PRIVILEGE`, `PG_CREATEROLE`, `MYSQL_CREATE_USER`.'),
      ok: z.boolean(),
      message: z.string().describe('What was found and, when missing, what to grant. Never a secret.'),
    }),
  ),
);

/** What verify found: whether the admin can do everything the vault needs, and what is missing. */
export const VerifyView = apiView(
  'VerifyView',
  z.object({
    ok: z.boolean().describe('True when the admin logged in and has every capability.'),
    serverVersion: z.string().optional(),
    hostKeySha256: z.string().optional().describe('SSH: the host key presented (and now pinned).'),
    privilege: z.enum(['root', 'sudo-nopasswd', 'sudo-password']).optional(),
    capabilities: z.array(CapabilityView),
    missing: z.array(z.string()).describe('The codes of the capabilities that are missing (empty when ok).'),
  }),
);
export type VerifyView = z.output<typeof VerifyView>;

export class CreateTargetDto {
  @IsString() @Matches(TARGET_NAME_PATTERN, { message: 'name must be 1-100 letters, digits, dots, dashes or underscores' }) name: string;
  @IsIn(TARGET_TYPES) type: TargetType;
  @IsString() @IsHost() host: string;
  @IsInt() @Min(1) @Max(65535) port: number;
  @IsObject() @ValidateNested() @Type(() => TargetAdminDto) admin: TargetAdminDto;
  @Optional() @IsObject() @ValidateNested() @Type(() => TargetOptionsDto) options?: TargetOptionsDto;
}

export class UpdateTargetDto {
  @Optional() @IsString() @Matches(TARGET_NAME_PATTERN, { message: 'name must be 1-100 letters, digits, dots, dashes or underscores' }) name?: string;
  @Optional() @IsString() @IsHost() host?: string;
  @Optional() @IsInt() @Min(1) @Max(65535) port?: number;
  @Optional() @IsObject() @ValidateNested() @Type(() => TargetAdminDto) admin?: TargetAdminDto;
  @Optional() @IsObject() @ValidateNested() @Type(() => TargetOptionsDto) options?: TargetOptionsDto;
}

export class TargetListQuery extends PageQuery {
  @IsOptional() @IsIn(TARGET_TYPES) type?: TargetType;
}

/** A target's connection options (src/connectors/connector.interface.ts; the compiler keeps this schema equal to it). */
const TargetOptionsView = apiView(
  'TargetOptions',
  typedSchema<TargetOptions>()(
    z.object({
      hostKeySha256: z.string().optional().describe('SSH: the pinned host key (SHA-256, base64 without padding).'),
      sudo: z.boolean().optional(),
      database: z.string().optional().describe('PostgreSQL/MySQL: the database the admin connects to.'),
      accountHost: z.string().optional().describe("MySQL: the host part of the account names the vault manages (default '%')."),
      tls: z.boolean().optional().describe('PostgreSQL: require TLS with a verified server certificate.'),
      tlsCa: z.string().optional().describe('PEM CA bundle the server certificate must chain to.'),
      tlsCertSha256: z.string().optional().describe('Pin: SHA-256 of the server certificate, upper-case hex pairs joined by `:`.'),
    }),
  ),
);

export const TargetView = apiView(
  'TargetView',
  z.object({
    id: uuid(),
    name: z.string(),
    type: z.enum(['ssh', 'postgres', 'mysql']),
    host: z.string(),
    port: z.number().int(),
    admin: z.object({
      username: z.string(),
      credential: z.array(z.enum(['password', 'privateKey'])).describe('Which kinds of admin credential are stored (never the values).'),
    }),
    options: TargetOptionsView,
    createdAt: timestamp(),
    updatedAt: timestamp(),
  }),
  'A managed system; never contains the admin secret.',
);
export type TargetView = z.output<typeof TargetView>;

export function mapTarget(t: TargetEntity): TargetView {
  return {
    id: t.id,
    name: t.name,
    type: t.type,
    host: t.host,
    port: t.port,
    admin: { username: t.adminUsername, credential: t.adminCredentials },
    options: t.options,
    createdAt: t.createdAt.toISOString(),
    updatedAt: t.updatedAt.toISOString(),
  };
}

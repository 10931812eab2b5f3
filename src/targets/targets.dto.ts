import { X509Certificate } from 'node:crypto';
import { Type } from 'class-transformer';
import {
  IsBoolean, IsIn, IsInt, IsObject, IsOptional, IsString, Matches, Max, MaxLength, Min, MinLength, ValidateBy, ValidateNested,
} from 'class-validator';
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

/** What verify found: whether the admin can do everything the vault needs, and what is missing. */
export interface VerifyView {
  /** True when the admin logged in and has every capability. */
  ok: boolean;
  serverVersion?: string;
  hostKeySha256?: string;
  privilege?: 'root' | 'sudo-nopasswd' | 'sudo-password';
  capabilities: Capability[];
  /** The codes of the capabilities that are missing (empty when ok). */
  missing: string[];
}

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

/** Never contains the admin secret: only which kinds of credential are stored. */
export interface TargetView {
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

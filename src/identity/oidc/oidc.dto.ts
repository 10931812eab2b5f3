import { ArrayMaxSize, ArrayMinSize, ArrayUnique, IsArray, IsBoolean, IsObject, IsString, Matches, MaxLength, MinLength, ValidateBy } from 'class-validator';
import { z } from 'zod';
import { apiView, timestamp } from '../../common/api-responses';
import { Role, ROLES } from '../../common/actor';
import { Optional } from '../../common/validation';
import { OidcProviderEntity } from './oidc-provider.entity';

/** A provider's name: in its sign-in URLs and bound to each of its users. */
export const PROVIDER_NAME = /^[a-z0-9-]{1,40}$/;

/** An issuer the vault talks to: https, or http only to a loopback host (a test IdP, or one on this machine). */
export function issuerIsSafe(v: unknown): boolean {
  if (typeof v !== 'string' || v.length > 500 || /[\s?#]/.test(v)) return false;
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    return false;
  }
  if (url.username || url.password) return false;
  if (url.protocol === 'https:') return true;
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return url.protocol === 'http:' && (host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host));
}

const MAX_GROUPS = 200;

/** `{"group": ["operator", …]}`: at most 200 groups (1-256 characters each), each mapped to distinct known roles. */
function isGroupRoles(v: unknown): v is Record<string, Role[]> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const entries = Object.entries(v);
  return (
    entries.length <= MAX_GROUPS &&
    entries.every(
      ([group, roles]) =>
        group.length >= 1 &&
        group.length <= 256 &&
        Array.isArray(roles) &&
        roles.length >= 1 &&
        roles.length <= ROLES.length &&
        new Set(roles).size === roles.length &&
        roles.every((r) => (ROLES as readonly unknown[]).includes(r)),
    )
  );
}

/** `PUT /v1/oidc-providers/:name`: the whole provider (clientSecret may be left out on a replace: the stored one stays). */
export class PutOidcProviderDto {
  @IsString() @MinLength(1) @MaxLength(100) displayName: string;
  @ValidateBy({ name: 'isIssuer', validator: { validate: issuerIsSafe, defaultMessage: () => 'issuer must be an https URL (http only for a loopback host) without query, fragment or credentials' } })
  issuer: string;
  @IsString() @MinLength(1) @MaxLength(500) @Matches(/^[\x21-\x7e]+$/, { message: 'clientId must be printable ASCII without spaces' }) clientId: string;
  /** Write-only: stored encrypted, never answered (views say `clientSecretSet`). Left out on a replace: the stored one stays. */
  @Optional() @IsString() @MinLength(1) @MaxLength(2000) clientSecret?: string;
  @Optional() @IsArray() @ArrayMinSize(1) @ArrayMaxSize(20) @ArrayUnique() @Matches(/^[\x21-\x7e]{1,100}$/, { each: true, message: 'scopes must be scope tokens (printable ASCII, no spaces)' })
  @ValidateBy({ name: 'hasOpenid', validator: { validate: (v: unknown) => Array.isArray(v) && v.includes('openid'), defaultMessage: () => 'scopes must include openid' } })
  scopes?: string[];
  @Optional() @IsString() @Matches(/^[A-Za-z0-9_.:/-]{1,100}$/, { message: 'groupsClaim must be a claim name (letters, digits, _ . : / -)' }) groupsClaim?: string;
  @IsObject()
  @ValidateBy({ name: 'isGroupRoles', validator: { validate: isGroupRoles, defaultMessage: () => `groupRoles must map at most ${MAX_GROUPS} group names to lists of distinct roles (${ROLES.join(', ')})` } })
  groupRoles: Record<string, Role[]>;
  @Optional() @IsBoolean() enabled?: boolean;
}

/** `POST /v1/auth/oidc/device/token`. */
export class DeviceTokenDto {
  @IsString() @MinLength(1) @MaxLength(200) deviceCode: string;
}

export const OidcProviderView = apiView(
  'OidcProviderView',
  z.object({
    name: z.string(),
    displayName: z.string(),
    issuer: z.string(),
    clientId: z.string(),
    clientSecretSet: z.boolean().describe('A client secret is stored (it is write-only: never answered).'),
    scopes: z.array(z.string()),
    groupsClaim: z.string(),
    groupRoles: z.record(z.string(), z.array(z.enum(ROLES))).describe('IdP group → the vault roles its members get (the union over their groups; no mapped group: no access).'),
    enabled: z.boolean(),
    redirectUri: z.string().describe('The redirect URI to register at the identity provider for this vault.'),
    createdAt: timestamp(),
    updatedAt: timestamp(),
  }),
  'An OpenID Connect identity provider; never its client secret.',
);
export type OidcProviderView = z.output<typeof OidcProviderView>;
export const OidcProviderList = z.array(OidcProviderView);

export const OidcSignInOption = apiView('OidcSignInOption', z.object({ name: z.string(), displayName: z.string() }), 'An enabled provider: a button on the sign-in page.');
export type OidcSignInOption = z.output<typeof OidcSignInOption>;
export const OidcSignInOptions = z.array(OidcSignInOption);

export const DeviceAuthorizationView = apiView(
  'DeviceAuthorizationView',
  z.object({
    deviceCode: z.string().describe("The vault's handle of this sign-in: send it to POST /v1/auth/oidc/device/token (the IdP's device code never leaves the vault)."),
    userCode: z.string().describe('What the user types at the identity provider.'),
    verificationUri: z.string(),
    verificationUriComplete: z.string().nullable(),
    interval: z.number().int().describe('Seconds between polls.'),
    expiresIn: z.number().int().describe('Seconds until this sign-in lapses.'),
  }),
);
export type DeviceAuthorizationView = z.output<typeof DeviceAuthorizationView>;

export function mapProvider(p: OidcProviderEntity, redirectUri: string): OidcProviderView {
  return {
    name: p.name,
    displayName: p.displayName,
    issuer: p.issuer,
    clientId: p.clientId,
    clientSecretSet: p.clientSecret !== null,
    scopes: p.scopes,
    groupsClaim: p.groupsClaim,
    groupRoles: p.groupRoles,
    enabled: p.enabled,
    redirectUri,
    createdAt: p.createdAt.toISOString(),
    updatedAt: p.updatedAt.toISOString(),
  };
}

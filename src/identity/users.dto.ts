import { ArrayMaxSize, ArrayMinSize, ArrayUnique, IsArray, IsBoolean, IsIn, isEmail, IsString, Matches, MaxLength, MinLength, ValidateBy, ValidateIf } from 'class-validator';
import { z } from 'zod';
import { apiView, timestamp, uuid } from '../common/api-responses';
import { PageQuery } from '../common/pagination';
import { IsTimestamp, Optional } from '../common/validation';
import { Role, ROLES } from '../common/actor';
import { ServiceTokenEntity } from './service-token.entity';
import { UserEntity } from './user.entity';

export const USERNAME_PATTERN = /^[a-z0-9][a-z0-9._@-]{1,63}$/;

/**
 * An e-mail address the vault may send to: `local@domain.tld` in printable ASCII, at most 254 characters, no display
 * name, quotes, spaces or angle brackets (it goes into an SMTP envelope and a header as is).
 */
export function isEmailAddress(v: unknown): v is string {
  return typeof v === 'string' && v.length <= 254 && /^[\x21-\x7e]+$/.test(v) && /^[^\s"<>(),;:\\[\]@]+@[^\s"<>(),;:\\[\]@]+$/.test(v) && isEmail(v, { allow_display_name: false, allow_ip_domain: false, require_tld: true, allow_utf8_local_part: false });
}
export const IsEmailAddress = (each = false) =>
  ValidateBy({ name: 'isEmailAddress', validator: { validate: isEmailAddress, defaultMessage: (a) => `${a?.property ?? 'value'} must be an e-mail address (name@example.com)` } }, { each });

/** A notification kind as a user names it to mute it (`request.approved`); which ones may be muted is checked against the notifications module. */
export const NOTIFICATION_KIND_PATTERN = /^[a-z_]{1,40}\.[a-z_]{1,40}$/;

export class CreateUserDto {
  @IsString() @Matches(USERNAME_PATTERN, { message: 'username must be 2-64 lowercase letters, digits, dots, dashes, underscores or @' }) username: string;
  @IsString() @MinLength(12) @MaxLength(1024) password: string;
  @ArrayMinSize(1) @ArrayMaxSize(ROLES.length) @ArrayUnique() @IsIn(ROLES, { each: true }) roles: Role[];
}

export class UpdateUserDto {
  @Optional() @ArrayMinSize(1) @ArrayMaxSize(ROLES.length) @ArrayUnique() @IsIn(ROLES, { each: true }) roles?: Role[];
  @Optional() @IsBoolean() disabled?: boolean;
  /** false: the user may not sign in with their password (single sign-on only); the bootstrap admin (break glass) always may. */
  @Optional() @IsBoolean() passwordLogin?: boolean;
  /** Where the user's notifications go; `null` removes it (they are then recorded as `no_address`). */
  @ValidateIf((_o: object, v: unknown) => v !== null && v !== undefined) @IsString() @IsEmailAddress() email?: string | null;
}

/** `PATCH /v1/me`: the caller's own e-mail address and the optional notifications they mute (the whole list). */
export class UpdateMeDto {
  @Optional() @IsString() @IsEmailAddress() email?: string;
  @Optional() @IsArray() @ArrayMaxSize(50) @ArrayUnique() @IsString({ each: true }) @Matches(NOTIFICATION_KIND_PATTERN, { each: true, message: 'mutedNotifications must be notification kinds such as request.approved' }) mutedNotifications?: string[];
}

export class UserListQuery extends PageQuery {}

/** Service tokens cannot answer a TOTP challenge, so they may hold only the roles that never need one. */
export const SERVICE_TOKEN_ROLES: Role[] = ['scheduler', 'auditor'];

export class CreateServiceTokenDto {
  @IsString() @Matches(/^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$/, { message: 'name must be 1-100 letters, digits, spaces, dots, dashes or underscores' }) name: string;
  @ArrayMinSize(1) @ArrayMaxSize(SERVICE_TOKEN_ROLES.length) @ArrayUnique() @IsIn(SERVICE_TOKEN_ROLES, { each: true, message: 'service tokens may hold only the scheduler and auditor roles' }) roles: Role[];
  @Optional() @IsTimestamp() expiresAt?: string;
}

export const UserView = apiView(
  'UserView',
  z.object({
    id: uuid(),
    username: z.string(),
    roles: z.array(z.enum(ROLES)),
    disabled: z.boolean(),
    mfaEnrolled: z.boolean(),
    email: z.string().nullable().describe('Where notifications for this user go (null: none are sent, the delivery log says `no_address`).'),
    mutedNotifications: z.array(z.string()).describe('The optional notification kinds the user muted.'),
    passwordLogin: z.boolean().describe('The user may sign in with a password (false: single sign-on only; VAULT_PASSWORD_LOGIN=disabled turns it off for everyone but the break-glass admin).'),
    breakGlass: z.boolean().describe('The bootstrap admin: may always sign in with a password; when password sign-in is off, each such sign-in is audited `auth.break_glass` and alerted.'),
    oidcProvider: z.string().nullable().describe('The OpenID Connect provider this user signs in with (null: a local user).'),
    createdAt: timestamp(),
  }),
);
export type UserView = z.output<typeof UserView>;

export function mapUser(u: UserEntity): UserView {
  return {
    id: u.id,
    username: u.username,
    roles: u.roles,
    disabled: u.disabled,
    mfaEnrolled: u.mfaSecret !== null,
    email: u.email,
    mutedNotifications: u.mutedNotifications,
    passwordLogin: u.passwordLogin,
    breakGlass: u.breakGlass,
    oidcProvider: u.oidcProvider,
    createdAt: u.createdAt.toISOString(),
  };
}

export const ServiceTokenView = apiView(
  'ServiceTokenView',
  z.object({ id: uuid(), name: z.string(), roles: z.array(z.enum(ROLES)), expiresAt: timestamp().nullable(), revokedAt: timestamp().nullable(), createdAt: timestamp() }),
  'A service token; never the token itself.',
);
export type ServiceTokenView = z.output<typeof ServiceTokenView>;

/** `POST /v1/service-tokens`: the token, shown this once. */
export const ServiceTokenCreated = apiView('ServiceTokenCreated', ServiceTokenView.extend({ token: z.string().describe('Shown once; the vault keeps only its hash.') }));

export function mapServiceToken(t: ServiceTokenEntity): ServiceTokenView {
  return {
    id: t.id,
    name: t.name,
    roles: t.roles,
    expiresAt: t.expiresAt?.toISOString() ?? null,
    revokedAt: t.revokedAt?.toISOString() ?? null,
    createdAt: t.createdAt.toISOString(),
  };
}

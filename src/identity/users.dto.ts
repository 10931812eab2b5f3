import { ArrayMaxSize, ArrayMinSize, ArrayUnique, IsBoolean, IsIn, IsString, Matches, MaxLength, MinLength } from 'class-validator';
import { PageQuery } from '../common/pagination';
import { IsTimestamp, Optional } from '../common/validation';
import { Role, ROLES } from '../common/actor';
import { ServiceTokenEntity } from './service-token.entity';
import { UserEntity } from './user.entity';

export const USERNAME_PATTERN = /^[a-z0-9][a-z0-9._@-]{1,63}$/;

export class CreateUserDto {
  @IsString() @Matches(USERNAME_PATTERN, { message: 'username must be 2-64 lowercase letters, digits, dots, dashes, underscores or @' }) username: string;
  @IsString() @MinLength(12) @MaxLength(1024) password: string;
  @ArrayMinSize(1) @ArrayMaxSize(ROLES.length) @ArrayUnique() @IsIn(ROLES, { each: true }) roles: Role[];
}

export class UpdateUserDto {
  @Optional() @ArrayMinSize(1) @ArrayMaxSize(ROLES.length) @ArrayUnique() @IsIn(ROLES, { each: true }) roles?: Role[];
  @Optional() @IsBoolean() disabled?: boolean;
}

export class UserListQuery extends PageQuery {}

/** Service tokens cannot answer a TOTP challenge, so they may hold only the roles that never need one. */
export const SERVICE_TOKEN_ROLES: Role[] = ['scheduler', 'auditor'];

export class CreateServiceTokenDto {
  @IsString() @Matches(/^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$/, { message: 'name must be 1-100 letters, digits, spaces, dots, dashes or underscores' }) name: string;
  @ArrayMinSize(1) @ArrayMaxSize(SERVICE_TOKEN_ROLES.length) @ArrayUnique() @IsIn(SERVICE_TOKEN_ROLES, { each: true, message: 'service tokens may hold only the scheduler and auditor roles' }) roles: Role[];
  @Optional() @IsTimestamp() expiresAt?: string;
}

export interface UserView {
  id: string;
  username: string;
  roles: Role[];
  disabled: boolean;
  mfaEnrolled: boolean;
  createdAt: string;
}

export function mapUser(u: UserEntity): UserView {
  return { id: u.id, username: u.username, roles: u.roles, disabled: u.disabled, mfaEnrolled: u.mfaSecret !== null, createdAt: u.createdAt.toISOString() };
}

export interface ServiceTokenView {
  id: string;
  name: string;
  roles: Role[];
  expiresAt: string | null;
  revokedAt: string | null;
  createdAt: string;
}

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

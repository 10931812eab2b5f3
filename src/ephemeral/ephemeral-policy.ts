import { Type } from 'class-transformer';
import { ArrayMaxSize, ArrayMinSize, ArrayUnique, IsArray, IsBoolean, IsInt, IsObject, IsString, Matches, Max, Min, ValidateNested } from 'class-validator';
import { DomainException, Errors } from '../common/errors';
import { Optional } from '../common/validation';
import type { AccessInspection, EphemeralAccess } from '../connectors/connector.interface';
import type { TargetType } from '../crypto/password-generator';
import {
  DATABASE_NAME_PATTERN, GROUP_OR_ROLE_PATTERN, MYSQL_GRANT_TARGET_PATTERN, MYSQL_PRIVILEGE_PATTERN, MYSQL_SYSTEM_SCHEMAS, SSH_FORBIDDEN_GROUPS,
} from '../connectors/names';

const WEEK = 7 * 24 * 3600;

/** A MySQL grant: privileges on `db.table` (either part `*`). */
export class GrantDto {
  @IsArray() @ArrayMinSize(1) @ArrayMaxSize(20) @ArrayUnique() @IsString({ each: true }) @Matches(MYSQL_PRIVILEGE_PATTERN, { each: true, message: 'privileges has one that is not allowed' })
  privileges: string[];
  @IsString() @Matches(MYSQL_GRANT_TARGET_PATTERN, { message: 'on must be db.table (either may be *)' }) on: string;
}

/** What a target lets one-time accounts have at most, and who must agree. Set by an admin per target. */
export interface EphemeralPolicy {
  approvalsRequired: number;
  maxTtlSeconds: number;
  /** SSH: supplementary groups that may be given. */
  allowedGroups: string[];
  /** PostgreSQL: databases CONNECT may be granted on, roles that may be granted. */
  allowedDatabases: string[];
  allowedRoles: string[];
  /** MySQL: grants that may be given (a request's grant must be covered by one with the same `on`). */
  allowedGrants: Array<{ privileges: string[]; on: string }>;
  /** The claim answers no password: SSH through the gateway only. */
  brokeredOnly: boolean;
  /** Gateway sessions may open `direct-tcpip` channels (ssh -L). */
  allowPortForwarding: boolean;
  /** Gateway recordings also keep what the user typed. */
  recordInput: boolean;
}

/** Until an admin says otherwise: one approval, at most eight hours, login only. */
export const DEFAULT_EPHEMERAL_POLICY: EphemeralPolicy = {
  approvalsRequired: 1,
  maxTtlSeconds: 8 * 3600,
  allowedGroups: [],
  allowedDatabases: [],
  allowedRoles: [],
  allowedGrants: [],
  brokeredOnly: false,
  allowPortForwarding: false,
  recordInput: false,
};

export class EphemeralPolicyDto {
  @IsInt() @Min(0) @Max(10) approvalsRequired: number;
  @IsInt() @Min(60) @Max(WEEK) maxTtlSeconds: number;
  @Optional() @IsArray() @ArrayMaxSize(50) @ArrayUnique() @Matches(GROUP_OR_ROLE_PATTERN, { each: true, message: 'allowedGroups has a name that is not allowed' }) allowedGroups?: string[];
  @Optional() @IsArray() @ArrayMaxSize(50) @ArrayUnique() @Matches(DATABASE_NAME_PATTERN, { each: true, message: 'allowedDatabases has a name that is not allowed' }) allowedDatabases?: string[];
  @Optional() @IsArray() @ArrayMaxSize(50) @ArrayUnique() @Matches(GROUP_OR_ROLE_PATTERN, { each: true, message: 'allowedRoles has a name that is not allowed' }) allowedRoles?: string[];
  @Optional() @IsArray() @ArrayMaxSize(50) @IsObject({ each: true }) @ValidateNested({ each: true }) @Type(() => GrantDto) allowedGrants?: GrantDto[];
  @Optional() @IsBoolean() brokeredOnly?: boolean;
  @Optional() @IsBoolean() allowPortForwarding?: boolean;
  @Optional() @IsBoolean() recordInput?: boolean;
}

export class EphemeralAccessDto {
  @Optional() @IsArray() @ArrayMaxSize(20) @ArrayUnique() @Matches(GROUP_OR_ROLE_PATTERN, { each: true, message: 'groups has a name that is not allowed' }) groups?: string[];
  @Optional() @IsString() @Matches(DATABASE_NAME_PATTERN, { message: 'database has characters that are not allowed' }) database?: string;
  @Optional() @IsArray() @ArrayMaxSize(20) @ArrayUnique() @Matches(GROUP_OR_ROLE_PATTERN, { each: true, message: 'grantRoles has a name that is not allowed' }) grantRoles?: string[];
  @Optional() @IsArray() @ArrayMaxSize(20) @IsObject({ each: true }) @ValidateNested({ each: true }) @Type(() => GrantDto) grants?: GrantDto[];
}

/**
 * What no policy may hand a one-time account whatever the target says, because it would let the vendor make access that
 * outlives the account (new users, server files, root-equivalent groups, global or system-schema grants). Refused at
 * PUT with 400 POLICY_NOT_ALLOWED before the target's own catalog is asked (EphemeralService.setPolicy, the connectors'
 * inspectAccess) about the rest: whether each group, role, database and table exists and is harmless.
 */
export function staticRefusals(p: Pick<EphemeralPolicy, 'allowedGroups' | 'allowedRoles' | 'allowedGrants'>): string[] {
  return [
    ...p.allowedGroups.filter((g) => (SSH_FORBIDDEN_GROUPS as readonly string[]).includes(g)).map((g) => `group ${g}: root-equivalent or reads what it must not`),
    ...p.allowedRoles.filter((r) => r === 'postgres' || r.toLowerCase().startsWith('pg_')).map((r) => `role ${r}: a predefined or bootstrap role`),
    ...p.allowedGrants.flatMap((g) => {
      const db = g.on.split('.')[0];
      if (db === '*') return [`${g.privileges.join(', ')} on ${g.on}: a global grant`];
      if ((MYSQL_SYSTEM_SCHEMAS as readonly string[]).includes(db.toLowerCase())) return [`${g.privileges.join(', ')} on ${g.on}: a system schema`];
      return [];
    }),
  ];
}

export const policyNotAllowed = (refused: string[]) =>
  new DomainException('POLICY_NOT_ALLOWED', `the policy may not allow: ${refused.slice(0, 10).join('; ')}`, { refused: refused.slice(0, 50) });

export function policyFrom(dto: EphemeralPolicyDto): EphemeralPolicy {
  const policy: EphemeralPolicy = {
    approvalsRequired: dto.approvalsRequired,
    maxTtlSeconds: dto.maxTtlSeconds,
    allowedGroups: dto.allowedGroups ?? [],
    allowedDatabases: dto.allowedDatabases ?? [],
    allowedRoles: dto.allowedRoles ?? [],
    allowedGrants: (dto.allowedGrants ?? []).map((g) => ({ privileges: g.privileges.map((p) => p.toUpperCase()), on: g.on })),
    brokeredOnly: dto.brokeredOnly ?? false,
    allowPortForwarding: dto.allowPortForwarding ?? false,
    recordInput: dto.recordInput ?? false,
  };
  const refused = staticRefusals(policy);
  if (refused.length) throw policyNotAllowed(refused);
  return policy;
}

/** What a policy (everything it allows on a target of this type) or a request's access hands out, for the target's catalog check. */
export function inspectionOf(type: TargetType, what: { groups?: string[]; databases?: string[]; roles?: string[]; grants?: EphemeralAccess['grants'] }): AccessInspection | null {
  const inspection: AccessInspection =
    type === 'ssh' ? { groups: what.groups ?? [] } : type === 'postgres' ? { roles: what.roles ?? [], databases: what.databases ?? [] } : { grants: what.grants ?? [] };
  return Object.values(inspection).some((v) => v.length > 0) ? inspection : null;
}

const FIELDS_FOR: Record<TargetType, Array<keyof EphemeralAccess>> = { ssh: ['groups'], postgres: ['database', 'grantRoles'], mysql: ['grants'] };

/**
 * The access a request asks for, checked against the target type (400 for fields of another type) and the target's
 * policy (403 ACCESS_NOT_ALLOWED naming what is not allowed). Returns the normalised access that will be stored.
 */
export function checkAccess(type: TargetType, policy: EphemeralPolicy, access: EphemeralAccessDto | undefined): EphemeralAccess {
  const out: EphemeralAccess = {};
  for (const [field, value] of Object.entries(access ?? {})) {
    if (value === undefined) continue;
    if (!FIELDS_FOR[type].includes(field as keyof EphemeralAccess)) throw Errors.validation(`access.${field}: not for ${type} targets`);
  }
  const refused: string[] = [];
  if (access?.groups?.length) {
    refused.push(...access.groups.filter((g) => !policy.allowedGroups.includes(g)).map((g) => `group ${g}`));
    out.groups = access.groups;
  }
  if (access?.database !== undefined) {
    if (!policy.allowedDatabases.includes(access.database)) refused.push(`database ${access.database}`);
    out.database = access.database;
  }
  if (access?.grantRoles?.length) {
    refused.push(...access.grantRoles.filter((r) => !policy.allowedRoles.includes(r)).map((r) => `role ${r}`));
    out.grantRoles = access.grantRoles;
  }
  if (access?.grants?.length) {
    out.grants = access.grants.map((g) => ({ privileges: g.privileges.map((p) => p.toUpperCase()), on: g.on }));
    for (const g of out.grants) {
      const covered = policy.allowedGrants.some((a) => a.on === g.on && g.privileges.every((p) => a.privileges.includes(p)));
      if (!covered) refused.push(`${g.privileges.join(', ')} on ${g.on}`);
    }
  }
  if (refused.length) {
    throw new DomainException('ACCESS_NOT_ALLOWED', `the target's ephemeral policy does not allow: ${refused.slice(0, 10).join('; ')}`);
  }
  return out;
}

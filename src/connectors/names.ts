import { isIP } from 'node:net';
import type { TargetType } from '../crypto/password-generator';

/**
 * Strict patterns for names that will reach a shell or SQL on a target (INVARIANT 13). Anything else is
 * refused before it is stored; connectors still quote what passes.
 */
export const ACCOUNT_NAME_PATTERNS: Record<TargetType, RegExp> = {
  ssh: /^[a-z_][a-z0-9_-]{0,31}$/,
  postgres: /^[A-Za-z_][A-Za-z0-9_]{0,62}$/,
  mysql: /^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/,
};

/** DNS name (IP literals are checked with net.isIP: see isValidHost). */
const DNS_NAME_PATTERN = /^(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export function isValidHost(host: string): boolean {
  return isIP(host) !== 0 || (DNS_NAME_PATTERN.test(host) && !/^[0-9.]+$/.test(host));
}
export const ADMIN_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_.@-]{0,63}$/;
export const DATABASE_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_-]{0,62}$/;
export const HOST_KEY_SHA256_PATTERN = /^(SHA256:)?[A-Za-z0-9+/]{43}=?$/;

export function isValidAccountName(type: TargetType, name: string): boolean {
  return ACCOUNT_NAME_PATTERNS[type].test(name);
}

/** SSH supplementary groups and PostgreSQL roles a one-time account may be given. */
export const GROUP_OR_ROLE_PATTERN = /^[A-Za-z_][A-Za-z0-9_-]{0,62}$/;
/**
 * MySQL privileges a one-time account may be granted (an allow-list, INVARIANT 20): work on data and tables of named
 * databases. Never ALL or GRANT OPTION, nothing that makes objects running with their definer's rights after the
 * account is gone (CREATE ROUTINE, ALTER ROUTINE, EVENT, TRIGGER, CREATE VIEW), nothing that administers the server, and
 * not EXECUTE: a routine runs with its definer's rights (often root's), and one that creates accounts would outlive it.
 */
export const MYSQL_ALLOWED_PRIVILEGES = [
  'SELECT', 'INSERT', 'UPDATE', 'DELETE', 'CREATE', 'DROP', 'INDEX', 'ALTER', 'SHOW VIEW', 'REFERENCES', 'LOCK TABLES', 'CREATE TEMPORARY TABLES',
] as const;
export const MYSQL_PRIVILEGE_PATTERN = new RegExp(`^(${MYSQL_ALLOWED_PRIVILEGES.join('|')})$`, 'i');
/** Schemas no one-time account is granted anything on. */
export const MYSQL_SYSTEM_SCHEMAS = ['mysql', 'sys', 'performance_schema', 'information_schema'] as const;
/** SSH groups never given to a one-time account, whatever their gid (root-equivalent or reading secrets/logs). */
export const SSH_FORBIDDEN_GROUPS = ['root', 'sudo', 'wheel', 'admin', 'adm', 'docker', 'lxd', 'libvirt', 'kvm', 'disk', 'shadow', 'staff', 'systemd-journal', 'video', 'tty'] as const;
/** `db.table`, either part `*`. */
export const MYSQL_GRANT_TARGET_PATTERN = /^(\*|[A-Za-z0-9_$]{1,64})\.(\*|[A-Za-z0-9_$]{1,64})$/;

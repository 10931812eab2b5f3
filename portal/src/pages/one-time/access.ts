import type { EphemeralAccess } from '../../api/views';

/** A one-time account's access in words: `login only`, `groups: a, b`, `database app; roles: r`, `SELECT on app.*`. */
export function accessSummary(a: EphemeralAccess): string {
  const parts = [
    a.groups?.length ? `groups: ${a.groups.join(', ')}` : null,
    a.database ? `database ${a.database}` : null,
    a.grantRoles?.length ? `roles: ${a.grantRoles.join(', ')}` : null,
    ...(a.grants ?? []).map((g) => `${g.privileges.join(', ')} on ${g.on}`),
  ].filter(Boolean);
  return parts.length ? parts.join('; ') : 'login only';
}

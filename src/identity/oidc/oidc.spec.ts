import { groupsOf, rolesOf } from './oidc-accounts';
import { safeReturnTo } from './oidc-sign-in.service';
import { issuerIsSafe } from './oidc.dto';
import { OidcRecheckService } from './oidc-recheck.service';

describe('OIDC decisions (pure)', () => {
  const provider = { groupsClaim: 'groups', groupRoles: { ops: ['operator' as const], leads: ['approver' as const, 'operator' as const], audit: ['auditor' as const] } };

  it('maps groups to the union of their roles, in the vault role order; unknown groups and non-strings give nothing', () => {
    expect(rolesOf(provider, { groups: ['leads', 'ops', 'marketing'] })).toEqual(['operator', 'approver']);
    expect(rolesOf(provider, { groups: 'audit' })).toEqual(['auditor']);
    expect(rolesOf(provider, { groups: [] })).toEqual([]);
    expect(rolesOf(provider, {})).toEqual([]);
    expect(rolesOf(provider, { groups: [{ name: 'ops' }, 7, null] })).toEqual([]);
    // a group named like an Object.prototype member is no mapping
    expect(rolesOf(provider, { groups: ['constructor', '__proto__', 'toString'] })).toEqual([]);
  });

  it('reads a nested groups claim by its dotted path, a flat claim with dots by its name', () => {
    expect(groupsOf({ realm_access: { roles: ['ops'] } }, 'realm_access.roles')).toEqual(['ops']);
    expect(groupsOf({ 'https://example.com/groups': ['a'] }, 'https://example.com/groups')).toEqual(['a']);
    expect(groupsOf({ realm_access: null }, 'realm_access.roles')).toEqual([]);
    expect(groupsOf({ a: { b: 'x' } }, 'a.b.c')).toEqual([]);
  });

  it('accepts only https issuers, or http to a loopback host, without credentials, query or fragment', () => {
    for (const ok of ['https://sso.example.com/realms/corp', 'https://login.microsoftonline.com/t/v2.0', 'http://127.0.0.1:8080', 'http://localhost:9000/x', 'http://[::1]:1']) expect({ ok, safe: issuerIsSafe(ok) }).toEqual({ ok, safe: true });
    for (const bad of ['http://sso.example.com', 'ftp://x', 'https://u:p@sso.example.com', 'https://sso.example.com?x=1', 'https://sso.example.com#a', 'not a url', 'https://a b', 'http://127.0.0.1.example.com', 7, undefined, `https://x.com/${'a'.repeat(600)}`]) {
      expect({ bad, safe: issuerIsSafe(bad) }).toEqual({ bad, safe: false });
    }
  });

  it('returns only to a portal path', () => {
    expect(safeReturnTo('/portal/accounts/1?tab=x#y')).toBe('/portal/accounts/1?tab=x#y');
    for (const bad of ['//evil.example/portal/', '/portal/../admin', '/\\evil', '/portal\\x', 'https://evil.example/portal/', '/portalx', '', '/portal/\n', 42, null]) expect({ bad, to: safeReturnTo(bad) }).toEqual({ bad, to: '/portal/' });
  });

  it('the scheduled re-check runs with VAULT_OIDC_RECHECK_SECONDS as its period, and not at all when it is 0', async () => {
    const service = (seconds: number) => {
      const svc = new OidcRecheckService({} as never, {} as never, {} as never, {} as never, {} as never, { signIn: { oidcRecheckSeconds: seconds } } as never);
      const calls: number[] = [];
      svc.recheckDue = async (every: number) => {
        calls.push(every);
        return 0;
      };
      return { svc, calls };
    };
    const off = service(0);
    await off.svc.sweep();
    expect(off.calls).toEqual([]);
    const on = service(300);
    await on.svc.sweep();
    expect(on.calls).toEqual([300]);
  });
});

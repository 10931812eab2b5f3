import type { Response } from 'supertest';
import type { TestIdp } from './oidc-idp';
import { actingAs } from './http';
import type { TestVault } from './vault';

/** The public URL the OIDC tests give the vault (loopback http: plain cookie names) and the redirect URI it makes of it. */
export const OIDC_PUBLIC_URL = 'http://localhost:18443';
export const OIDC_REDIRECT_URI = `${OIDC_PUBLIC_URL}/v1/auth/oidc/callback`;
/**
 * The vault's environment in these tests: that public URL, room for the many sign-ins a suite starts from one address,
 * and no background re-check sweep (a test runs it when it means to: OidcRecheckService.recheckDue).
 */
export const OIDC_VAULT_ENV = { VAULT_PUBLIC_URL: OIDC_PUBLIC_URL, VAULT_OIDC_STARTS_PER_MINUTE: '1000', VAULT_OIDC_RECHECK_SECONDS: '0' };

/** `name=value` of the cookie a response sets, or undefined. */
export function cookieFrom(res: Response, name: string): string | undefined {
  const lines = ([] as string[]).concat((res.headers['set-cookie'] as unknown as string[] | string | undefined) ?? []);
  for (const line of lines) {
    const m = new RegExp(`^(${name})=([^;]*)`).exec(line);
    if (m && m[2]) return `${m[1]}=${m[2]}`;
  }
  return undefined;
}

/** Creates (or replaces) a provider for the test IdP, as the admin with a step-up code; expects 200. */
export async function putTestProvider(vault: TestVault, idp: TestIdp, name: string, groupRoles: Record<string, string[]>, extra: Record<string, unknown> = {}): Promise<Response> {
  const admin = await vault.admin();
  const body = { displayName: `Test IdP ${name}`, issuer: idp.issuer, clientId: idp.clientId, clientSecret: idp.clientSecret, groupRoles, ...extra };
  return actingAs(vault, admin).put(`/v1/oidc-providers/${name}`, body, true).expect(200);
}

export interface OidcBrowserResult {
  /** Where the vault's callback sent the browser. */
  location: string;
  /** `vault_session=…` when a session was set. */
  session?: string;
  /** The binding cookie the start set. */
  binding?: string;
  /** The callback URL the IdP sent the browser to (with code and state). */
  callback: URL;
}

/**
 * A browser's single sign-on, by HTTP: start (302 to the IdP, binding cookie), the IdP's login page as `username`,
 * then the vault's callback with the binding cookie (or `bindingOverride`: another value, or null for none);
 * `beforeCallback` runs between the IdP and the callback (e.g. to tamper with the next token response).
 */
export async function oidcBrowserSignIn(
  vault: TestVault,
  idp: TestIdp,
  provider: string,
  username: string,
  o: { password?: string; returnTo?: string; bindingOverride?: string | null; beforeCallback?: () => Promise<void> } = {},
): Promise<OidcBrowserResult> {
  const start = await vault.http().get(`/v1/auth/oidc/${provider}/start`).query(o.returnTo === undefined ? {} : { returnTo: o.returnTo });
  if (start.status !== 302) throw new Error(`start answered ${start.status} ${JSON.stringify(start.body)}`);
  const binding = cookieFrom(start, 'vault_oidc');
  if (!binding) throw new Error(`start set no binding cookie (went to ${start.headers.location})`);
  const callback = await idp.signIn(start.headers.location as string, username, o.password ?? 'password');
  if (!callback.href.startsWith(OIDC_REDIRECT_URI)) throw new Error(`the IdP sent the browser to ${callback.href}`);
  await o.beforeCallback?.();
  const cookie = o.bindingOverride === undefined ? binding : o.bindingOverride;
  const req = vault.http().get(callback.pathname + callback.search);
  if (cookie !== null) req.set('Cookie', cookie);
  const res = await req;
  if (res.status !== 302) throw new Error(`callback answered ${res.status} ${JSON.stringify(res.body)}`);
  return { location: res.headers.location as string, session: cookieFrom(res, 'vault_session'), binding, callback };
}

import type { Response } from 'supertest';
import { secretSentinel } from './secret-sentinel';
import type { TestVault } from './vault';

/** A browser session of the test vault, as the portal holds it: the cookie (sent back by the browser) and the CSRF token. */
export interface TestBrowserSession {
  /** `name=value`, for a `Cookie` header. */
  cookie: string;
  /** The cookie's value alone (the session token). */
  token: string;
  csrf: string;
  /** The Set-Cookie line as the server sent it. */
  setCookie: string;
  body: Record<string, unknown>;
}

/** The session cookie a response sets (`vault_session` or `__Host-vault_session`), or undefined. */
export function sessionCookieOf(res: Response): { line: string; name: string; value: string } | undefined {
  const lines = ([] as string[]).concat((res.headers['set-cookie'] as unknown as string[] | string | undefined) ?? []);
  for (const line of lines) {
    const m = /^((?:__Host-)?vault_session)=([^;]*)/.exec(line);
    if (m) return { line, name: m[1], value: m[2] };
  }
  return undefined;
}

/**
 * Reads the session a sign-in (or enrollment) answer set, recording the session token and the CSRF token for the
 * secret scan: neither may appear in a log line, an audit event or an error body.
 */
export function sessionFrom(res: Response): TestBrowserSession {
  const cookie = sessionCookieOf(res);
  if (!cookie || !cookie.value) throw new Error(`no session cookie in the answer (${res.status} ${JSON.stringify(res.body)})`);
  const csrf = (res.body as { csrfToken?: unknown }).csrfToken;
  if (typeof csrf !== 'string') throw new Error('no csrfToken in the answer');
  secretSentinel()?.secret(cookie.value, 'browser session cookie');
  secretSentinel()?.secret(csrf, 'browser session CSRF token');
  return { cookie: `${cookie.name}=${cookie.value}`, token: cookie.value, csrf, setCookie: cookie.line, body: res.body as Record<string, unknown> };
}

/** POST /v1/auth/session (with the user's next TOTP code when `code` is given); expects 200. */
export async function browserSignIn(
  vault: TestVault,
  creds: { username: string; password: string; code?: () => Promise<string> },
  headers: Record<string, string> = {},
): Promise<TestBrowserSession> {
  const body: Record<string, string> = { username: creds.username, password: creds.password };
  if (creds.code) body.code = await creds.code();
  const res = await vault.http().post('/v1/auth/session').set(headers).send(body);
  if (res.status !== 200) throw new Error(`browser sign-in answered ${res.status} ${JSON.stringify(res.body)}`);
  return sessionFrom(res);
}

import type { Request, Response } from 'express';
import type { AppConfig } from '../config/config';

/**
 * The browser session cookie: HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it), Path=/,
 * no Domain (this host only), no Expires (it ends with the browser; the server ends it sooner: idle and absolute
 * timeouts). Over HTTPS it is Secure and named with the `__Host-` prefix, which browsers accept only from a secure
 * origin, with Path=/ and without Domain: a sibling subdomain cannot plant one (cookie tossing) to fixate a session.
 */
export const SESSION_COOKIE = 'vault_session';
export const SECURE_SESSION_COOKIE = `__Host-${SESSION_COOKIE}`;

/** HTTPS: the request came over TLS (behind a trusted proxy: its X-Forwarded-Proto) or the portal's public URL is https. */
export function cookieSecure(req: Request, config: AppConfig): boolean {
  return req.secure || (config.notify.publicUrl ?? '').startsWith('https:');
}

export const cookieName = (secure: boolean) => (secure ? SECURE_SESSION_COOKIE : SESSION_COOKIE);

/**
 * The session cookie the request carries: none, one value, or `many` when the name appears more than once (a
 * planted cookie beside the real one, for another path or domain: neither is trusted).
 */
export function readSessionCookie(req: Request, config: AppConfig): { kind: 'none' } | { kind: 'one'; value: string } | { kind: 'many' } {
  const header = req.headers.cookie;
  if (typeof header !== 'string' || header === '') return { kind: 'none' };
  const name = cookieName(cookieSecure(req, config));
  const values: string[] = [];
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=');
    if (eq > 0 && pair.slice(0, eq).trim() === name) values.push(pair.slice(eq + 1).trim());
  }
  if (values.length === 0) return { kind: 'none' };
  return values.length === 1 ? { kind: 'one', value: values[0] } : { kind: 'many' };
}

const attributes = (secure: boolean) => ({ httpOnly: true, sameSite: 'strict' as const, path: '/', secure });

export function setSessionCookie(req: Request, res: Response, config: AppConfig, token: string): void {
  const secure = cookieSecure(req, config);
  res.cookie(cookieName(secure), token, attributes(secure));
}

export function clearSessionCookie(req: Request, res: Response, config: AppConfig): void {
  const secure = cookieSecure(req, config);
  res.clearCookie(cookieName(secure), attributes(secure));
}

/** Methods that never change anything (no GET route changes state): they need no CSRF token. */
export const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * A browser says where a request came from (Fetch Metadata): `cross-site` and `same-site` (another subdomain) are
 * pages the vault did not serve. A request without the header (older browsers, API clients) is judged by its CSRF
 * token alone.
 */
export function fromAnotherSite(req: Request): boolean {
  const site = req.headers['sec-fetch-site'];
  return site === 'cross-site' || site === 'same-site';
}

import type { Request, Response } from 'express';
import type { AppConfig } from '../../config/config';
import { cookieSecure } from '../session-cookie';

/**
 * The cookie that binds a pending single sign-on to the browser that started it: a random value (the table keeps its
 * SHA-256), HttpOnly, SameSite=Lax (the provider's redirect back is a top-level navigation from another site, which a
 * Strict cookie would not come with), only sent to /v1/auth/oidc, gone after the sign-in's lifetime. Over HTTPS it is
 * Secure with the `__Secure-` prefix. A callback without it (another browser, a forged link) is refused.
 */
const NAME = 'vault_oidc';
const PATH = '/v1/auth/oidc';
const nameOf = (secure: boolean) => (secure ? `__Secure-${NAME}` : NAME);

export function setBindingCookie(req: Request, res: Response, config: AppConfig, value: string): void {
  const secure = cookieSecure(req, config);
  res.cookie(nameOf(secure), value, { httpOnly: true, sameSite: 'lax', path: PATH, secure, maxAge: config.signIn.oidcLoginSeconds * 1000 });
}

export function clearBindingCookie(req: Request, res: Response, config: AppConfig): void {
  const secure = cookieSecure(req, config);
  res.clearCookie(nameOf(secure), { httpOnly: true, sameSite: 'lax', path: PATH, secure });
}

/** The binding cookie's value; undefined when absent or present more than once (a planted one beside it). */
export function readBindingCookie(req: Request, config: AppConfig): string | undefined {
  const header = req.headers.cookie;
  if (typeof header !== 'string') return undefined;
  const name = nameOf(cookieSecure(req, config));
  const values = header
    .split(';')
    .map((pair) => pair.trim())
    .filter((pair) => pair.startsWith(`${name}=`))
    .map((pair) => pair.slice(name.length + 1));
  return values.length === 1 && values[0].length > 0 && values[0].length <= 100 ? values[0] : undefined;
}

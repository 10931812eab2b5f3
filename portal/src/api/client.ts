import createClient, { type Middleware } from 'openapi-fetch';
import { isActive } from './activity';
import { errorFrom, networkError } from './errors';
import type { paths } from './paths';
import { assertionHeader, signChallenge } from './webauthn';

/**
 * The portal's one HTTP client. The browser sends the HttpOnly session cookie itself (same origin); the CSRF token,
 * answered by POST/GET /v1/auth/session, lives in this module's memory only (never web storage or a URL) and goes with
 * every request that may change something. Any answer that is not 2xx becomes a thrown ApiError.
 */
let csrfToken: string | null = null;
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
const listeners = new Set<() => void>();

export function setCsrfToken(token: string | null): void {
  csrfToken = token;
}

/** Called when an authenticated call answers 401 UNAUTHENTICATED: the session ended (idle, absolute, revoked). */
export function onSessionExpired(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

const csrfAndErrors: Middleware = {
  async onRequest({ request }) {
    if (request.headers.get('X-MFA-Code') === SECURITY_KEY) await signWithSecurityKey(request);
    if (csrfToken && !SAFE_METHODS.has(request.method)) request.headers.set('X-CSRF-Token', csrfToken);
    // a read nobody asked for just now (polling, a refetch when the window regains focus) keeps no session alive
    else if (SAFE_METHODS.has(request.method) && !isActive()) request.headers.set('X-Session-Activity', 'passive');
    return request;
  },
  async onResponse({ request, response }) {
    if (response.ok) return response;
    const error = await errorFrom(response);
    // the session endpoint itself answers 401 for "not signed in": that is not an expiry
    const isSessionCall = new URL(request.url).pathname === '/v1/auth/session';
    if (error.code === 'UNAUTHENTICATED' && !isSessionCall) for (const l of listeners) l();
    throw error;
  },
  onError() {
    return networkError();
  },
};

export const api = createClient<paths>({ baseUrl: window.location.origin, credentials: 'same-origin' });
api.use(csrfAndErrors);

/** The data of an answer that the middleware let through (2xx); a 204 has none. */
export function ok<T>(result: { data?: T }): T {
  return result.data as T;
}

/**
 * The step-up proof a person chose instead of a code: the request is signed by one of their security keys or passkeys
 * just before it is sent. `withMfa(SECURITY_KEY, init)` marks it; the middleware asks the vault for a step-up
 * challenge bound to exactly this request (method, path, JSON body: POST /v1/me/webauthn/step-up), has the
 * authenticator sign it, and sends the request with `X-MFA-Assertion` instead of the code. A 6-digit code is never
 * this value.
 */
export const SECURITY_KEY = 'security-key';

async function signWithSecurityKey(request: Request): Promise<void> {
  request.headers.delete('X-MFA-Code');
  const text = await request.clone().text();
  const body = text ? (JSON.parse(text) as Record<string, unknown>) : undefined;
  const method = request.method as 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  const { options } = ok(await api.POST('/v1/me/webauthn/step-up', { body: { method, path: new URL(request.url).pathname, ...(body ? { body } : {}) } }));
  request.headers.set('X-MFA-Assertion', assertionHeader(await signChallenge(options)));
}

/**
 * A request's options with the step-up code of an MFA action (../shared/API.md: a fresh 6-digit code, used once), as the
 * document declares it: the `X-MFA-Code` header parameter, merged with the request's other parameters.
 * `api.POST('/v1/checkouts/{id}/reveal', withMfa(code, { params: { path: { id } } }))`.
 */
type MfaHeader = { header: { 'X-MFA-Code': string } };
type WithMfa<I> = Omit<I, 'params'> & { params: (I extends { params: infer P } ? P : unknown) & MfaHeader };

/** `code`: the 6-digit code, or {@link SECURITY_KEY} to sign the request with a security key when it is sent. */
export function withMfa<I extends object = object>(code: string, init?: I): WithMfa<I> {
  const params = (init as { params?: object } | undefined)?.params ?? {};
  return { ...init, params: { ...params, header: { 'X-MFA-Code': code } } } as WithMfa<I>;
}

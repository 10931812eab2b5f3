import type { NextFunction, Request, Response } from 'express';
import helmet from 'helmet';

/**
 * The Content-Security-Policy of everything the vault answers (the portal, its assets, the API): scripts, styles, fonts
 * and connections from this origin only, so no inline script (an injected `<script>` or `onclick=` never runs) and
 * no request to another host; images also as `data:` URLs (the TOTP QR code is drawn locally into one); no plugins,
 * no `<base>` rewriting, forms post here only, and no page may frame the vault (clickjacking).
 */
export const CSP_DIRECTIVES: Record<string, string[]> = {
  'default-src': ["'self'"],
  'script-src': ["'self'"],
  'style-src': ["'self'"],
  'img-src': ["'self'", 'data:'],
  'connect-src': ["'self'"],
  'font-src': ["'self'"],
  'object-src': ["'none'"],
  'base-uri': ["'none'"],
  'form-action': ["'self'"],
  'frame-ancestors': ["'none'"],
};

/** The Swagger UI at /docs is third-party HTML with inline `<style>` and `style=` attributes: only styles are relaxed there. */
export const DOCS_CSP_DIRECTIVES: Record<string, string[]> = { ...CSP_DIRECTIVES, 'style-src': ["'self'", "'unsafe-inline'"] };

/**
 * The session recording player's page (portal/src/pages/recordings): asciinema-player's terminal emulator is
 * WebAssembly, which a CSP refuses to compile unless script-src has 'wasm-unsafe-eval' (that allows compiling
 * WebAssembly only: eval and inline script stay refused). Only that page's document gets it; the portal opens it
 * with a full page load, so no other portal page runs under it unless navigated to from the player.
 */
export const PLAYER_CSP_DIRECTIVES: Record<string, string[]> = { ...CSP_DIRECTIVES, 'script-src': ["'self'", "'wasm-unsafe-eval'"] };
export const PLAYER_PAGE = /^\/portal\/sessions\/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\/play$/;

const headersWith = (directives: Record<string, string[]>) =>
  helmet({
    // exactly the directives above: helmet's defaults add upgrade-insecure-requests, which breaks a vault on http://127.0.0.1
    contentSecurityPolicy: { useDefaults: false, directives },
    frameguard: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
  });

/**
 * helmet on every response: the CSP above, `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer` (a portal URL holds
 * ids that are nobody else's business), `X-Content-Type-Options: nosniff`, HSTS (heeded by browsers over HTTPS only),
 * same-origin opener and resource policies.
 */
export function securityHeaders(docsPath: string): (req: Request, res: Response, next: NextFunction) => void {
  const strict = headersWith(CSP_DIRECTIVES);
  const docs = headersWith(DOCS_CSP_DIRECTIVES);
  const player = headersWith(PLAYER_CSP_DIRECTIVES);
  const isDocs = (path: string) => path === `/${docsPath}` || path.startsWith(`/${docsPath}/`);
  return (req, res, next) => (isDocs(req.path) ? docs : PLAYER_PAGE.test(req.path) ? player : strict)(req, res, next);
}

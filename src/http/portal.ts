import { realpathSync, statSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import type { NextFunction, Request, Response } from 'express';

/** Where the portal is served; its deep links (notifications) start with it too (src/notifications/events.ts). */
export const PORTAL_PATH = '/portal';

/** Vite's content-hashed files: a changed file gets a new name, so a browser may keep one for a year. */
const IMMUTABLE = 'public, max-age=31536000, immutable';

interface Express {
  use(path: string, handler: (req: Request, res: Response, next: NextFunction) => void): void;
  use(handler: (req: Request, res: Response, next: NextFunction) => void): void;
}

/**
 * Serves the built portal (Vite's output) at /portal/: a path whose last segment has a dot is a file of the build;
 * any other path is a route of the single-page app and gets index.html (SPA fallback), so deep links work after a
 * reload. index.html is `no-store` like every API answer; hashed assets under /portal/assets/ are immutable. `/` and
 * `/portal` redirect to `/portal/`. Without a build, the app's routes answer 503 PORTAL_NOT_BUILT (the API still works).
 * A request never reaches a file outside the build directory: dot segments, encoded separators and NULs are refused
 * before any path is built, and the resolved real path must still be inside the directory.
 */
export function servePortal(app: Express, dir: string): void {
  const root = resolve(dir);
  app.use((req, res, next) => {
    if ((req.method === 'GET' || req.method === 'HEAD') && (req.path === '/' || req.path === PORTAL_PATH)) return res.redirect(302, `${PORTAL_PATH}/`);
    next();
  });
  app.use(PORTAL_PATH, (req, res, next) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return next();
    const segments = pathSegments(req.path);
    if (!segments) return next(); // → 404 NOT_FOUND, like any path nothing serves
    const last = segments[segments.length - 1] ?? '';
    if (!last.includes('.')) return sendIndex(root, res);
    const file = fileInside(root, segments);
    if (!file) return next();
    if (segments[0] === 'assets') res.setHeader('Cache-Control', IMMUTABLE);
    send(res, file);
  });
}

/** The decoded segments of a path below /portal, or undefined when one could step out of the directory or hide. */
function pathSegments(path: string): string[] | undefined {
  const raw = path.split('/').filter((s) => s !== '');
  const segments: string[] = [];
  for (const s of raw) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(s);
    } catch {
      return undefined;
    }
    // `..`, `.`, dotfiles, and separators or NULs smuggled in encoded (`..%2f`, `%5c`, `%00`)
    if (decoded.startsWith('.') || /[/\\\0]/.test(decoded)) return undefined;
    segments.push(decoded);
  }
  return segments;
}

/**
 * The regular file at these segments inside root (symbolic links followed and checked), as the real root and the path
 * below it, or undefined.
 */
function fileInside(root: string, segments: string[]): { root: string; path: string } | undefined {
  try {
    const realRoot = realpathSync(root);
    const real = realpathSync(join(root, ...segments));
    if (!real.startsWith(realRoot + sep) || !statSync(real).isFile()) return undefined;
    return { root: realRoot, path: relative(realRoot, real) };
  } catch {
    return undefined;
  }
}

/**
 * Sends a file of the build. The path is given below its root: `dotfiles: 'deny'` then judges only the part below the
 * build, not where the build lives (a build under `~/.local/…` or `/srv/.vault/…` is served like any other).
 */
function send(res: Response, file: { root: string; path: string }): void {
  res.sendFile(file.path, { root: file.root, etag: false, cacheControl: false, dotfiles: 'deny' }, (err) => err && failed(res));
}

/**
 * `PORTAL_NOT_BUILT` is no code of the API's table (src/common/error-codes.ts lists what API operations answer; the
 * portal's pages are none): the same `{statusCode, code, message}` shape, answered here only.
 */
function sendIndex(root: string, res: Response): void {
  const index = fileInside(root, ['index.html']);
  if (!index) {
    res.setHeader('Cache-Control', 'no-store');
    res.status(503).json({ statusCode: 503, code: 'PORTAL_NOT_BUILT', message: 'the web portal is not built on this server: run `npm run build`' });
    return;
  }
  res.setHeader('Cache-Control', 'no-store');
  send(res, index);
}

/** A file that vanished or a client that went away while it was sent: never Express's HTML error page. */
function failed(res: Response): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  res.setHeader('Cache-Control', 'no-store');
  res.status(404).json({ statusCode: 404, code: 'NOT_FOUND', message: 'no such route' });
}

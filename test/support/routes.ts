import { METHODS } from 'node:http';
import type { TestVault } from './vault';

/**
 * `METHOD /path` of every route the application registered in its Express 5 router (`app.router.stack`); `ALL` for
 * all(). What the route tests compare their tables with, so a route added without a row fails them.
 */
interface ExpressLayer {
  route?: { path: unknown; methods: Record<string, boolean | undefined> };
}

const EVERY_METHOD = METHODS.map((m) => m.toLowerCase());

/** `METHOD /path` of every route layer in the Express 5 router (`app.router.stack`); `ALL` for all(). */
export function registeredRoutes(vault: TestVault): string[] {
  const app = vault.app.getHttpAdapter().getInstance() as { router?: { stack?: ExpressLayer[] } };
  const stack = app.router?.stack;
  if (!Array.isArray(stack)) throw new Error('expected an Express 5 application (app.router.stack); the HTTP adapter changed');
  const out: string[] = [];
  for (const layer of stack) {
    if (!layer.route) continue; // app.use() middleware (body parser, ...): not a route
    const { path, methods } = layer.route;
    if (typeof path !== 'string') throw new Error(`route with a non-string path: ${String(path)}`);
    const verbs = Object.keys(methods).filter((m) => methods[m]);
    if (verbs.includes('_all') || EVERY_METHOD.every((m) => verbs.includes(m))) out.push(`ALL ${path}`);
    else for (const m of verbs) out.push(`${m.toUpperCase()} ${path}`);
  }
  return out;
}

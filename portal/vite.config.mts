import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

/**
 * The portal is served by the vault at /portal/ (src/http): built into dist/portal next to the server's own output.
 * Vite 8 compiles TSX itself (oxc), so no React plugin; the JSX runtime is set in portal/tsconfig.json.
 */
const root = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root,
  base: '/portal/',
  // everything the portal needs comes from its own origin: no inline script or style may appear (CSP)
  build: {
    outDir: fileURLToPath(new URL('../dist/portal', import.meta.url)),
    emptyOutDir: true,
    sourcemap: false,
    // a module preload polyfill would be an inline script
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    rolldownOptions: {
      // React libraries mark their modules "use client" (for server components); a browser bundle has no use for it
      onwarn(warning, warn) {
        if (warning.code !== 'MODULE_LEVEL_DIRECTIVE') warn(warning);
      },
    },
  },
  oxc: { jsx: { runtime: 'automatic' } },
  server: {
    // `npx vite --config portal/vite.config.mts` against a vault on VAULT_URL (default http://127.0.0.1:3000)
    proxy: { '/v1': process.env.VAULT_URL ?? 'http://127.0.0.1:3000' },
  },
});

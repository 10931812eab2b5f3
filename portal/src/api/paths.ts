/**
 * The one place the client's path types come from: the generated schema (`npm run portal:api` writes schema.d.ts from
 * the running vault's OpenAPI document; test/e2e/openapi-portal fails while it differs), so a changed API fails the
 * portal's type-check wherever a page uses what changed.
 */
export type { paths } from './schema';

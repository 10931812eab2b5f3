/**
 * The one place the client's path types come from. Until the generated schema (schema.d.ts, written by
 * `npm run portal:api`) is committed, every path is accepted and answers are untyped; switching to the generated
 * types is this one line: `export type { paths } from './schema';`.
 */
export type { paths } from './loose-paths';

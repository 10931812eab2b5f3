import { z } from 'zod';

/**
 * What a route answers on success, for the OpenAPI document (src/openapi reads it; the typed client of the portal is
 * generated from that document). A response shape is a zod schema written once, next to the module's DTOs; the view
 * type the code uses is derived from it (`type X = z.output<typeof X>`), so the documented shape and the type are one
 * thing. `@ApiAnswer` binds a handler to its schema and makes the compiler refuse a handler whose declared return type
 * differs from it; the e2e suites check every 2xx answer they receive against the document (test/support/openapi-check.ts).
 */
export const API_ANSWER = 'vault:api-answer';

export interface ApiAnswerMeta {
  schema: z.ZodType;
  /** `application/json` unless the route sets another Content-Type (e.g. Prometheus text). */
  contentType: string;
}

/** A named response shape: a component schema of the document (`#/components/schemas/<id>`). */
export function apiView<S extends z.ZodType>(id: string, schema: S, description?: string): S {
  return schema.meta(description ? { id, description } : { id }) as S;
}

/** A string holding a UUID. */
export const uuid = () => z.string().meta({ format: 'uuid' });
/** An ISO 8601 timestamp as `Date.toISOString()` writes it. */
export const timestamp = () => z.string().meta({ format: 'date-time' });

/** `{items, nextCursor}` of every list (src/common/pagination.ts), named `<Item>Page` when the item is named. */
export function pageOf<S extends z.ZodType>(item: S) {
  const page = z.object({
    items: z.array(item),
    nextCursor: z.string().nullable().describe('Pass as `?cursor=` for the next page; null on the last one.'),
  });
  const id = z.globalRegistry.get(item)?.id;
  return typeof id === 'string' ? apiView(`${id}Page`, page) : page;
}

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
/** Passes when the two types are assignable both ways; else a type whose name says what is wrong (the compiler shows it). */
type Matching<Returned, Documented> =
  Same<Returned, Documented> extends true ? unknown : { 'the handler returns a type its @ApiAnswer schema does not describe': [Returned, Documented] };

/**
 * The schema of the route's success answer (status: the route's `@HttpCode`, else Nest's default). A 204 route needs
 * none. The compiler checks that the handler's return type (awaited) and the schema's output type match both ways.
 */
export function ApiAnswer<S extends z.ZodType>(schema: S, opts: { contentType?: string } = {}) {
  const meta: ApiAnswerMeta = { schema, contentType: opts.contentType ?? 'application/json' };
  return <F extends (...args: never[]) => unknown>(
    _target: object,
    _key: string | symbol,
    descriptor: TypedPropertyDescriptor<F> & Matching<Awaited<ReturnType<F>>, z.output<S>>,
  ): void => {
    Reflect.defineMetadata(API_ANSWER, meta, descriptor.value as object);
  };
}

/**
 * A schema for a type the code defines elsewhere (a domain type that a view embeds), checked by the compiler to match
 * it both ways: `typedSchema<AccountPolicy>()(z.object({...}))`. A mismatch asks for a second argument of type never.
 */
export const typedSchema =
  <T>() =>
  <S extends z.ZodType>(schema: S, ..._mismatch: Same<T, z.output<S>> extends true ? [] : [never]): S =>
    schema;

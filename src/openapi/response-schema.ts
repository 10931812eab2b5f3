import type { ReferenceObject, SchemaObject } from '@nestjs/swagger';
import { isDeepStrictEqual } from 'node:util';
import { z } from 'zod';

const DEFINITIONS = '#/definitions/';
const COMPONENTS = '#/components/schemas/';

/**
 * OpenAPI 3.0 schemas of the success answers, from the zod schemas routes name with `@ApiAnswer` (src/common/api-responses.ts).
 * Named shapes (`apiView`) become component schemas referenced by name; the rest is written inline. zod writes
 * `additionalProperties: false` for every object: the document lists every field an answer has, and the e2e suites
 * fail on one it does not list.
 */
export class ResponseSchemas {
  /** Component schemas by name, filled as operations reference them. */
  readonly schemas: Record<string, SchemaObject> = {};

  schema(answer: z.ZodType): SchemaObject | ReferenceObject {
    const json = z.toJSONSchema(answer, { target: 'openapi-3.0', io: 'output', unrepresentable: 'throw', override: dropSafeIntegerBounds }) as Record<string, unknown>;
    const { definitions, $schema: _ignored, ...root } = finish(json) as Record<string, unknown> & { definitions?: Record<string, SchemaObject> };
    for (const [name, schema] of Object.entries(definitions ?? {})) this.add(name, schema);
    return root as SchemaObject | ReferenceObject;
  }

  private add(name: string, schema: SchemaObject): void {
    const known = this.schemas[name];
    if (known && !isDeepStrictEqual(known, schema)) throw new Error(`two different response schemas are named ${name}: give one another apiView id`);
    this.schemas[name] = schema;
  }
}

/** zod bounds `int()` by the safe integers; that says nothing to a client, so it is left out. */
function dropSafeIntegerBounds({ jsonSchema }: { jsonSchema: Record<string, unknown> }): void {
  if (jsonSchema.minimum === Number.MIN_SAFE_INTEGER) delete jsonSchema.minimum;
  if (jsonSchema.maximum === Number.MAX_SAFE_INTEGER) delete jsonSchema.maximum;
}

/**
 * zod's `#/definitions/X` → the document's `#/components/schemas/X`; a nullable enum lists null among its values
 * (OpenAPI 3.0.3: `nullable` does not widen an `enum`).
 */
function finish(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(finish);
  if (!node || typeof node !== 'object') return node;
  const out = Object.fromEntries(
    Object.entries(node).map(([k, v]) => [k, k === '$ref' && typeof v === 'string' && v.startsWith(DEFINITIONS) ? COMPONENTS + v.slice(DEFINITIONS.length) : finish(v)]),
  );
  if (out.nullable === true && Array.isArray(out.enum) && !out.enum.includes(null)) out.enum = [...(out.enum as unknown[]), null];
  return out;
}

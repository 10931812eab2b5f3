import type { ParameterObject, ReferenceObject, SchemaObject } from '@nestjs/swagger';
import { defaultMetadataStorage } from 'class-transformer/cjs/storage';
import { getMetadataStorage, ValidationTypes } from 'class-validator';
import type { ValidationMetadata } from 'class-validator/types/metadata/ValidationMetadata';

// eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
export type DtoClass = Function & { prototype: object };

/** Validators that describe the array itself; every other one applies to its items when marked `each`. */
const ARRAY_LEVEL = new Set(['isArray', 'arrayMinSize', 'arrayMaxSize', 'arrayUnique', 'arrayNotEmpty']);
const PRIMITIVES = new Set<unknown>([String, Number, Boolean, Object, Array, Date]);

/**
 * JSON schemas of request DTOs read from the class-validator decorators the validation pipe enforces (the build
 * uses plain tsc, so the Swagger CLI plugin never sees the DTOs). Nested DTOs (`@ValidateNested` + `@Type`) become
 * component schemas referenced by name; unknown fields are refused by the pipe, hence `additionalProperties: false`.
 */
export class DtoSchemas {
  /** Component schemas by class name, filled as DTOs are referenced. */
  readonly schemas: Record<string, SchemaObject> = {};
  private readonly classes = new Map<string, DtoClass>();

  /** `$ref` to the DTO's component schema (built on first use). */
  ref(cls: DtoClass): ReferenceObject {
    const known = this.classes.get(cls.name);
    if (known && known !== cls) throw new Error(`two request DTO classes are named ${cls.name}: rename one, the OpenAPI document names schemas by class`);
    if (!known) {
      this.classes.set(cls.name, cls);
      this.schemas[cls.name] = { type: 'object' }; // placeholder while recursing
      this.schemas[cls.name] = this.objectSchema(cls);
    }
    return { $ref: `#/components/schemas/${cls.name}` };
  }

  /** `?name=` parameters of a query DTO (`@Query() q: SomeQuery`). */
  queryParameters(cls: DtoClass): ParameterObject[] {
    return propertiesOf(cls).map(({ name, metadatas }) => {
      const { schema, optional, description } = this.propertySchema(cls, name, metadatas);
      return { name, in: 'query', required: !optional, schema, ...(description ? { description } : {}) };
    });
  }

  private objectSchema(cls: DtoClass): SchemaObject {
    const properties: Record<string, SchemaObject | ReferenceObject> = {};
    const required: string[] = [];
    for (const { name, metadatas } of propertiesOf(cls)) {
      const { schema, optional, description } = this.propertySchema(cls, name, metadatas);
      const nullable = acceptsNull(name, metadatas) && !('$ref' in schema) ? { nullable: true } : {};
      properties[name] = description && !('$ref' in schema) ? { ...schema, ...nullable, description } : { ...schema, ...nullable };
      if (!optional) required.push(name);
    }
    return { type: 'object', properties, ...(required.length ? { required } : {}), additionalProperties: false };
  }

  private propertySchema(cls: DtoClass, name: string, metadatas: ValidationMetadata[]): { schema: SchemaObject | ReferenceObject; optional: boolean; description?: string } {
    const designType: unknown = Reflect.getMetadata('design:type', cls.prototype, name);
    const isArray = designType === Array || metadatas.some((m) => m.each || ARRAY_LEVEL.has(m.name ?? ''));
    const optional = metadatas.some((m) => m.type === ValidationTypes.CONDITIONAL_VALIDATION);
    const outer: SchemaObject = isArray ? { type: 'array' } : {};
    const item: SchemaObject = isArray ? {} : outer;
    const notes: string[] = [];
    let nested: DtoClass | undefined;
    for (const m of metadatas) {
      if (m.type === ValidationTypes.CONDITIONAL_VALIDATION || m.type === ValidationTypes.WHITELIST || m.type === ValidationTypes.IS_DEFINED) continue;
      if (m.type === ValidationTypes.NESTED_VALIDATION) {
        nested = nestedClass(cls, m, name, designType);
        continue;
      }
      const target = isArray && !ARRAY_LEVEL.has(m.name ?? '') ? item : outer;
      if (!applyConstraint(target, m)) notes.push(defaultMessage(m, name));
      if (typeof m.message === 'string' && !notes.includes(m.message)) notes.push(m.message);
    }
    if (!isArray && item.type === undefined) inferType(item, designType);
    const itemSchema: SchemaObject | ReferenceObject = nested ? this.ref(nested) : item;
    const schema = isArray ? { ...outer, items: itemSchema } : itemSchema;
    return { schema, optional, description: notes.filter(Boolean).join('; ') || undefined };
  }
}

/**
 * Whether the pipe lets an explicit `null` through: a `@ValidateIf` that skips validation for it (e.g. `email: null`
 * removes an address). The project's `@Optional()` skips only an absent field, so it does not count.
 */
function acceptsNull(name: string, metadatas: ValidationMetadata[]): boolean {
  return metadatas.some((m) => m.type === ValidationTypes.CONDITIONAL_VALIDATION && (m.constraints?.[0] as ((o: object, v: unknown) => boolean) | undefined)?.({ [name]: null }, null) === false);
}

/** The validated properties of a class, its ancestors' first, each with its validators (own and inherited). */
function propertiesOf(cls: DtoClass): Array<{ name: string; metadatas: ValidationMetadata[] }> {
  const all = getMetadataStorage().getTargetValidationMetadatas(cls, '', true, false);
  const depth = (target: ValidationMetadata['target']) => {
    let d = 0;
    for (let p: unknown = cls; p && p !== target; p = Object.getPrototypeOf(p)) d++;
    return d;
  };
  const byName = new Map<string, ValidationMetadata[]>();
  for (const m of [...all].sort((a, b) => depth(b.target) - depth(a.target))) {
    const list = byName.get(m.propertyName) ?? [];
    list.push(m);
    byName.set(m.propertyName, list);
  }
  return [...byName].map(([name, metadatas]) => ({ name, metadatas }));
}

function nestedClass(cls: DtoClass, m: ValidationMetadata, name: string, designType: unknown): DtoClass {
  const declared = defaultMetadataStorage.findTypeMetadata(m.target as DtoClass, name) ?? defaultMetadataStorage.findTypeMetadata(cls, name);
  const type: unknown = declared?.typeFunction() ?? designType;
  if (typeof type !== 'function' || PRIMITIVES.has(type)) throw new Error(`${cls.name}.${name}: @ValidateNested needs @Type(() => SomeDto) for the OpenAPI document`);
  return type as DtoClass;
}

/** Writes one class-validator constraint into the schema; false when it has no JSON-schema counterpart. */
function applyConstraint(s: SchemaObject, m: ValidationMetadata): boolean {
  const c: unknown[] = m.constraints ?? [];
  switch (m.name) {
    case 'isString':
      s.type = 'string';
      return true;
    case 'isInt':
      s.type = 'integer';
      return true;
    case 'isNumber':
      s.type = 'number';
      return true;
    case 'isBoolean':
      s.type = 'boolean';
      return true;
    case 'isObject':
      // a free object (`response`, `assertion`, `groupRoles`: what the field's own validator checks); a nested DTO
      // (@ValidateNested) is a $ref instead and this schema is dropped
      s.type = 'object';
      s.additionalProperties = true;
      return true;
    case 'isArray':
      s.type = 'array';
      return true;
    case 'isUuid':
      s.type = 'string';
      s.format = 'uuid';
      return true;
    case 'isIso8601':
    case 'isDateString':
      s.type = 'string';
      s.format = 'date-time';
      return true;
    case 'isIn': {
      const values = c[0] as unknown[];
      s.enum = [...values];
      s.type ??= typeof values[0] === 'number' ? 'number' : typeof values[0] === 'boolean' ? 'boolean' : 'string';
      return true;
    }
    case 'matches': {
      const pattern = c[0] instanceof RegExp ? c[0].source : String(c[0]);
      s.type ??= 'string';
      if (s.pattern === undefined) s.pattern = pattern;
      else s.allOf = [...(s.allOf ?? []), { pattern }];
      return true;
    }
    case 'minLength':
      s.minLength = Number(c[0]);
      return true;
    case 'maxLength':
      s.maxLength = Number(c[0]);
      return true;
    case 'min':
      s.minimum = Number(c[0]);
      return true;
    case 'max':
      s.maximum = Number(c[0]);
      return true;
    case 'arrayMinSize':
      s.minItems = Number(c[0]);
      return true;
    case 'arrayNotEmpty':
      s.minItems = Math.max(1, s.minItems ?? 0);
      return true;
    case 'arrayMaxSize':
      s.maxItems = Number(c[0]);
      return true;
    case 'arrayUnique':
      s.uniqueItems = true;
      return true;
    default:
      return false;
  }
}

/** The human rule of a validator that JSON schema cannot express (e.g. a custom `isHost`). */
function defaultMessage(m: ValidationMetadata, property: string): string {
  try {
    const constraint = new (m.constraintCls as new () => { defaultMessage?: (args: unknown) => string })();
    const text = constraint.defaultMessage?.({ property, constraints: m.constraints, value: undefined, targetName: '', object: {} });
    if (text) return text.replace(/\$property/g, property);
  } catch {
    /* fall through */
  }
  return `must pass ${m.name ?? 'a custom check'}`;
}

function inferType(s: SchemaObject, designType: unknown): void {
  if (designType === String) s.type = 'string';
  else if (designType === Number) s.type = 'number';
  else if (designType === Boolean) s.type = 'boolean';
}

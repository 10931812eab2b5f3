import { ArgumentMetadata, ParseUUIDPipe, ValidationError, ValidationPipe } from '@nestjs/common';
import { ValidateBy, ValidateIf } from 'class-validator';
import { Errors } from './errors';
import { isStorableText } from './text';

/**
 * Like class-validator's @IsOptional(), except that only an absent field is skipped: an explicit `null` is
 * validated like any other value (and so refused), instead of reaching a service as a present-but-null field.
 */
export const Optional = () => ValidateIf((_object: object, value: unknown) => value !== undefined);

/**
 * A point in time as the API writes them: ISO 8601 extended format with a date, a time and a zone
 * (`2027-01-01T00:00:00Z`, `2027-01-01T01:00:00.000+01:00`), years 1970-9999. The basic format (`20270101T000000Z`)
 * and dates without a zone are refused here rather than by the database.
 */
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})$/;
export function isTimestamp(v: unknown): v is string {
  if (typeof v !== 'string' || !TIMESTAMP.test(v)) return false;
  const t = Date.parse(v);
  if (!Number.isFinite(t) || t < 0 || t >= Date.UTC(10000, 0, 1)) return false;
  // a real calendar day (Date.parse rolls 2027-02-30 over to March)
  const [y, m, d] = v.slice(0, 10).split('-').map(Number);
  const day = new Date(Date.UTC(y, m - 1, d));
  return day.getUTCFullYear() === y && day.getUTCMonth() === m - 1 && day.getUTCDate() === d;
}
export const IsTimestamp = () =>
  ValidateBy({
    name: 'isTimestamp',
    validator: { validate: isTimestamp, defaultMessage: (a) => `${a?.property ?? 'value'} must be an ISO 8601 time with a zone, e.g. 2027-01-01T00:00:00Z` },
  });

const MAX_DEPTH = 16;
const MAX_PATH_IN_MESSAGE = 100;

/**
 * Checks what class-transformer and PostgreSQL cannot take, before they see it: nesting deep enough to
 * overflow the stack, keys that class-transformer silently drops or uses to change prototypes
 * (`__proto__`, `constructor`, `toString`, ...), so they would escape the unknown-field check, and NUL
 * characters and lone surrogates, which PostgreSQL cannot store as given. Names the path, never the value.
 */
export function screenInput(value: unknown, path = '', depth = 0): void {
  const where = () => (path || 'body').slice(0, MAX_PATH_IN_MESSAGE);
  if (typeof value === 'string') {
    if (!isStorableText(value)) throw Errors.validation(`${where()}: must be valid Unicode text without NUL characters`);
    return;
  }
  if (value === null || typeof value !== 'object') return;
  if (depth >= MAX_DEPTH) throw Errors.validation(`request is nested more than ${MAX_DEPTH} levels deep`);
  if (Array.isArray(value)) {
    value.forEach((item, i) => screenInput(item, `${path}[${i}]`, depth + 1));
    return;
  }
  for (const [key, item] of Object.entries(value)) {
    const at = path ? `${path}.${key}` : key;
    if (!isStorableText(key)) throw Errors.validation(`${(path || 'body').slice(0, MAX_PATH_IN_MESSAGE)}: field names must be valid Unicode text`);
    if (key in Object.prototype) throw Errors.validation(`${at.slice(0, MAX_PATH_IN_MESSAGE)}: unknown field`);
    screenInput(item, at, depth + 1);
  }
}

class VaultValidationPipe extends ValidationPipe {
  override async transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    if (metadata.type === 'body' || metadata.type === 'query') screenInput(value);
    return super.transform(value, metadata);
  }
}

/** Names the failing fields and constraints, never the submitted values. */
export function describeValidationErrors(errors: ValidationError[], prefix = ''): string[] {
  const out: string[] = [];
  for (const e of errors) {
    const path = prefix ? `${prefix}.${e.property}` : e.property;
    if (e.constraints) {
      for (const [name, text] of Object.entries(e.constraints)) {
        out.push(name === 'whitelistValidation' ? `${path}: unknown field` : text.replace(/^.*? /, `${path} `));
      }
    }
    if (e.children?.length) out.push(...describeValidationErrors(e.children, path));
  }
  return out;
}

/** Global pipe: unknown fields are refused, types are checked, and the error is a VALIDATION_FAILED. */
export function createValidationPipe(): ValidationPipe {
  return new VaultValidationPipe({
    whitelist: true,
    forbidNonWhitelisted: true,
    forbidUnknownValues: true,
    transform: true,
    validationError: { target: false, value: false },
    exceptionFactory: (errors) => Errors.validation(describeValidationErrors(errors).slice(0, 10).join('; ') || 'invalid request'),
  });
}

/** `@Param('id', UuidPipe)`: a malformed id is a 400, not a database error. */
export const UuidPipe = new ParseUUIDPipe({
  version: undefined,
  exceptionFactory: () => Errors.validation('id: must be a UUID'),
});

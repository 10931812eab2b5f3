import { ParseUUIDPipe, ValidationError, ValidationPipe } from '@nestjs/common';
import { Errors } from './errors';

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
  return new ValidationPipe({
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

import { CodeWithStatus, ERROR_CODES, ErrorCode } from './error-codes';

/**
 * The one domain exception. Services throw it with a stable machine code (its HTTP status comes from the code's row in
 * the table); the exception filter
 * turns it into `{statusCode, code, message}`. Messages are written for humans and must never
 * contain a secret.
 */
export class DomainException extends Error {
  /** The HTTP status, from the one table of codes (src/common/error-codes.ts). */
  readonly status: number;

  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly extra?: Record<string, unknown>,
  ) {
    super(message);
    this.status = ERROR_CODES[code].status;
  }
}

export const Errors = {
  validation: (message: string) => new DomainException('VALIDATION_FAILED', message),
  unauthenticated: (message = 'authentication required') => new DomainException('UNAUTHENTICATED', message),
  forbidden: (message = 'your roles do not allow this action') => new DomainException('FORBIDDEN', message),
  notFound: (what = 'resource') => new DomainException('NOT_FOUND', `${what} not found`),
  conflict: (code: CodeWithStatus<409>, message: string) => new DomainException(code, message),
  gone: (code: CodeWithStatus<410>, message: string) => new DomainException(code, message),
  payloadTooLarge: (message = 'request body is too large') => new DomainException('PAYLOAD_TOO_LARGE', message),
  unavailable: (message = 'service unavailable') => new DomainException('UNAVAILABLE', message),
};

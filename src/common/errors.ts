/**
 * The one domain exception. Services throw it with a stable machine code; the exception filter
 * turns it into `{statusCode, code, message}`. Messages are written for humans and must never
 * contain a secret.
 */
export class DomainException extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra?: Record<string, unknown>,
  ) {
    super(message);
  }
}

export const Errors = {
  validation: (message: string) => new DomainException(400, 'VALIDATION_FAILED', message),
  unauthenticated: (message = 'authentication required') => new DomainException(401, 'UNAUTHENTICATED', message),
  forbidden: (message = 'your roles do not allow this action') => new DomainException(403, 'FORBIDDEN', message),
  notFound: (what = 'resource') => new DomainException(404, 'NOT_FOUND', `${what} not found`),
  conflict: (code: string, message: string) => new DomainException(409, code, message),
  gone: (code: string, message: string) => new DomainException(410, code, message),
  payloadTooLarge: (message = 'request body is too large') => new DomainException(413, 'PAYLOAD_TOO_LARGE', message),
  unavailable: (message = 'service unavailable') => new DomainException(503, 'UNAVAILABLE', message),
};

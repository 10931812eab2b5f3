import { SetMetadata } from '@nestjs/common';

import { ERROR_CODES, type ErrorCode } from './error-codes';

export { ERROR_CODES };
export type { ErrorCode };

/** What a connector answers when a call on the target fails (src/connectors/connector.errors.ts). */
export const TARGET_FAILURES = [
  'TARGET_UNREACHABLE',
  'TARGET_AUTH_FAILED',
  'TARGET_HOST_KEY_MISMATCH',
  'TARGET_HOST_KEY_UNPINNED',
  'TARGET_IDENTITY_UNVERIFIED',
  'TARGET_TIMEOUT',
  'TARGET_INVALID_NAME',
  'TARGET_UNSUPPORTED',
  'TARGET_ERROR',
] as const satisfies readonly ErrorCode[];

/** Why an approver's decision is refused, besides the request's own not-pending code. */
export const DECISION_REFUSALS = ['SELF_APPROVAL', 'EXPIRED', 'REQUEST_CHANGED', 'ALREADY_DECIDED'] as const satisfies readonly ErrorCode[];

export const API_ERRORS = 'vault:openapi:errors';

/**
 * The domain codes a route can answer besides the ones every route of its kind can (validation, authentication,
 * roles, MFA, not-found on `:id` routes, server errors), which the document adds from the route's metadata.
 */
export const ApiErrors = (...codes: ErrorCode[]) => SetMetadata(API_ERRORS, codes);

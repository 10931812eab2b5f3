import { DomainException } from '../common/errors';

export type ConnectorErrorCode =
  | 'TARGET_UNREACHABLE'
  | 'TARGET_AUTH_FAILED'
  | 'TARGET_HOST_KEY_MISMATCH'
  | 'TARGET_HOST_KEY_UNPINNED'
  | 'TARGET_IDENTITY_UNVERIFIED'
  | 'TARGET_TIMEOUT'
  | 'TARGET_INVALID_NAME'
  | 'TARGET_UNSUPPORTED'
  | 'TARGET_ERROR';

/** A target-side failure, answered as 502 with a stable code. Its message never holds a secret. */
export class ConnectorError extends DomainException {
  constructor(
    readonly connectorCode: ConnectorErrorCode,
    message: string,
  ) {
    super(connectorCode, message);
  }
}

/** Network-level failures: nothing answered at that address. */
const UNREACHABLE = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET', 'EPIPE']);

export function isUnreachable(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return typeof code === 'string' && UNREACHABLE.has(code);
}

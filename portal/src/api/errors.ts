/** An error answer of the vault: `{statusCode, code, message}` (../shared/API.md), or a network failure. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** The body's other fields (e.g. `presentedHostKeySha256`, `refused`, `retryAfterSeconds`); never a secret (API.md). */
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** The step-up code was missing, wrong or already used: the prompt should ask again. */
  get isMfa(): boolean {
    return this.code === 'MFA_REQUIRED' || this.code === 'MFA_INVALID' || this.code === 'MFA_REPLAYED';
  }
}

/** Builds an ApiError from an answer that is not 2xx; a body that is not the vault's error shape gets a generic code. */
export async function errorFrom(response: Response): Promise<ApiError> {
  let body: unknown;
  try {
    body = await response.clone().json();
  } catch {
    body = undefined;
  }
  const b = body && typeof body === 'object' && !Array.isArray(body) ? (body as Record<string, unknown>) : {};
  const { statusCode: _status, code: rawCode, message: rawMessage, ...details } = b;
  const code = typeof rawCode === 'string' ? rawCode : `HTTP_${response.status}`;
  const message = typeof rawMessage === 'string' ? rawMessage : response.statusText || 'the vault answered with an error';
  return new ApiError(response.status, code, message, details);
}

export const networkError = () => new ApiError(0, 'NETWORK', 'the vault cannot be reached; check your connection and try again');

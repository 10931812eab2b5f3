import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';

/** What a step-up assertion is bound to: the request it may be used for. */
export interface StepUpAction {
  /** POST, PUT, PATCH or DELETE. */
  method: string;
  /** The request path as sent, `/v1/…`, without a query. */
  path: string;
  /** The JSON body as sent (absent: `{}`). */
  body?: unknown;
}

/**
 * The binding of a step-up challenge: SHA-256 (hex) of the canonical JSON (RFC 8785) of `{method, path, body}`. The
 * MFA guard computes it from the request as received (before validation), the challenge endpoint from what the client
 * said it will send: an assertion over a challenge for another action (path, body, method) does not verify. The table
 * keeps only a keyed HMAC of it (WebAuthnService: a body may hold a password).
 */
export function actionDigest(action: StepUpAction): string {
  const text = canonicalize({ method: action.method.toUpperCase(), path: action.path, body: action.body ?? {} }) ?? '';
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

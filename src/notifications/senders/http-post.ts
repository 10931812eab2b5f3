import { DeliveryError } from './sender';

const USER_AGENT = 'pam-vault-notifications';

/** Whether the deadline or the caller ended the request (the deliverer's signal is a timeout). */
export const isAbort = (e: unknown): boolean => e instanceof Error && (e.name === 'TimeoutError' || e.name === 'AbortError');

/** A URL the channel holds, checked before anything is sent; the error never repeats it (its path or query may be a token). */
export function channelUrl(value: string | undefined | null, what: string): URL {
  let url: URL | undefined;
  try {
    url = value ? new URL(value) : undefined;
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:') || url.username || url.password) {
    throw new DeliveryError('CHANNEL_MISCONFIGURED', `the channel's ${what} is not an http(s) URL`, false);
  }
  return url;
}

/**
 * POSTs a JSON body to a webhook (generic, Slack or Teams) and resolves on a 2xx answer. Redirects are not followed
 * (a 3xx is a refusal); 408, 429 and 5xx, a network failure and the deadline are worth a retry, other 4xx are not.
 * Codes: WEBHOOK_HTTP_<status>, WEBHOOK_UNREACHABLE, TIMEOUT. No message carries the URL, the body or the answer.
 */
export async function postJson(url: URL, body: string, headers: Record<string, string>, signal: AbortSignal, what: string): Promise<void> {
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      body,
      headers: { 'Content-Type': 'application/json', 'User-Agent': USER_AGENT, ...headers },
      redirect: 'manual',
      signal,
    });
  } catch (e) {
    if (signal.aborted || isAbort(e)) throw new DeliveryError('TIMEOUT', `the ${what} did not answer in time`, true);
    throw new DeliveryError('WEBHOOK_UNREACHABLE', `the ${what} could not be reached${networkReason(e)}`, true);
  }
  // the answer's body is never read into anything: dropped so the connection can be reused or closed
  await res.body?.cancel().catch(() => undefined);
  if (res.status >= 200 && res.status < 300) return;
  const status = res.status;
  const retryable = status === 408 || status === 429 || status >= 500;
  const why = status >= 300 && status < 400 ? ' (a redirect, not followed)' : retryable ? '' : ' (not retried)';
  throw new DeliveryError(`WEBHOOK_HTTP_${status}`, `the ${what} answered HTTP ${status}${why}`, retryable);
}

/** The system error code behind a failed fetch (ECONNREFUSED, ENOTFOUND, …): a constant, never a message. */
function networkReason(e: unknown): string {
  const cause = (e as { cause?: { code?: unknown } } | undefined)?.cause;
  const code = typeof cause?.code === 'string' && /^[A-Z0-9_]{2,40}$/.test(cause.code) ? cause.code : undefined;
  return code ? ` (${code})` : '';
}

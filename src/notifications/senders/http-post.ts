import { request as httpRequest, IncomingMessage, RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import { EgressPolicy, unreachable } from './egress';
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
 * POSTs a JSON body to a webhook (generic, Slack or Teams) and resolves on a 2xx answer. The host is resolved and
 * checked against the egress rule first (EgressPolicy: public addresses only, unless VAULT_NOTIFY_ALLOWED_HOSTS lists
 * it), and the connection goes to that checked address (its `lookup` answers it: no second resolution). Redirects are
 * not followed (a 3xx is a refusal); 408, 429 and 5xx, a network failure and the deadline are worth a retry, other
 * 4xx are not. Codes: WEBHOOK_HTTP_<status>, WEBHOOK_ADDRESS_REFUSED, WEBHOOK_UNREACHABLE (refused, reset, closed,
 * not an HTTP server, no such name: one code, one message), TIMEOUT. No message carries the URL, the body, the
 * answer or the address.
 */
export async function postJson(url: URL, body: string, headers: Record<string, string>, signal: AbortSignal, what: string, egress: EgressPolicy): Promise<void> {
  if (signal.aborted) throw new DeliveryError('TIMEOUT', `the ${what} did not answer in time`, true);
  let pinned: { address: string; family: 4 | 6 };
  try {
    pinned = await egress.vet(url.hostname, what);
  } catch (e) {
    if (signal.aborted) throw new DeliveryError('TIMEOUT', `the ${what} did not answer in time`, true);
    throw e;
  }
  const lookup: LookupFunction = (_host, options, callback) => {
    if ((options as { all?: boolean }).all) (callback as unknown as (e: null, a: Array<{ address: string; family: number }>) => void)(null, [pinned]);
    else callback(null, pinned.address, pinned.family);
  };
  const options: RequestOptions = {
    method: 'POST',
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port || undefined,
    path: `${url.pathname}${url.search}`,
    headers: { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(body)), 'User-Agent': USER_AGENT, Connection: 'close', ...headers },
    // a connection of its own: never one pooled for another address
    agent: false,
    lookup,
    signal,
  };
  let status: number;
  try {
    status = await new Promise<number>((resolve, reject) => {
      const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(options, (res: IncomingMessage) => {
        // the answer's body is never read into anything
        res.destroy();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', (e) => {
        // a parse error (not an HTTP server) leaves the socket open: closed here, so no connection outlives its send
        req.destroy();
        reject(e);
      });
      req.end(body);
    });
  } catch (e) {
    if (signal.aborted || isAbort(e)) throw new DeliveryError('TIMEOUT', `the ${what} did not answer in time`, true);
    throw unreachable(what);
  }
  if (status >= 200 && status < 300) return;
  const retryable = status === 408 || status === 429 || status >= 500;
  const why = status >= 300 && status < 400 ? ' (a redirect, not followed)' : retryable ? '' : ' (not retried)';
  throw new DeliveryError(`WEBHOOK_HTTP_${status}`, `the ${what} answered HTTP ${status}${why}`, retryable);
}

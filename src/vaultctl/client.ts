import { ApiError, CliError, clean, EXIT } from './errors';

export const DEFAULT_URL = 'http://127.0.0.1:8080';
const VERSION = '0.1.0';

/** Where the token came from, to say what to do when the vault refuses it. */
export type TokenSource = { kind: 'env' } | { kind: 'file'; path: string; username: string; expiresAt: string } | { kind: 'none'; why?: string };

export interface RequestOptions {
  body?: unknown;
  query?: Record<string, string | number | boolean | undefined>;
  /** `X-MFA-Code` for step-up actions. */
  mfaCode?: string;
  /** Login: no token needed. */
  anonymous?: boolean;
  /** A file, not JSON: a 2xx answer's bytes as they came (errors are still JSON). */
  raw?: boolean;
}

/** A path segment from user input (an id): encoded, so it cannot change the route. */
export const seg = (value: string) => encodeURIComponent(value);

/** Checks and normalises a vault address: http(s), no trailing slash. */
export function normaliseUrl(raw: string, from: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new CliError(`${from} is not a URL: ${clean(raw)}`, EXIT.USAGE, 'USAGE');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new CliError(`${from} must be an http:// or https:// URL`, EXIT.USAGE, 'USAGE');
  if (u.username || u.password) throw new CliError(`${from} must not contain credentials`, EXIT.USAGE, 'USAGE');
  return u.toString().replace(/\/+$/, '');
}

/** Whether a token sent there crosses the network in clear text. */
export function isPlainHttpToRemote(url: string): boolean {
  const u = new URL(url);
  return u.protocol === 'http:' && !['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname);
}

/** The vault's REST API over fetch: JSON in and out, `{statusCode, code, message}` errors as {@link ApiError}. */
export class VaultClient {
  constructor(
    readonly url: string,
    private readonly token: string | undefined,
    private readonly tokenSource: TokenSource,
    private readonly timeoutMs = 60_000,
  ) {}

  get<T>(path: string, query?: RequestOptions['query']): Promise<T> {
    return this.request<T>('GET', path, { query });
  }

  post<T>(path: string, body?: unknown, mfaCode?: string): Promise<T> {
    return this.request<T>('POST', path, { body: body ?? {}, mfaCode });
  }

  /** A file the vault answers (a session recording): its bytes, unparsed. */
  download(path: string): Promise<Buffer> {
    return this.request<Buffer>('GET', path, { raw: true });
  }

  async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const headers: Record<string, string> = { Accept: opts.raw ? '*/*' : 'application/json', 'User-Agent': `vaultctl/${VERSION}` };
    if (!opts.anonymous) {
      if (!this.token) {
        const why = this.tokenSource.kind === 'none' && this.tokenSource.why ? ` (${this.tokenSource.why})` : '';
        throw new CliError(`UNAUTHENTICATED: not logged in to ${this.url}${why}; run \`vaultctl login\` or set VAULT_TOKEN`, EXIT.UNAUTHENTICATED, 'UNAUTHENTICATED');
      }
      headers.Authorization = `Bearer ${this.token}`;
    }
    if (opts.mfaCode) headers['X-MFA-Code'] = opts.mfaCode;
    if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined && v !== '') qs.set(k, String(v));
    const target = `${this.url}${path}${qs.size ? `?${qs}` : ''}`;

    let res: Response;
    try {
      res = await fetch(target, {
        method,
        headers,
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        signal: AbortSignal.timeout(this.timeoutMs),
        redirect: 'error', // never carry the token (or a code) somewhere else
      });
    } catch (e) {
      throw networkError(this.url, e, this.timeoutMs);
    }
    let bytes: Buffer;
    try {
      bytes = Buffer.from(await res.arrayBuffer());
    } catch (e) {
      throw networkError(this.url, e, this.timeoutMs);
    }
    if (opts.raw && res.ok) return bytes as T;
    const text = bytes.toString('utf8');
    let body: unknown = undefined;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch {
        if (res.ok) throw new CliError(`the vault at ${this.url} answered ${method} ${path} with something that is not JSON (HTTP ${res.status}); is this a vault?`, EXIT.UNEXPECTED, 'BAD_ANSWER');
      }
    }
    if (res.ok) return body as T;
    const err = (body && typeof body === 'object' ? body : {}) as Record<string, unknown>;
    const code = typeof err.code === 'string' ? err.code : res.status === 503 ? 'UNAVAILABLE' : `HTTP_${res.status}`;
    if (typeof err.message !== 'string') err.message = res.statusText || `HTTP ${res.status}`;
    const apiError = new ApiError(res.status, code, err);
    if (code === 'UNAUTHENTICATED') apiError.message += this.sessionHint();
    throw apiError;
  }

  private sessionHint(): string {
    const s = this.tokenSource;
    if (s.kind === 'env') return '\n  the token comes from VAULT_TOKEN: it is wrong, revoked or expired';
    if (s.kind === 'file') {
      const expired = Date.parse(s.expiresAt) <= Date.now();
      return `\n  the session of ${clean(s.username)} in ${s.path} ${expired ? `expired at ${clean(s.expiresAt)}` : 'was ended (expired, revoked or the user disabled)'}`;
    }
    return '';
  }
}

function networkError(url: string, e: unknown, timeoutMs: number): CliError {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  if (err?.name === 'TimeoutError' || err?.name === 'AbortError') {
    return new CliError(`UNREACHABLE: no answer from the vault at ${url} within ${Math.round(timeoutMs / 1000)} s`, EXIT.UNAVAILABLE, 'UNREACHABLE');
  }
  const why = err?.cause?.code ?? err?.cause?.message ?? err?.message ?? 'unknown error';
  const hint = err?.cause?.code === 'ECONNREFUSED' ? ' (is the vault running there? set --url or VAULT_ADDR)' : '';
  return new CliError(`UNREACHABLE: cannot reach the vault at ${url}: ${clean(why)}${hint}`, EXIT.UNAVAILABLE, 'UNREACHABLE');
}

/**
 * A real HTTP receiver for the webhook, Slack and Teams senders (node:http on 127.0.0.1 and a free port). It keeps
 * every request (raw body bytes, headers, path) and answers as the test programs it: a status, a delay, or no answer
 * at all, per request in order, by default 200.
 *
 *     const hook = await startWebhookReceiver();
 *     const url = hook.url('/hook');                     // a generic webhook's config.url
 *     const slackUrl = hook.secretUrl();                 // a Slack/Teams URL (a secret: the scan looks for it)
 *     hook.reply({ status: 500 }, { delayMs: 5000 });    // the next two requests: a 500, then an answer too late
 *     const [req] = await hook.waitFor(1);               // or waitFor((r) => r.headers['idempotency-key'] === id)
 *     verifyVaultSignature(secret, req.headers['x-vault-signature'], req.rawBody);
 *     await hook.stop();
 *
 * Every body is recorded for the secret scan (test/support/receivers.ts), without the URL.
 */
import { randomBytes } from 'node:crypto';
import { createServer, IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { recordReceived, recordTestSecret, waitUntil, WaitOptions } from './receivers';

export interface ReceivedRequest {
  seq: number;
  method: string;
  /** Path and query as requested. */
  path: string;
  headers: IncomingHttpHeaders;
  rawBody: Buffer;
  /** The body as text, and parsed when it is JSON (else undefined). */
  body: string;
  json: unknown;
  /** What the receiver answered (null: not yet, or never: a hang, or the client went away first). */
  status: number | null;
  /** The client closed the connection before the answer (a timeout on its side). */
  aborted: boolean;
}

export interface Reply {
  status?: number;
  /** Answer after this long. */
  delayMs?: number;
  /** Never answer (until stop). */
  hang?: boolean;
  headers?: Record<string, string>;
  body?: string;
}

export interface WebhookReceiver {
  port: number;
  /** `http://127.0.0.1:<port><path>`. */
  url(path?: string): string;
  /** A URL whose path holds a random token, as Slack's and Teams' do; recorded as a secret for the scan. */
  secretUrl(prefix?: string): string;
  readonly requests: ReceivedRequest[];
  /** Answers for the next requests, in order (then the default). */
  reply(...replies: Reply[]): void;
  /** The answer when none is queued (initially 200). */
  setDefault(reply: Reply): void;
  /** Per request, before the queue: return a Reply to answer with it. */
  respond?: (req: ReceivedRequest) => Reply | undefined;
  /** As SmtpServer.waitFor: `n` requests (that `match`), or one that matches; default timeout 15 s. */
  waitFor(what: number | ((r: ReceivedRequest) => boolean), o?: number | WaitOptions<ReceivedRequest>): Promise<ReceivedRequest[]>;
  /** Forgets the requests and the queued answers. */
  reset(): void;
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';
const MAX_BODY = 1024 * 1024;

export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const requests: ReceivedRequest[] = [];
  const queue: Reply[] = [];
  let fallback: Reply = { status: 200 };
  const waiters = new Set<() => void>();
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let seq = 0;

  const answer = (req: ReceivedRequest, res: ServerResponse, r: Reply) => {
    if (r.hang) return;
    const send = () => {
      if (res.destroyed || req.aborted) return;
      req.status = r.status ?? 200;
      res.writeHead(req.status, { 'Content-Type': 'text/plain', ...r.headers });
      res.end(r.body ?? (req.status < 300 ? 'ok' : 'no'));
    };
    if (!r.delayMs) return send();
    const timer = setTimeout(() => {
      timers.delete(timer);
      send();
    }, r.delayMs);
    timers.add(timer);
  };

  const receiver: WebhookReceiver = {
    port: 0,
    url: (path = '/hook') => `http://${HOST}:${receiver.port}${path}`,
    secretUrl: (prefix = '/services') => {
      const url = receiver.url(`${prefix}/T${randomBytes(4).toString('hex')}/B${randomBytes(4).toString('hex')}/${randomBytes(18).toString('base64url')}`);
      recordTestSecret(url, 'test incoming-webhook URL');
      return url;
    },
    requests,
    reply: (...replies) => void queue.push(...replies),
    setDefault: (r) => void (fallback = r),
    waitFor: (what, o) => waitUntil(requests, waiters, what, o, (want, ms) => `the webhook receiver did not get ${want} within ${ms} ms (got ${requests.length})`),
    reset: () => {
      requests.length = 0;
      queue.length = 0;
    },
    stop: async () => {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  const server = createServer((incoming: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    let size = 0;
    incoming.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY) chunks.push(c);
    });
    incoming.on('end', () => {
      const rawBody = Buffer.concat(chunks);
      const body = rawBody.toString('utf8');
      let json: unknown;
      try {
        json = JSON.parse(body);
      } catch {
        json = undefined;
      }
      const req: ReceivedRequest = { seq: ++seq, method: incoming.method ?? '', path: incoming.url ?? '', headers: incoming.headers, rawBody, body, json, status: null, aborted: false };
      res.once('close', () => {
        if (!res.writableEnded) req.aborted = true;
      });
      const { host: _host, ...headers } = incoming.headers;
      recordReceived('webhook', { seq: req.seq, method: req.method, headers, body });
      requests.push(req);
      for (const w of waiters) w();
      answer(req, res, receiver.respond?.(req) ?? queue.shift() ?? fallback);
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => resolve());
  });
  receiver.port = (server.address() as { port: number }).port;
  return receiver;
}

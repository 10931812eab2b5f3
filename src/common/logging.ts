import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Params } from 'nestjs-pino';
import type { DestinationStream } from 'pino';
import type { Options } from 'pino-http';
import type { AppConfig } from '../config/config';

/**
 * Structured JSON logs. Credentials that could reach a log line are censored by path; request bodies are
 * never logged at all.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-mfa-code"]',
  'req.headers["x-mfa-assertion"]',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  '*.password',
  '*.privateKey',
  '*.passphrase',
  '*.secret',
  '*.token',
  '*.accessToken',
  'password',
  'secret',
  'token',
];

/** Where log lines go: stdout unless redirected (the tests' secret scan keeps them in a file). */
let destination: DestinationStream | undefined;

/** Where the logs of vaults built from now on go (undefined: stdout). */
export function logDestination(): DestinationStream | undefined {
  return destination;
}

/** Sends the logs of every vault built from now on in this process to `stream` (undefined: back to stdout). */
export function redirectLogs(stream: DestinationStream | undefined): void {
  destination = stream;
}

export function loggerParams(config: AppConfig): Params {
  const params: { pinoHttp: Options } = {
    pinoHttp: {
      level: config.logLevel,
      redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
      genReqId: (req: IncomingMessage) => {
        const given = req.headers['x-request-id'];
        return typeof given === 'string' && /^[A-Za-z0-9._-]{1,64}$/.test(given) ? given : randomUUID();
      },
      customProps: () => ({ service: 'pam-vault' }),
      serializers: {
        // the path only: a query string is client-controlled and could carry anything
        req: (req: { id: string; method: string; url: string }) => ({ id: req.id, method: req.method, path: req.url.split('?')[0] }),
        // the status only: response headers are never logged (no ETag, content digest or cookie of an answer)
        res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
      },
      autoLogging: { ignore: (req: IncomingMessage) => (req.url ?? '').startsWith('/health') },
    },
  };
  return destination ? { pinoHttp: [params.pinoHttp, destination] } : params;
}

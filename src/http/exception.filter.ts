import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger, Optional } from '@nestjs/common';
import type { Response } from 'express';
import { MetricsService } from '../metrics/metrics.service';
import { DomainException } from '../common/errors';

/** How long a client should wait before trying again while the vault's database cannot be reached. */
export const DATABASE_RETRY_AFTER_SECONDS = 5;

/** Codes for HTTP errors raised outside our services (router, body parser, Nest itself). */
const HTTP_CODES: Record<number, string> = {
  400: 'VALIDATION_FAILED',
  401: 'UNAUTHENTICATED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  429: 'THROTTLED',
  503: 'UNAVAILABLE',
};

/**
 * The one exception filter: domain exceptions keep their code; known HTTP errors get a stable code and a
 * generic message (the body parser's messages can quote the request, so they are not passed on);
 * everything else is a bare 500 with no detail. Only the error's class and code are logged, never its text,
 * which might hold a secret from a driver or a connector.
 */
@Catch()
export class AllExceptionsFilter implements ExceptionFilter {
  private readonly logger = new Logger('Errors');

  constructor(@Optional() private readonly metrics?: MetricsService) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const res = host.switchToHttp().getResponse<Response>();
    if (isDatabaseUnavailable(exception)) {
      // the vault's own database is down or unreachable, or no pool connection came free in time (busy, or the server
      // does not answer new connections): nothing was done; the client may retry (INVARIANT 17: no 500)
      this.metrics?.databaseUnavailable.inc();
      const busy = isPoolWaitTimeout(exception);
      this.logger.warn(
        { err: { type: (exception as Error)?.name, code: errorCode(exception) } },
        busy ? 'no database connection came free in time (pool busy or database unavailable): answered 503' : 'the database cannot be reached: answered 503',
      );
      if (res.headersSent) return;
      res.setHeader('Retry-After', String(DATABASE_RETRY_AFTER_SECONDS));
      const message = busy ? "the vault's database is busy or unavailable; try again shortly" : 'the vault cannot reach its database; try again shortly';
      res.status(503).json({ statusCode: 503, code: 'UNAVAILABLE', message, retryAfterSeconds: DATABASE_RETRY_AFTER_SECONDS });
      return;
    }
    const body = this.toBody(exception);
    if (body.statusCode >= 500) {
      const e = exception as { name?: string; code?: unknown };
      this.logger.error({ err: { type: e?.name ?? typeof exception, code: typeof e?.code === 'string' ? e.code : undefined } }, 'request failed');
    }
    if (res.headersSent) return;
    res.status(body.statusCode).json(body);
  }

  private toBody(exception: unknown): { statusCode: number; code: string; message: string } & Record<string, unknown> {
    if (exception instanceof DomainException) {
      return { statusCode: exception.status, code: exception.code, message: exception.message, ...exception.extra };
    }
    const status = httpStatusOf(exception);
    if (status && status < 500 && HTTP_CODES[status]) {
      return { statusCode: status, code: HTTP_CODES[status], message: genericMessage(status) };
    }
    if (status === 503) return { statusCode: 503, code: 'UNAVAILABLE', message: 'service unavailable' };
    return { statusCode: 500, code: 'INTERNAL', message: 'internal error' };
  }
}

function httpStatusOf(exception: unknown): number | undefined {
  if (exception instanceof HttpException) return exception.getStatus();
  // body-parser / http-errors style errors
  const e = exception as { status?: unknown; statusCode?: unknown; expose?: unknown };
  const status = typeof e?.status === 'number' ? e.status : typeof e?.statusCode === 'number' ? e.statusCode : undefined;
  return status && status >= 400 && status < 600 ? status : undefined;
}

function genericMessage(status: number): string {
  switch (status) {
    case 400:
      return 'malformed request';
    case 404:
      return 'no such route';
    case 413:
      return 'request body is too large';
    case 415:
      return 'unsupported content type';
    default:
      return HTTP_CODES[status].toLowerCase().replace(/_/g, ' ');
  }
}

/** PostgreSQL SQLSTATEs that mean "the server is not there for us right now" (class 08, shutdown, too many connections). */
const UNAVAILABLE_SQLSTATE = /^(08...|57P0[1-3]|53300)$/;
/** Socket-level failures on the way to the database, and what pg / pg-pool say when the server went away. */
const UNAVAILABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);
const UNAVAILABLE_MESSAGES = /^(Connection terminated( unexpectedly| due to connection timeout)?|timeout exceeded when trying to connect|Client has encountered a connection error and is not queryable|Client was closed and is not queryable|terminating connection due to administrator command)$/;

/** pg-pool's answer when no connection came free within connectionTimeoutMillis: a busy pool as well as an outage. */
const POOL_WAIT_TIMEOUT = 'timeout exceeded when trying to connect';

function isPoolWaitTimeout(e: unknown, depth = 0): boolean {
  if (depth > 3 || e === null || typeof e !== 'object') return false;
  if ((e as { message?: unknown }).message === POOL_WAIT_TIMEOUT) return true;
  const w = e as { driverError?: unknown; cause?: unknown };
  return isPoolWaitTimeout(w.driverError, depth + 1) || isPoolWaitTimeout(w.cause, depth + 1);
}

function errorCode(e: unknown): string | undefined {
  const code = (e as { code?: unknown })?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Whether a failure means the vault's database cannot be reached (rather than a bug or a bad statement): the error,
 * TypeORM's wrapped driver error, or a cause, a few levels deep. Connector failures are DomainExceptions and never
 * get here, so a target that is down is not mistaken for the vault's database.
 */
export function isDatabaseUnavailable(exception: unknown, depth = 0): boolean {
  if (depth > 3 || exception === null || typeof exception !== 'object' || exception instanceof DomainException || exception instanceof HttpException) return false;
  const code = errorCode(exception);
  if (code && (UNAVAILABLE_SQLSTATE.test(code) || UNAVAILABLE_CODES.has(code))) return true;
  const message = (exception as { message?: unknown }).message;
  if (typeof message === 'string' && UNAVAILABLE_MESSAGES.test(message)) return true;
  const e = exception as { driverError?: unknown; cause?: unknown };
  return isDatabaseUnavailable(e.driverError, depth + 1) || isDatabaseUnavailable(e.cause, depth + 1);
}

import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import type { Response } from 'express';
import { DomainException } from './errors';

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

  catch(exception: unknown, host: ArgumentsHost): void {
    const res = host.switchToHttp().getResponse<Response>();
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

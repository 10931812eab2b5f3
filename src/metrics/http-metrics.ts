import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { MetricsService } from './metrics.service';

/** Methods the API answers; anything else is counted as OTHER (a label value the client cannot choose). */
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/** The status of a request whose client went away before the answer was sent. */
export const CLIENT_CLOSED = 499;

/** The label for requests no controller route matched (404s, body-parser rejections, middleware-only paths). */
export const UNMATCHED_ROUTE = 'unmatched';

/**
 * Request latency for every HTTP request, timed from the moment the HTTP server hands it over (a listener
 * placed ahead of Express): requests refused by the body parser, the router or a guard count too, which
 * neither an interceptor nor a Nest middleware (mounted after the body parser) would see. The route label is
 * the pattern of the controller route Express matched (`/v1/checkouts/:id/checkin`), read when the response
 * is done; a request that reached no controller route is `unmatched`. The requested path itself (ids, user
 * input) never becomes a label value.
 */
@Injectable()
export class HttpMetrics implements OnApplicationBootstrap {
  constructor(
    private readonly metrics: MetricsService,
    private readonly adapterHost: HttpAdapterHost,
  ) {}

  onApplicationBootstrap(): void {
    const server = this.adapterHost.httpAdapter?.getHttpServer() as Server | undefined;
    server?.prependListener('request', (req: IncomingMessage, res: ServerResponse) => this.track(req, res));
  }

  track(req: IncomingMessage, res: ServerResponse): void {
    const start = process.hrtime.bigint();
    let done = false;
    const record = (status: number) => {
      if (done) return;
      done = true;
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      this.metrics.observeRequest(METHODS.has(req.method ?? '') ? (req.method as string) : 'OTHER', routePattern(req), status, seconds);
    };
    res.once('finish', () => record(res.statusCode));
    // closed before the answer was sent: the client went away (499, as nginx counts it)
    res.once('close', () => record(res.writableFinished ? res.statusCode : CLIENT_CLOSED));
  }
}

/**
 * `baseUrl + route.path` of the route Express matched last. Nest mounts middleware (the request logger) as
 * wildcard routes (`/{*path}`) ahead of the controllers, so a request that reached no controller route may
 * still have one of those as `req.route`: a wildcard pattern counts as unmatched (no controller route here
 * has one).
 */
export function routePattern(req: IncomingMessage): string {
  const { route, baseUrl } = req as IncomingMessage & { route?: { path?: unknown }; baseUrl?: string };
  if (!route || typeof route.path !== 'string' || route.path.includes('*')) return UNMATCHED_ROUTE;
  return `${baseUrl ?? ''}${route.path}` || '/';
}

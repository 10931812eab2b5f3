import { existsSync, readFileSync } from 'node:fs';
import { STATUS_CODES } from 'node:http';
import { dirname, join } from 'node:path';
import { INestApplication, ParseUUIDPipe } from '@nestjs/common';
import { RouteParamtypes } from '@nestjs/common/enums/route-paramtypes.enum';
import { METHOD_METADATA, PARAMTYPES_METADATA, ROUTE_ARGS_METADATA } from '@nestjs/common/constants';
import { ModulesContainer, Reflector } from '@nestjs/core';
import { NestExpressApplication } from '@nestjs/platform-express';
import { DocumentBuilder, OpenAPIObject, SwaggerModule } from '@nestjs/swagger';
import type { OperationObject, ParameterObject, ReferenceObject, ResponseObject, SchemaObject } from '@nestjs/swagger';
import { ALLOW_WITHOUT_MFA, IS_PUBLIC, REQUIRES_MFA, ROLES_KEY } from '../common/auth.decorators';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from '../common/pagination';
import type { Role } from '../common/actor';
import { API_ANSWER, ApiAnswerMeta } from '../common/api-responses';
import { DtoClass, DtoSchemas } from './dto-schema';
import { API_ERRORS, ERROR_CODES, ErrorCode } from './error-codes';
import { ResponseSchemas } from './response-schema';

/** Where the UI is served; the JSON document is at `${DOCS_PATH}-json`. */
export const DOCS_PATH = 'docs';
export const MFA_HEADER = 'X-MFA-Code';
export const MFA_ASSERTION_HEADER = 'X-MFA-Assertion';
const BEARER = 'bearer';
/** The web portal's browser session (src/identity/session-cookie.ts): an alternative to the bearer header. */
const COOKIE = 'cookie';

/** The keyset pagination every list endpoint shares (src/common/pagination.ts). */
const PAGE_PARAMETERS: Record<string, Partial<ParameterObject>> = {
  limit: { description: `Page size: ${DEFAULT_PAGE_SIZE} by default, at most ${MAX_PAGE_SIZE}.` },
  cursor: { description: 'The `nextCursor` of the previous page (opaque); absent for the first page.' },
};

/** What the guards read from a route's decorators, read here the same way (handler first, then its controller). */
export interface RouteAccess {
  isPublic: boolean;
  /** `@Roles(...)`; undefined when the route declares none (then it is refused to everyone but a @Public route). */
  roles?: Role[];
  requiresMfa: boolean;
  allowWithoutMfa: boolean;
}

/** The extensions this module adds to each operation. */
export interface VaultOperation extends OperationObject {
  'x-public': boolean;
  'x-roles'?: Role[];
  'x-mfa-required': boolean;
  'x-allowed-before-mfa-enrollment': boolean;
  'x-error-codes': ErrorCode[];
}

interface RouteHandler {
  controller: DtoClass;
  method: string;
  handler: (...args: unknown[]) => unknown;
}

export function routeAccess(reflector: Reflector, controller: DtoClass, handler: RouteHandler['handler']): RouteAccess {
  const targets = [handler, controller as new () => unknown];
  return {
    isPublic: reflector.getAllAndOverride<boolean | undefined>(IS_PUBLIC, targets) === true,
    roles: reflector.getAllAndOverride<Role[] | undefined>(ROLES_KEY, targets),
    requiresMfa: reflector.getAllAndOverride<boolean | undefined>(REQUIRES_MFA, targets) === true,
    allowWithoutMfa: reflector.getAllAndOverride<boolean | undefined>(ALLOW_WITHOUT_MFA, targets) === true,
  };
}

/**
 * The OpenAPI document of the running application: Swagger's scan of the controllers, then, per operation, what the
 * guards enforce (roles, public, step-up MFA header, enrollment), every error code the route can answer (generic
 * ones from that metadata, domain ones from `@ApiErrors`, all described by src/openapi/error-codes.ts) and request
 * bodies and query parameters from the class-validator DTOs, and the success answer from the route's `@ApiAnswer` schema.
 */
export function buildOpenApiDocument(app: INestApplication): OpenAPIObject {
  const pkg = packageInfo();
  const config = new DocumentBuilder()
    .setTitle(pkg.name)
    .setVersion(pkg.version)
    .setDescription(describeApi(pkg.description))
    .addBearerAuth({ type: 'http', scheme: 'bearer', bearerFormat: 'opaque', description: 'A login token (POST /v1/auth/login) or a service token (POST /v1/service-tokens).' }, BEARER)
    .addCookieAuth(
      'vault_session',
      {
        type: 'apiKey',
        in: 'cookie',
        description:
          'The web portal\'s browser session (POST /v1/auth/session; `__Host-vault_session` over HTTPS). A request that changes something sends `X-CSRF-Token`; a request another site\'s page makes is refused (403 CSRF_FAILED). A bearer header wins over the cookie.',
      },
      COOKIE,
    )
    .build();
  const document = SwaggerModule.createDocument(app, config, { operationIdFactory: (controller, method) => `${controller}_${method}` });
  const handlers = routeHandlers(app);
  const reflector = new Reflector();
  const dtos = new DtoSchemas();
  const answers = new ResponseSchemas();
  for (const [path, item] of Object.entries(document.paths)) {
    for (const verb of ['get', 'put', 'post', 'delete', 'patch', 'options', 'head'] as const) {
      const operation = item[verb];
      if (!operation) continue;
      const route = operation.operationId ? handlers.get(operation.operationId) : undefined;
      if (!route) throw new Error(`OpenAPI: no controller method for ${verb.toUpperCase()} ${path} (operationId ${operation.operationId})`);
      item[verb] = describeOperation(operation, path, route, routeAccess(reflector, route.controller, route.handler), reflector, dtos, answers);
    }
  }
  document.components = {
    ...document.components,
    schemas: { ...document.components?.schemas, ...dtos.schemas, ...answers.schemas, Error: errorSchema() },
  };
  const clash = Object.keys(dtos.schemas).filter((name) => name in answers.schemas || name === 'Error');
  if (clash.length) throw new Error(`OpenAPI: request and response schemas share the names ${clash.join(', ')}: rename one`);
  return document;
}

/** Serves the UI at `/docs` and the document at `/docs-json`, public (outside the guards); call before `app.init()`. */
export function setupOpenApi(app: NestExpressApplication): OpenAPIObject {
  const document = buildOpenApiDocument(app);
  SwaggerModule.setup(DOCS_PATH, app, document, {
    raw: ['json'],
    jsonDocumentUrl: `${DOCS_PATH}-json`,
    customSiteTitle: `${document.info.title} API`,
    swaggerOptions: { tagsSorter: 'alpha', docExpansion: 'none' },
  });
  return document;
}

function describeOperation(
  operation: OperationObject,
  path: string,
  route: RouteHandler,
  access: RouteAccess,
  reflector: Reflector,
  dtos: DtoSchemas,
  answers: ResponseSchemas,
): VaultOperation {
  const args = routeArguments(route);
  const lines: string[] = [];
  if (operation.description) lines.push(operation.description, '');
  if (access.isPublic) lines.push('**Access:** public, no token.');
  else if (access.roles?.length) lines.push(`**Roles:** ${access.roles.map((r) => `\`${r}\``).join(', ')} (a bearer token holding any one of them).`);
  else lines.push('**Access:** no role may call this route (it declares none).');
  if (access.requiresMfa) {
    lines.push(
      `**Step-up MFA:** a person sends a fresh TOTP code in \`${MFA_HEADER}\`, or a security key's assertion in \`${MFA_ASSERTION_HEADER}\` over a challenge from POST /v1/me/webauthn/step-up bound to this request (method, path, body); each is accepted once; service tokens are refused.`,
    );
  }
  if (!access.isPublic && access.allowWithoutMfa) lines.push('Allowed before the user has enrolled TOTP.');

  // parameters: path ids (UUIDs where the route parses them), the query DTO, the MFA header
  const parameters: ParameterObject[] = [];
  for (const p of (operation.parameters ?? []) as ParameterObject[]) {
    if (p.in === 'query' && args.query) continue;
    if (p.in === 'path' && args.uuidParams.has(p.name)) parameters.push({ ...p, description: p.description ?? 'UUID', schema: { type: 'string', format: 'uuid' } });
    else parameters.push(p);
  }
  if (args.query) parameters.push(...dtos.queryParameters(args.query).map((p) => ({ ...p, ...PAGE_PARAMETERS[p.name] })));
  if (access.requiresMfa) {
    parameters.push(
      {
        name: MFA_HEADER,
        in: 'header',
        required: false,
        description: `The current 6-digit TOTP code of the caller (step-up MFA; one of it and ${MFA_ASSERTION_HEADER} is required). Accepted once per user: a later request with the same or an older time step is refused (MFA_REPLAYED).`,
        schema: { type: 'string', pattern: '^\\d{6}$' },
      },
      {
        name: MFA_ASSERTION_HEADER,
        in: 'header',
        required: false,
        description: `A security key's answer (base64url of the AuthenticationResponseJSON) to a challenge from POST /v1/me/webauthn/step-up made for exactly this method, path and body (instead of ${MFA_HEADER}). Its challenge is used once (MFA_REPLAYED).`,
        schema: { type: 'string', pattern: '^[A-Za-z0-9_-]+$' },
      },
    );
  }

  const codes = new Set<ErrorCode>(['VALIDATION_FAILED', 'INTERNAL']);
  if (args.body) {
    codes.add('PAYLOAD_TOO_LARGE');
    codes.add('UNSUPPORTED_MEDIA_TYPE');
  }
  if (!access.isPublic) {
    codes.add('UNAUTHENTICATED');
    codes.add('FORBIDDEN');
    codes.add('CSRF_FAILED'); // by cookie: a change without X-CSRF-Token, or any request from another site's page
    if (!access.allowWithoutMfa) codes.add('MFA_ENROLLMENT_REQUIRED');
  }
  if (access.requiresMfa) for (const c of ['MFA_REQUIRED', 'MFA_INVALID', 'MFA_REPLAYED', 'THROTTLED'] as const) codes.add(c);
  if (/\{[^}]+\}/.test(path)) codes.add('NOT_FOUND');
  for (const c of reflector.getAllAndMerge<ErrorCode[]>(API_ERRORS, [route.handler, route.controller as new () => unknown])) codes.add(c);
  const ordered = (Object.keys(ERROR_CODES) as ErrorCode[]).filter((c) => codes.has(c));

  const responses: Record<string, ResponseObject | ReferenceObject> = {};
  for (const [status, response] of Object.entries(operation.responses)) {
    if (response && !('$ref' in response) && !response.description) responses[status] = { ...response, description: STATUS_CODES[Number(status)] ?? '' };
    else if (response) responses[status] = response;
  }
  const answer = Reflect.getMetadata(API_ANSWER, route.handler) as ApiAnswerMeta | undefined;
  const success = Object.keys(responses).find((status) => /^2\d\d$/.test(status));
  if (answer && success && success !== '204') {
    responses[success] = { ...responses[success], content: { [answer.contentType]: { schema: answers.schema(answer.schema) } } };
  }
  for (const status of [...new Set(ordered.map((c) => ERROR_CODES[c].status))].sort((a, b) => a - b)) {
    responses[String(status)] = errorResponse(status, ordered.filter((c) => ERROR_CODES[c].status === status));
  }

  const out: VaultOperation = {
    ...operation,
    description: lines.join('\n'),
    parameters,
    responses,
    security: access.isPublic ? [] : [{ [BEARER]: [] }, { [COOKIE]: [] }],
    'x-public': access.isPublic,
    'x-mfa-required': access.requiresMfa,
    'x-allowed-before-mfa-enrollment': access.isPublic || access.allowWithoutMfa,
    'x-error-codes': ordered,
  };
  if (!access.isPublic) out['x-roles'] = [...(access.roles ?? [])];
  if (args.body) out.requestBody = { required: true, content: { 'application/json': { schema: dtos.ref(args.body) } } };
  else delete out.requestBody;
  return out;
}

function errorResponse(status: number, codes: ErrorCode[]): ResponseObject {
  return {
    description: [`${STATUS_CODES[status] ?? 'Error'}: ${codes.join(', ')}`, '', ...codes.map((c) => `- \`${c}\`: ${ERROR_CODES[c].description}`)].join('\n'),
    content: {
      'application/json': {
        schema: {
          allOf: [
            { $ref: '#/components/schemas/Error' },
            { type: 'object', properties: { statusCode: { type: 'integer', enum: [status] }, code: { type: 'string', enum: codes } } },
          ],
        },
        example: { statusCode: status, code: codes[0], message: ERROR_CODES[codes[0]].description },
      },
    },
  };
}

function errorSchema(): SchemaObject {
  return {
    type: 'object',
    description: 'Every error answer. `code` is stable (the list is in each operation\'s responses); `message` is for people and never holds a secret. Some codes add fields (e.g. `retryAfterSeconds`, `nextCodeAt`, `maxTtlSeconds`).',
    required: ['statusCode', 'code', 'message'],
    properties: {
      statusCode: { type: 'integer', minimum: 400, maximum: 599 },
      code: { type: 'string', enum: Object.keys(ERROR_CODES) },
      message: { type: 'string' },
    },
    additionalProperties: true,
  };
}

/** Body and query DTO classes and the path parameters parsed as UUIDs, from the handler's parameter decorators. */
function routeArguments(route: RouteHandler): { body?: DtoClass; query?: DtoClass; uuidParams: Set<string> } {
  const meta = (Reflect.getMetadata(ROUTE_ARGS_METADATA, route.controller, route.method) ?? {}) as Record<string, { index: number; data?: unknown; pipes?: unknown[] }>;
  const types = (Reflect.getMetadata(PARAMTYPES_METADATA, route.controller.prototype, route.method) ?? []) as unknown[];
  const out: { body?: DtoClass; query?: DtoClass; uuidParams: Set<string> } = { uuidParams: new Set() };
  for (const [key, arg] of Object.entries(meta)) {
    const kind = Number(key.split(':')[0]);
    const type = types[arg.index];
    const dto = typeof type === 'function' && ![String, Number, Boolean, Object, Array].includes(type as never) ? (type as DtoClass) : undefined;
    if (kind === RouteParamtypes.BODY && arg.data === undefined && dto) out.body = dto;
    if (kind === RouteParamtypes.QUERY && arg.data === undefined && dto) out.query = dto;
    if (kind === RouteParamtypes.PARAM && typeof arg.data === 'string' && arg.pipes?.some((p) => p instanceof ParseUUIDPipe)) out.uuidParams.add(arg.data);
  }
  return out;
}

/** Every controller method that is a route, by the operationId Swagger gives it (`Controller_method`). */
function routeHandlers(app: INestApplication): Map<string, RouteHandler> {
  const out = new Map<string, RouteHandler>();
  for (const mod of app.get(ModulesContainer).values()) {
    for (const wrapper of mod.controllers.values()) {
      const controller = wrapper.metatype as DtoClass | null;
      if (!controller) continue;
      const proto = controller.prototype as Record<string, unknown>;
      for (const method of Object.getOwnPropertyNames(proto)) {
        const handler = proto[method];
        if (method === 'constructor' || typeof handler !== 'function' || Reflect.getMetadata(METHOD_METADATA, handler) === undefined) continue;
        out.set(`${controller.name}_${method}`, { controller, method, handler: handler as RouteHandler['handler'] });
      }
    }
  }
  return out;
}

function describeApi(summary: string): string {
  return [
    summary,
    '',
    'JSON in and out. Authenticate with `Authorization: Bearer <token>` (a login token or a service token), or from the web portal with its session cookie (plus `X-CSRF-Token` on every change).',
    `Actions marked step-up MFA need header \`${MFA_HEADER}\` with a fresh TOTP code, accepted once per user.`,
    'Every operation lists its roles (`x-roles`), whether it is public (`x-public`), whether it needs the MFA header (`x-mfa-required`) and every error `code` it can answer (`x-error-codes` and its error responses).',
    'Errors are `{statusCode, code, message}` (schema `Error`). Lists take `?limit=&cursor=` and answer `{items, nextCursor}`.',
  ].join('\n');
}

/** name, version and description of the vault's package.json (found from here up, in src/ and in dist/src/). */
function packageInfo(): { name: string; version: string; description: string } {
  for (let dir = __dirname; ; dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string; description?: string };
      if (pkg.name && pkg.version) return { name: pkg.name, version: pkg.version, description: pkg.description ?? '' };
    }
    if (dirname(dir) === dir) return { name: 'pam-vault', version: '0.0.0', description: '' };
  }
}

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { RequestMethod } from '@nestjs/common';
import { METHOD_METADATA, PARAMTYPES_METADATA, PATH_METADATA, ROUTE_ARGS_METADATA } from '@nestjs/common/constants';
import { ModulesContainer } from '@nestjs/core';
import { getMetadataStorage } from 'class-validator';
import { IS_PUBLIC, REQUIRES_MFA, ROLES_KEY } from '../../src/common/auth.decorators';
import { PageQuery } from '../../src/common/pagination';
import { ERROR_CODES } from '../../src/openapi/error-codes';
import { ResponseCheck } from '../support/openapi-check';
import { startTestVault, TestVault } from '../support/vault';
import { registeredRoutes } from '../support/routes';

/**
 * The OpenAPI document served at /docs-json, against the running application: every route the Express router
 * holds is documented (and nothing else), with the access its decorators give it (the same metadata the guards
 * read), its request body and query parameters, and every error code it can answer; and every error code the code
 * base throws is in the table the document is built from; every operation describes its success answer (a response
 * schema, or a 204 without a body); test/support/openapi-check.ts proves those schemas against every answer the suites get.
 */

const SRC = join(__dirname, '../../src');
const MFA_HEADER = 'x-mfa-code';

interface ErrorContent {
  schema?: { $ref?: string; allOf?: Array<{ $ref?: string; properties?: { statusCode?: { enum?: number[] }; code?: { enum?: string[] } } }> };
}
interface Operation {
  operationId?: string;
  description?: string;
  parameters?: Array<{ name: string; in: string; required?: boolean; schema?: { type?: string; $ref?: string } }>;
  requestBody?: { required?: boolean; content?: Record<string, { schema?: { $ref?: string } }> };
  responses: Record<string, { description?: string; content?: Record<string, ErrorContent> }>;
  security?: Array<Record<string, string[]>>;
  'x-public'?: boolean;
  'x-roles'?: string[];
  'x-mfa-required'?: boolean;
  'x-error-codes'?: string[];
}
interface Schema {
  type?: string;
  $ref?: string;
  enum?: unknown[];
  format?: string;
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
}
interface Document {
  openapi: string;
  info: { title: string; version: string };
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Schema>; securitySchemes: Record<string, { type: string; scheme?: string }> };
}

const VERBS = ['get', 'put', 'post', 'delete', 'patch', 'options', 'head'];

/** Swagger UI and its document: served by SwaggerModule itself, not part of the API they describe. */
const isDocsRoute = (route: string) => /^GET \/docs(\/|-json$|$)/.test(route);
/** nestjs-pino's request logging, registered with all() on every path (see role-matrix.e2e-spec.ts). */
const MIDDLEWARE = 'ALL /{*path}';

interface Handler {
  route: string;
  controller: { name: string; prototype: object };
  method: string;
  handler: object;
}

/** Every controller route with its class and method, read from Nest's module container. */
function controllerRoutes(vault: TestVault): Map<string, Handler> {
  const out = new Map<string, Handler>();
  for (const mod of vault.get(ModulesContainer).values()) {
    for (const wrapper of mod.controllers.values()) {
      const controller = wrapper.metatype as unknown as Handler['controller'];
      const base = Reflect.getMetadata(PATH_METADATA, controller) as string;
      const proto = controller.prototype as Record<string, unknown>;
      for (const method of Object.getOwnPropertyNames(proto)) {
        const handler = proto[method] as object;
        if (method === 'constructor' || typeof handler !== 'function' || Reflect.getMetadata(METHOD_METADATA, handler) === undefined) continue;
        const verb = RequestMethod[Reflect.getMetadata(METHOD_METADATA, handler) as number];
        const path = `/${[base, Reflect.getMetadata(PATH_METADATA, handler) as string].filter((p) => p && p !== '/').join('/')}`;
        out.set(`${verb} ${path}`, { route: `${verb} ${path}`, controller, method, handler });
      }
    }
  }
  return out;
}

/** The handler's own decorator metadata, else its controller's (what the guards' getAllAndOverride reads). */
const meta = <T>(key: string, h: Handler): T | undefined => (Reflect.getMetadata(key, h.handler) ?? Reflect.getMetadata(key, h.controller)) as T | undefined;

/** The class of the handler's `@Body()` / `@Query()` argument (RouteParamtypes BODY = 3, QUERY = 4). */
function argumentClass(h: Handler, kind: 3 | 4): (new () => object) | undefined {
  const args = (Reflect.getMetadata(ROUTE_ARGS_METADATA, h.controller, h.method) ?? {}) as Record<string, { index: number; data?: unknown }>;
  const types = (Reflect.getMetadata(PARAMTYPES_METADATA, h.controller.prototype, h.method) ?? []) as Array<new () => object>;
  const arg = Object.entries(args).find(([key, a]) => Number(key.split(':')[0]) === kind && a.data === undefined);
  return arg ? types[arg[1].index] : undefined;
}

/** `/v1/targets/{id}` → `/v1/targets/:id` */
const expressPath = (openApiPath: string) => openApiPath.replace(/\{(\w+)\}/g, ':$1');

/** Every operation of the document as `METHOD /express/path`. */
function documentedRoutes(doc: Document): Map<string, Operation> {
  const out = new Map<string, Operation>();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const verb of VERBS) if (item[verb]) out.set(`${verb.toUpperCase()} ${expressPath(path)}`, item[verb]);
  }
  return out;
}

/** Error codes an operation documents, by status, from its error responses' `code` enums. */
function documentedCodes(op: Operation): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [status, response] of Object.entries(op.responses)) {
    if (Number(status) < 400) continue;
    const parts = response.content?.['application/json']?.schema?.allOf ?? [];
    const codes = parts.flatMap((p) => p.properties?.code?.enum ?? []);
    const refsError = parts.some((p) => p.$ref === '#/components/schemas/Error');
    out.set(status, refsError ? codes : []);
  }
  return out;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return path.endsWith('.ts') && !path.endsWith('.spec.ts') && !path.endsWith('.d.ts') ? [path] : [];
  });
}

/**
 * Every error code the code base can answer with, and the status where the throw site states it:
 * `new DomainException('CODE'`, `Errors.conflict('CODE'` (409), `Errors.gone('CODE'` (410),
 * `new ConnectorError('CODE'`, the `'A' | 'B'` code unions of files that throw (ConnectorErrorCode, the MFA
 * failure codes), the per-kind not-pending code handed to recordDecision, and the exception filter's codes.
 */
function thrownCodes(): Map<string, Array<{ status?: number; where: string }>> {
  const out = new Map<string, Array<{ status?: number; where: string }>>();
  const add = (code: string, file: string, status?: number) => {
    out.set(code, [...(out.get(code) ?? []), { status, where: file.slice(SRC.length + 1) }]);
  };
  for (const file of sourceFiles(SRC)) {
    if (file.startsWith(join(SRC, 'openapi'))) continue; // the table itself, not a throw site
    const text = readFileSync(file, 'utf8');
    // (the status of a DomainException comes from the code's row in the table; the compiler checks the code is there)
    for (const m of text.matchAll(/new\s+DomainException\(\s*'([A-Z][A-Z0-9_]+)'/g)) add(m[1], file);
    for (const m of text.matchAll(/new\s+ConnectorError\(\s*'([A-Z][A-Z0-9_]+)'/g)) add(m[1], file);
    for (const m of text.matchAll(/Errors\.(conflict|gone)\(\s*'([A-Z][A-Z0-9_]+)'/g)) add(m[2], file, m[1] === 'conflict' ? 409 : 410);
    for (const m of text.matchAll(/recordDecision\([^;]*?'([A-Z][A-Z0-9_]+)'\s*\)/g)) add(m[1], file, 409);
    if (/\b(DomainException|ConnectorError)\b/.test(text)) {
      for (const m of text.matchAll(/'([A-Z][A-Z0-9_]{2,})'(?=\s*\|(?!\|))|(?<=(?<!\|)\|\s*)'([A-Z][A-Z0-9_]{2,})'/g)) add(m[1] ?? m[2], file);
    }
    if (file.endsWith(join('http', 'exception.filter.ts'))) {
      for (const m of text.matchAll(/\b(\d{3}): '([A-Z][A-Z0-9_]+)'/g)) add(m[2], file, Number(m[1]));
      for (const m of text.matchAll(/statusCode: (\d{3}), code: '([A-Z][A-Z0-9_]+)'/g)) add(m[2], file, Number(m[1]));
    }
  }
  return out;
}

describe('OpenAPI document at /docs (e2e, real PostgreSQL)', () => {
  let vault: TestVault;
  let doc: Document;
  let operations: Map<string, Operation>;
  let handlers: Map<string, Handler>;

  beforeAll(async () => {
    vault = await startTestVault();
    const res = await vault.http().get('/docs-json').expect(200); // no token: the document is public
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    doc = res.body as Document;
    operations = documentedRoutes(doc);
    handlers = controllerRoutes(vault);
  });
  afterAll(() => vault?.close());

  it('GET /docs answers the Swagger UI (HTML) without a token', async () => {
    const res = await vault.http().get('/docs').expect(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.text).toMatch(/swagger-ui/i);
  });

  it('is an OpenAPI 3 document titled and versioned from package.json, with bearer auth and one Error schema', () => {
    const pkg = JSON.parse(readFileSync(join(__dirname, '../../package.json'), 'utf8')) as { name: string; version: string };
    expect(doc.openapi).toMatch(/^3\./);
    expect(doc.info).toMatchObject({ title: pkg.name, version: pkg.version });
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(doc.components.securitySchemes.cookie).toMatchObject({ type: 'apiKey', in: 'cookie', name: 'vault_session' });
    expect(doc.components.schemas.Error).toMatchObject({ type: 'object', required: ['statusCode', 'code', 'message'] });
    expect(doc.components.schemas.Error.properties).toMatchObject({ statusCode: { type: 'integer' }, code: { type: 'string' }, message: { type: 'string' } });
  });

  it('documents every route the router holds, and nothing it does not', () => {
    const registered = registeredRoutes(vault).filter((r) => r !== MIDDLEWARE && !isDocsRoute(r));
    expect(registeredRoutes(vault).filter(isDocsRoute)).toEqual(expect.arrayContaining(['GET /docs', 'GET /docs-json']));
    const problems: string[] = [];
    for (const r of new Set(registered)) if (!operations.has(r)) problems.push(`route ${r} is registered but missing from the OpenAPI document`);
    for (const r of operations.keys()) if (!registered.includes(r)) problems.push(`the OpenAPI document has ${r}, which is not a registered route`);
    for (const r of operations.keys()) if (!handlers.has(r)) problems.push(`the OpenAPI document has ${r}, which no controller method declares`);
    expect(problems).toEqual([]);
    expect(operations.size).toBeGreaterThanOrEqual(40);
  });

  it("gives each operation its handler's @Roles, @Public and @RequiresMfa: x-roles, security, the X-MFA-Code header", () => {
    const problems: string[] = [];
    for (const [route, op] of operations) {
      const h = handlers.get(route);
      if (!h) continue; // reported above
      const isPublic = meta<boolean>(IS_PUBLIC, h) === true;
      const roles = meta<string[]>(ROLES_KEY, h);
      const mfa = meta<boolean>(REQUIRES_MFA, h) === true;
      const header = (op.parameters ?? []).find((p) => p.in === 'header' && p.name.toLowerCase() === MFA_HEADER);
      const fail = (what: string) => problems.push(`${route}: ${what}`);
      if (op['x-public'] !== isPublic) fail(`x-public is ${String(op['x-public'])}, the handler is ${isPublic ? '' : 'not '}@Public`);
      if (isPublic) {
        if (op.security && op.security.length > 0) fail(`public, yet it has a security requirement ${JSON.stringify(op.security)}`);
        if (op['x-roles'] !== undefined) fail('public, yet it lists x-roles');
        if (!/public/i.test(op.description ?? '')) fail('the description does not say it is public');
      } else {
        if (JSON.stringify(op['x-roles']) !== JSON.stringify(roles ?? [])) fail(`x-roles ${JSON.stringify(op['x-roles'])} ≠ @Roles ${JSON.stringify(roles)}`);
        if (JSON.stringify(op.security) !== JSON.stringify([{ bearer: [] }, { cookie: [] }])) fail(`security ${JSON.stringify(op.security)} is not the bearer scheme or the portal's cookie`);
        for (const r of roles ?? []) if (!(op.description ?? '').includes(`\`${r}\``)) fail(`the description does not name role ${r}`);
      }
      if (op['x-mfa-required'] !== mfa) fail(`x-mfa-required is ${String(op['x-mfa-required'])}, the handler is ${mfa ? '' : 'not '}@RequiresMfa`);
      // one of the two is required: a TOTP code or a security key's assertion (neither header alone is)
      const assertionHeader = (op.parameters ?? []).find((p) => p.in === 'header' && p.name.toLowerCase() === 'x-mfa-assertion');
      if (mfa && !(header?.schema?.type === 'string' && assertionHeader?.schema?.type === 'string')) fail('@RequiresMfa but no X-MFA-Code and X-MFA-Assertion header parameters');
      if (!mfa && (header || assertionHeader)) fail('has an X-MFA-Code or X-MFA-Assertion header parameter but is not @RequiresMfa');
    }
    expect(problems).toEqual([]);
    // the ones the API contract marks MFA, as a cross-check of the metadata walk
    const mfaRoutes = [...operations].filter(([, op]) => op['x-mfa-required']).map(([r]) => r);
    expect(mfaRoutes).toEqual(expect.arrayContaining(['POST /v1/checkouts', 'POST /v1/checkouts/:id/reveal', 'POST /v1/ephemeral-accounts/:id/claim', 'POST /v1/checkouts/:id/approve', 'POST /v1/checkouts/:id/review']));
    // admin actions that weaken protection or move secrets (issue 12): the admin's own step-up code
    expect(mfaRoutes).toEqual(
      expect.arrayContaining([
        'POST /v1/users', 'PATCH /v1/users/:id', 'POST /v1/users/:id/mfa/reset', 'POST /v1/service-tokens', 'DELETE /v1/service-tokens/:id',
        'POST /v1/accounts', 'PATCH /v1/accounts/:id', 'DELETE /v1/accounts/:id', 'POST /v1/targets', 'PATCH /v1/targets/:id',
        'DELETE /v1/targets/:id', 'POST /v1/targets/:id/verify', 'PUT /v1/targets/:id/ephemeral-policy',
        'POST /v1/notification-channels', 'PATCH /v1/notification-channels/:id', 'DELETE /v1/notification-channels/:id', 'POST /v1/notification-channels/:id/test',
        'POST /v1/notification-routes', 'DELETE /v1/notification-routes/:id', 'PATCH /v1/me',
      ]),
    );
  });

  it('documents the error responses of every operation with their stable codes', () => {
    const problems: string[] = [];
    for (const [route, op] of operations) {
      const fail = (what: string) => problems.push(`${route}: ${what}`);
      const byStatus = documentedCodes(op);
      const all = [...byStatus.values()].flat();
      for (const [status, codes] of byStatus) {
        if (codes.length === 0) fail(`error response ${status} does not list its codes (allOf Error + code enum)`);
        for (const c of codes) {
          const entry = (ERROR_CODES as Record<string, { status: number }>)[c];
          if (!entry) fail(`${status} lists ${c}, which is not in src/openapi/error-codes.ts`);
          else if (String(entry.status) !== status) fail(`${c} is documented under ${status}, the table says ${entry.status}`);
        }
      }
      if (JSON.stringify([...(op['x-error-codes'] ?? [])].sort()) !== JSON.stringify([...all].sort())) fail(`x-error-codes ${JSON.stringify(op['x-error-codes'])} ≠ the codes of its responses ${JSON.stringify(all)}`);
      if (!byStatus.get('400')?.includes('VALIDATION_FAILED')) fail('no 400 VALIDATION_FAILED');
      if (!byStatus.get('500')?.includes('INTERNAL')) fail('no 500 INTERNAL');
      if (!op['x-public']) {
        if (!byStatus.get('401')?.includes('UNAUTHENTICATED')) fail('no 401 UNAUTHENTICATED');
        if (!byStatus.get('403')?.includes('FORBIDDEN')) fail('no 403 FORBIDDEN');
        if (!byStatus.get('403')?.includes('CSRF_FAILED')) fail('no 403 CSRF_FAILED (the portal\'s cookie)');
      }
      if (op['x-mfa-required']) {
        for (const c of ['MFA_REQUIRED', 'MFA_INVALID', 'MFA_REPLAYED']) if (!byStatus.get('401')?.includes(c)) fail(`MFA route without 401 ${c}`);
        if (!byStatus.get('429')?.includes('THROTTLED')) fail('MFA route without 429 THROTTLED');
      }
      if (route.includes('/:') && !byStatus.get('404')?.includes('NOT_FOUND')) fail('an :id route without 404 NOT_FOUND');
    }
    expect(problems).toEqual([]);
    // a few domain codes where the API contract promises them
    const codesOf = (route: string) => operations.get(route)?.['x-error-codes'] ?? [];
    expect(codesOf('POST /v1/checkouts')).toEqual(expect.arrayContaining(['ACCOUNT_CHECKED_OUT', 'ACCOUNT_ROTATING', 'TTL_EXCEEDS_POLICY']));
    expect(codesOf('POST /v1/ephemeral-accounts/:id/claim')).toEqual(expect.arrayContaining(['ALREADY_CLAIMED', 'EXPIRED', 'TARGET_UNREACHABLE']));
    expect(codesOf('POST /v1/targets/:id/verify')).toEqual(expect.arrayContaining(['TARGET_UNREACHABLE', 'TARGET_AUTH_FAILED']));
    expect(codesOf('POST /v1/auth/login')).toEqual(expect.arrayContaining(['UNAUTHENTICATED', 'MFA_REQUIRED', 'THROTTLED']));
    expect(codesOf('POST /v1/notification-channels')).toEqual(expect.arrayContaining(['CHANNEL_NAME_TAKEN', 'MFA_REQUIRED']));
    expect(codesOf('PATCH /v1/notification-channels/:id')).toEqual(expect.arrayContaining(['CHANNEL_CONFIG_INVALID', 'CHANNEL_NAME_TAKEN']));
    expect(codesOf('POST /v1/notification-channels/:id/test')).toEqual(expect.arrayContaining(['CHANNEL_DISABLED', 'NOT_FOUND']));
    expect(codesOf('PATCH /v1/me')).toEqual(expect.arrayContaining(['NOTIFICATION_REQUIRED', 'MFA_REQUIRED']));
  });

  it('has every error code thrown in src/ in the error-code table (same status) and on at least one operation', () => {
    const thrown = thrownCodes();
    // the grep must keep finding the throw sites: if these go missing the patterns above need updating
    expect([...thrown.keys()]).toEqual(
      expect.arrayContaining(['VALIDATION_FAILED', 'MFA_REPLAYED', 'ACCOUNT_CHECKED_OUT', 'CHECKOUT_NOT_PENDING', 'REQUEST_NOT_PENDING', 'TARGET_UNREACHABLE', 'ALREADY_CLAIMED', 'INTERNAL']),
    );
    const table = ERROR_CODES as Record<string, { status: number }>;
    const documented = new Set([...operations.values()].flatMap((op) => [...documentedCodes(op).values()].flat()));
    const filterOnly = new Set(['METHOD_NOT_ALLOWED']); // mapped by the exception filter; no route of this API answers 405
    const problems: string[] = [];
    for (const [code, sites] of thrown) {
      const where = [...new Set(sites.map((s) => s.where))].join(', ');
      if (!table[code]) problems.push(`${code} (${where}) is not in src/openapi/error-codes.ts`);
      for (const site of sites) {
        if (table[code] && site.status !== undefined && table[code].status !== site.status) problems.push(`${code}: thrown with ${site.status} in ${site.where}, the table says ${table[code].status}`);
      }
      if (!documented.has(code) && !filterOnly.has(code)) problems.push(`${code} (${where}) is on no operation of the document: add it to the route's @ApiErrors`);
    }
    for (const code of Object.keys(table)) if (!thrown.has(code)) problems.push(`${code} is in the table but nothing in src/ throws it any more`);
    expect(problems).toEqual([]);
  });

  it('gives every @Body() route a request body schema with the DTO fields and types, and list routes limit/cursor', () => {
    const problems: string[] = [];
    const resolve = (s: Schema | undefined): Schema | undefined => (s?.$ref ? doc.components.schemas[s.$ref.replace('#/components/schemas/', '')] : s);
    for (const [route, op] of operations) {
      const h = handlers.get(route);
      if (!h) continue;
      const fail = (what: string) => problems.push(`${route}: ${what}`);
      const body = argumentClass(h, 3);
      if (body) {
        const schema = resolve(op.requestBody?.content?.['application/json']?.schema);
        if (!schema || schema.type !== 'object' || !schema.properties) {
          fail(`@Body() ${body.name} but no object request body schema`);
        } else {
          const fields = [...new Set(getMetadataStorage().getTargetValidationMetadatas(body, '', true, false).map((m) => m.propertyName))].sort();
          if (JSON.stringify(Object.keys(schema.properties).sort()) !== JSON.stringify(fields)) fail(`body fields ${Object.keys(schema.properties)} ≠ ${body.name}'s ${fields}`);
          for (const [name, p] of Object.entries(schema.properties)) if (!p.type && !p.$ref) fail(`body field ${name} has no type`);
        }
      } else if (['POST /v1/users', 'PUT /v1/targets/:id/ephemeral-policy', 'PATCH /v1/accounts/:id'].includes(route)) {
        fail('expected a request body');
      }
      const query = argumentClass(h, 4);
      if (query && query.prototype instanceof PageQuery) {
        const params = new Map((op.parameters ?? []).filter((p) => p.in === 'query').map((p) => [p.name, p]));
        if (params.get('limit')?.schema?.type !== 'integer') fail('a list without an integer ?limit=');
        if (params.get('cursor')?.schema?.type !== 'string') fail('a list without a string ?cursor=');
      }
    }
    expect(problems).toEqual([]);
    for (const list of ['/v1/users', '/v1/service-tokens', '/v1/targets', '/v1/accounts', '/v1/checkouts', '/v1/ephemeral-accounts', '/v1/audit-events', '/v1/notification-channels', '/v1/notification-routes', '/v1/notifications']) {
      expect({ list, params: (doc.paths[list].get.parameters ?? []).map((p) => p.name) }).toEqual({ list, params: expect.arrayContaining(['limit', 'cursor']) });
    }
    // spot checks against the API contract
    const checkout = resolve(doc.paths['/v1/checkouts'].post.requestBody?.content?.['application/json']?.schema);
    expect(checkout).toMatchObject({ required: expect.arrayContaining(['accountId', 'justification']), properties: { accountId: { type: 'string', format: 'uuid' }, ttlSeconds: { type: 'integer' } } });
    const target = resolve(doc.paths['/v1/targets'].post.requestBody?.content?.['application/json']?.schema);
    expect(target?.properties?.type).toMatchObject({ enum: ['ssh', 'postgres', 'mysql'] });
    expect(resolve(target?.properties?.admin)).toMatchObject({ required: ['username'], properties: { username: { type: 'string' }, password: { type: 'string' } } });
    // an explicit null the pipe lets through (it removes the address) is documented as nullable
    const userPatch = resolve(doc.paths['/v1/users/{id}'].patch.requestBody?.content?.['application/json']?.schema);
    expect(userPatch?.properties?.email).toMatchObject({ type: 'string', nullable: true });
    expect(resolve(doc.paths['/v1/me'].patch.requestBody?.content?.['application/json']?.schema)?.properties?.email).not.toHaveProperty('nullable');
  });

  it('gives every operation one success response: a 204 without a body, else a response schema (its @ApiAnswer) that compiles', () => {
    const problems: string[] = [];
    for (const [route, op] of operations) {
      const fail = (what: string) => problems.push(`${route}: ${what}`);
      const success = Object.entries(op.responses).filter(([status]) => /^2\d\d$/.test(status));
      // a browser navigation (single sign-on's start and callback) answers a redirect, documented as such
      if (success.length === 0 && op.responses['302']?.description) continue;
      if (success.length !== 1) {
        fail(`${success.length} success responses (${success.map(([s]) => s).join(', ')}), expected one`);
        continue;
      }
      const [status, response] = success[0];
      const media = Object.entries(response.content ?? {});
      if (status === '204') {
        if (media.length) fail('answers 204 No Content, yet documents a body');
      } else if (media.length !== 1 || !media[0][1].schema) {
        fail(`answers ${status} without a response schema: give its handler @ApiAnswer(schema) (src/common/api-responses.ts)`);
      }
    }
    expect(problems).toEqual([]);
    expect(new ResponseCheck(doc as never).compileProblems()).toEqual([]);
    // spot checks against the API contract (../shared/API.md)
    const answer = (path: string, verb: string, status: string) => doc.paths[path][verb].responses[status].content?.['application/json']?.schema;
    const resolve = (s: ErrorContent['schema']) => (s?.$ref ? doc.components.schemas[s.$ref.replace('#/components/schemas/', '')] : (s as Schema | undefined));
    expect(resolve(answer('/v1/auth/login', 'post', '200'))).toMatchObject({ required: expect.arrayContaining(['accessToken', 'expiresAt', 'mfaEnrollmentRequired']) });
    expect(resolve(answer('/v1/me', 'get', '200'))).toMatchObject({ required: expect.arrayContaining(['id', 'username', 'roles', 'mfaEnrolled']) });
    const accounts = resolve(answer('/v1/accounts', 'get', '200'));
    expect(accounts).toMatchObject({ required: ['items', 'nextCursor'], properties: { items: { type: 'array', items: { $ref: '#/components/schemas/AccountView' } } } });
    expect(doc.components.schemas.AccountView.properties?.status).toMatchObject({ enum: ['available', 'checked_out', 'rotating', 'needs_attention'] });
    expect(doc.components.schemas.AccountView.properties).not.toHaveProperty('password');
    const checkout = resolve(answer('/v1/checkouts', 'post', '201'));
    expect(checkout?.required).not.toContain('credential');
    expect(checkout?.properties?.credential).toBeDefined();
    expect(resolve(answer('/v1/accounts/{id}/rotate', 'post', '202'))).toMatchObject({ required: ['rotationId'] });
    expect(doc.paths['/metrics'].get.responses['200'].content).toHaveProperty(['text/plain', 'schema', 'type'], 'string');
  });

  it("the answers check (test/support/openapi-check.ts) refuses what the document does not say, and only that", async () => {
    const admin = await vault.admin();
    const real = await vault.http().get('/v1/me').set('Authorization', admin.auth).expect(200); // checked on the way
    const check = new ResponseCheck(doc as never);
    const answer = (status: number, body: unknown, type = 'application/json; charset=utf-8') =>
      ({ status, body, text: body === undefined ? '' : JSON.stringify(body), headers: { 'content-type': type } }) as never;
    const me = real.body as Record<string, unknown>;
    expect(check.check('get', '/v1/me', answer(200, me))).toBeUndefined();
    expect(check.check('get', '/v1/me?x=1', answer(200, { ...me, extra: 1 }))?.message).toMatch(/GET \/v1\/me → 200 does not match[\s\S]*additional properties/);
    expect(check.check('get', '/v1/me', answer(200, { ...me, kind: 'robot' }))?.message).toMatch(/kind must be equal to one of the allowed values/);
    expect(check.check('get', '/v1/me', answer(200, { ...me, id: 'not-a-uuid' }))?.message).toMatch(/id must match format "uuid"/);
    expect(check.check('get', '/v1/me', answer(201, me))?.message).toMatch(/not a status the document lists/);
    expect(check.check('get', '/v1/me', answer(200, 'hello', 'text/plain'))?.message).toMatch(/answered text\/plain, the document says application\/json/);
    expect(check.check('delete', `/v1/service-tokens/${admin.id}`, answer(204, undefined, ''))).toBeUndefined();
    expect(check.check('delete', `/v1/service-tokens/${admin.id}`, answer(204, { id: admin.id }))?.message).toMatch(/has a body/);
    expect(check.check('get', '/v1/nowhere', answer(200, {}))?.message).toMatch(/no such operation/);
    expect(check.check('get', '/v1/me', answer(401, { statusCode: 401 }))).toBeUndefined(); // error answers: checked above, by code
    // a literal path wins over a template: /v1/audit-events/verify is not /v1/audit-events/{id}
    expect(check.check('get', '/v1/audit-events/verify', answer(200, { ok: true, count: 1, headSeq: '1', headHash: 'a'.repeat(64) }))).toBeUndefined();
  });

  it('has no dangling $ref', () => {
    const dangling: string[] = [];
    const walk = (node: unknown, at: string) => {
      if (Array.isArray(node)) node.forEach((n, i) => walk(n, `${at}[${i}]`));
      else if (node && typeof node === 'object') {
        for (const [k, v] of Object.entries(node)) {
          if (k === '$ref' && typeof v === 'string' && !doc.components.schemas[v.replace('#/components/schemas/', '')]) dangling.push(`${at}: ${v}`);
          else walk(v, `${at}.${k}`);
        }
      }
    };
    walk(doc, '');
    expect(dangling).toEqual([]);
  });
});

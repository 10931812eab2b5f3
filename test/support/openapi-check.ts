import { appendFileSync } from 'node:fs';
import type { Server } from 'node:http';
import Ajv, { ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import request, { Response } from 'supertest';

/**
 * The OpenAPI document proved true by the suites themselves: every request a test sends through the test vault's
 * `http()` (and so `actingAs`) has its 2xx answer checked against the running vault's own document (GET /docs-json):
 * the status must be one the operation documents, a JSON body must match its response schema (ajv + ajv-formats; the
 * schemas refuse undocumented fields), a 204 must be empty. A mismatch fails the request's assertions, so the test that
 * made it fails. Error answers are not checked here (test/e2e/openapi.e2e-spec.ts checks their codes).
 *
 * `OPENAPI_CHECK_LOG=<file>` appends one line per checked answer (`METHOD /template status`), to count them.
 */

interface MediaType {
  schema?: object;
}
interface ResponseObject {
  content?: Record<string, MediaType>;
}
interface OpenApiDocument {
  paths: Record<string, Record<string, { responses?: Record<string, ResponseObject> }>>;
  components?: { schemas?: Record<string, object> };
}
interface Route {
  template: string;
  pattern: RegExp;
  params: number;
}

const COMPONENT = '#/components/schemas/';
const METHODS = ['get', 'put', 'post', 'delete', 'patch'];

/** Checks answers against one document; compiled validators are kept per operation. */
export class ResponseCheck {
  private readonly ajv = new Ajv({ allErrors: true, strict: false, validateSchema: false });
  private readonly routes: Route[];
  private readonly validators = new Map<string, ValidateFunction>();

  constructor(private readonly doc: OpenApiDocument) {
    addFormats(this.ajv);
    // each component schema on its own, compiled once however many answers refer to it
    for (const [name, schema] of Object.entries(doc.components?.schemas ?? {})) this.ajv.addSchema(rebased(schema) as object, name);
    // literal paths before templated ones: /v1/audit-events/verify before a /v1/audit-events/{id}
    this.routes = Object.keys(doc.paths)
      .map((template) => ({ template, pattern: templatePattern(template), params: (template.match(/\{/g) ?? []).length }))
      .sort((a, b) => a.params - b.params);
  }

  /** Every success response schema of the document compiled once: what ajv refuses in them (e.g. `nullable` without `type`). */
  compileProblems(): string[] {
    const problems: string[] = [];
    for (const [template, item] of Object.entries(this.doc.paths)) {
      for (const [verb, op] of Object.entries(item)) {
        for (const [status, response] of Object.entries(op.responses ?? {})) {
          if (!/^2\d\d$/.test(status)) continue;
          for (const type of Object.keys(response.content ?? {})) {
            try {
              this.validatorOf(verb, template, status, type);
            } catch (e) {
              problems.push(`${verb.toUpperCase()} ${template} ${status} ${type}: ${(e as Error).message}`);
            }
          }
        }
      }
    }
    return problems;
  }

  /** The error that fails the request, or undefined when the answer is what the document says. */
  check(method: string, url: string, res: Response): Error | undefined {
    const verb = method.toLowerCase();
    if (res.status < 200 || res.status > 299 || !METHODS.includes(verb)) return undefined;
    const path = pathOf(url);
    const json = /^application\/json\b/.test(res.headers['content-type'] ?? '');
    const route = this.routes.find((r) => r.pattern.test(path) && this.doc.paths[r.template][verb]);
    if (!route) return json && !path.startsWith('/docs') ? new Error(`OpenAPI: ${method.toUpperCase()} ${path} answered ${res.status} JSON, and the document has no such operation`) : undefined;
    const where = `${method.toUpperCase()} ${route.template} → ${res.status}`;
    const response = this.doc.paths[route.template][verb].responses?.[String(res.status)];
    if (!response) return new Error(`OpenAPI: ${where} is not a status the document lists for this operation`);
    const media = Object.keys(response.content ?? {});
    if (media.length === 0) {
      if (res.text) return new Error(`OpenAPI: ${where} has a body, the document says it has none`);
    } else {
      const type = (res.headers['content-type'] ?? '').split(';')[0].trim();
      if (!media.includes(type)) return new Error(`OpenAPI: ${where} answered ${type || 'no Content-Type'}, the document says ${media.join(' or ')}`);
      const errors = this.validate(verb, route.template, res.status, type, json ? res.body : res.text);
      // what is wrong and where; never the body itself (it may hold a credential)
      if (errors) return new Error(`OpenAPI: ${where} does not match its response schema:\n${errors}`);
    }
    if (process.env.OPENAPI_CHECK_LOG) appendFileSync(process.env.OPENAPI_CHECK_LOG, `${where}\n`);
    return undefined;
  }

  private validate(verb: string, template: string, status: number, type: string, body: unknown): string | undefined {
    const validate = this.validatorOf(verb, template, String(status), type);
    if (validate(body)) return undefined;
    return (validate.errors ?? []).map((e) => `  ${e.instancePath || '(root)'} ${e.message ?? ''} ${JSON.stringify(e.params)}`).join('\n');
  }

  private validatorOf(verb: string, template: string, status: string, type: string): ValidateFunction {
    const key = `${verb} ${template} ${status} ${type}`;
    let validate = this.validators.get(key);
    if (!validate) {
      const schema = this.doc.paths[template][verb].responses?.[status]?.content?.[type]?.schema ?? {};
      validate = this.ajv.compile(rebased(schema) as object);
      this.validators.set(key, validate);
    }
    return validate;
  }
}

/** One check per distinct document (every vault of a test process normally serves the same one). */
const checks = new Map<string, ResponseCheck>();

/** The running vault's document, as it serves it, made into a check. */
export async function responseCheckOf(server: Server): Promise<ResponseCheck> {
  const res = await request(server).get('/docs-json').expect(200);
  const text = res.text;
  let check = checks.get(text);
  if (!check) {
    check = new ResponseCheck(JSON.parse(text) as OpenApiDocument);
    checks.set(text, check);
  }
  return check;
}

type Agent = ReturnType<typeof request>;

/** supertest's `request(server)`, each request of which checks its answer against the document before other assertions. */
export function checkedRequest(agent: Agent, check: ResponseCheck): Agent {
  const wrapped = Object.create(agent) as Agent;
  for (const method of [...METHODS, 'head', 'options'] as const) {
    const send = (agent as unknown as Record<string, (url: string) => request.Test>)[method].bind(agent);
    (wrapped as unknown as Record<string, unknown>)[method] = (url: string) => send(url).expect((res: Response) => check.check(method, url, res));
  }
  return wrapped;
}

/** The document's `#/components/schemas/X` references made to name the component schemas as added (by their names). */
function rebased(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(rebased);
  if (!node || typeof node !== 'object') return node;
  return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, k === '$ref' && typeof v === 'string' && v.startsWith(COMPONENT) ? v.slice(COMPONENT.length) : rebased(v)]));
}

/** `/v1/targets/{id}` → a pattern matching `/v1/targets/<one segment>`. */
function templatePattern(template: string): RegExp {
  const parts = template.split(/\{[^}]+\}/).map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(`^${parts.join('[^/]+')}$`);
}

function pathOf(url: string): string {
  const path = url.split('?')[0].split('#')[0];
  return /^https?:\/\//.test(path) ? new URL(path).pathname : path;
}

/** The document as committed for the portal (portal/src/api/openapi.json): keys sorted at every level, pretty, one newline at the end. */
export function documentText(doc: unknown): string {
  return `${JSON.stringify(sortedKeys(doc), null, 2)}\n`;
}

function sortedKeys(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(sortedKeys);
  if (!node || typeof node !== 'object') return node;
  return Object.fromEntries(
    Object.keys(node)
      .sort()
      .map((k) => [k, sortedKeys((node as Record<string, unknown>)[k])]),
  );
}

import { randomUUID } from 'node:crypto';
import { ROLES } from '../../src/common/actor';
import { startTestVault, TestUser, TestVault } from '../support/vault';

/**
 * INVARIANT 17 over the whole API (issue 12): every operation of the OpenAPI document, called by a user holding every
 * role (so no role check stops a request before its input is read) and with a valid step-up code, with hostile input
 * in each body field, each path parameter and each query parameter — wrong types, nested arrays, objects, null, odd
 * date formats, control and bidirectional characters, oversized and deeply nested bodies. Every answer must be a 4xx
 * with a stable code, never a 5xx; a request refused for its input (400, 413, 415) changes nothing — not even the
 * step-up code it carried — and in the end the database holds nothing new but the codes that well-formed requests for
 * ids that do not exist used (`mfa.verified`).
 */
interface Schema {
  type?: string;
  $ref?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
}
interface Operation {
  parameters?: Array<{ name: string; in: string }>;
  requestBody?: { content?: Record<string, { schema?: Schema }> };
}

const HOSTILE: unknown[] = [
  [[]],
  [null],
  {},
  { __proto__: { admin: true } },
  12345,
  -1,
  1e308,
  true,
  null,
  '',
  '\u0000',
  'a\u202Eb',
  '\u200B',
  '20270101T000000Z',
  '2027-02-30T00:00:00Z',
  '../../fuzz/../etc/passwd',
  "'; DROP TABLE fuzz_users; --",
  'x'.repeat(5000),
  [{ privileges: [[]], on: [[]] }],
];
const BAD_IDS = ['not-a-uuid', '..', '%00', '0', `${randomUUID()}x`, '%E2%80%AE'];
const BAD_QUERY = ['limit=-1', 'limit=abc', 'limit=1e9', 'limit[]=1', 'cursor=%00', 'cursor=not-a-cursor', 'status=%E2%80%AE', 'unknown=1', 'since=20270101T000000Z'];

describe('fuzzing every operation of the API (e2e)', () => {
  let vault: TestVault;
  let everyone: TestUser;
  let operations: Array<{ method: string; path: string; op: Operation }>;
  let schemas: Record<string, Schema>;

  beforeAll(async () => {
    vault = await startTestVault();
    await vault.admin();
    everyone = await vault.createUser([...ROLES]);
    const doc = (await vault.http().get('/docs-json').expect(200)).body as { paths: Record<string, Record<string, Operation>>; components: { schemas: Record<string, Schema> } };
    schemas = doc.components.schemas;
    operations = Object.entries(doc.paths).flatMap(([path, ops]) => Object.entries(ops).map(([method, op]) => ({ method, path, op })));
  }, 60_000);
  afterAll(() => vault?.close());

  const resolve = (s: Schema | undefined): Schema | undefined => (s?.$ref ? schemas[s.$ref.replace('#/components/schemas/', '')] : s);
  /** A checksum of every table: a refused request changes nothing. */
  const snapshot = async () => {
    const tables = await vault.db.query<{ t: string }>("SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename");
    const out: Record<string, string> = {};
    for (const { t } of tables) {
      const [row] = await vault.db.query<{ h: string | null }>(`SELECT md5(string_agg(x::text, '|' ORDER BY x::text)) AS h FROM "${t}" x`);
      out[t] = row.h ?? 'empty';
    }
    return out;
  };
  const send = async (method: string, url: string, body?: unknown, raw?: string) => {
    let req = vault.http()[method as 'get'](url).set('Authorization', everyone.auth).set('X-MFA-Code', await everyone.code());
    if (raw !== undefined) req = req.set('Content-Type', 'application/json').send(raw);
    else if (body !== undefined) req = req.send(body as object);
    const before = await burned();
    const res = await req;
    return { status: res.status, code: (res.body as { code?: unknown })?.code, changed: (await burned()) !== before };
  };
  /** The user's last burned step and the number of audit events: what a code's use changes. */
  const burned = async () => JSON.stringify(await vault.db.query("SELECT (SELECT mfa_last_step FROM users WHERE id = $1) AS s, (SELECT count(*) FROM audit_events) AS n", [everyone.id]));
  const withIds = (path: string, id: () => string) => path.replace(/\{[^}]+\}/g, () => id());

  it('answers every hostile input with a 4xx and a stable code, and changes nothing', async () => {
    const before = await snapshot();
    const [{ last }] = await vault.db.query<{ last: string }>('SELECT coalesce(max(id), 0)::text AS last FROM audit_events');
    const problems: string[] = [];
    let sent = 0;
    const check = (what: string, r: { status: number; code: unknown; changed: boolean }) => {
      sent++;
      if (r.status < 400 || r.status >= 500 || typeof r.code !== 'string' || !/^[A-Z][A-Z0-9_]+$/.test(r.code)) problems.push(`${what} → ${r.status} ${String(r.code)}`);
      if ([400, 413, 415].includes(r.status) && r.changed) problems.push(`${what} → ${r.status} ${String(r.code)}, yet it used the code or wrote an event`);
    };
    for (const { method, path, op } of operations) {
      if (!path.startsWith('/v1/')) continue; // health, metrics, docs take no input
      const route = `${method.toUpperCase()} ${path}`;
      // path parameters: malformed ids
      if (path.includes('{')) for (const bad of BAD_IDS) check(`${route} id=${bad}`, await send(method, withIds(path, () => bad)));
      const url = withIds(path, () => randomUUID()); // well-formed ids of nothing: the input is what is refused
      // query parameters
      if ((op.parameters ?? []).some((p) => p.in === 'query')) for (const q of BAD_QUERY) check(`${route} ?${q}`, await send(method, `${url}?${q}`));
      const schema = resolve(op.requestBody?.content?.['application/json']?.schema);
      if (!schema?.properties) continue;
      // whole bodies
      for (const [label, raw] of [
        ['an array body', '[]'],
        ['a string body', '"x"'],
        ['a nested array body', '[[[]]]'],
        ['broken JSON', '{"a":'],
        ['a deep body', `${'{"a":'.repeat(40)}1${'}'.repeat(40)}`],
        ['an unknown field', '{"zzUnknownField": 1}'],
        ['a __proto__ key', '{"__proto__": {"roles": ["admin"]}}'],
      ] as const) {
        check(`${route} ${label}`, await send(method, url, undefined, raw));
      }
      // each field alone with each hostile value (required fields stay missing, so nothing can be created)
      for (const [field, fieldSchema] of Object.entries(schema.properties)) {
        for (const value of HOSTILE) check(`${route} ${field}=${JSON.stringify(value)?.slice(0, 40)}`, await send(method, url, { [field]: value }));
        const nested = resolve(fieldSchema.items ?? fieldSchema);
        for (const [inner] of Object.entries(nested?.properties ?? {})) {
          for (const value of [[[]], null, 12345, '\u0000']) {
            const v = fieldSchema.type === 'array' ? [{ [inner]: value }] : { [inner]: value };
            check(`${route} ${field}.${inner}=${JSON.stringify(value)}`, await send(method, url, { [field]: v }));
          }
        }
      }
    }
    expect(problems).toEqual([]);
    expect(sent).toBeGreaterThan(1000);
    const after = await snapshot();
    const changed = Object.keys(before).filter((t) => before[t] !== after[t]);
    // only the used codes: the user's last step, and their events (sealed into the chain)
    expect(changed.filter((t) => !['users', 'audit_events', 'audit_chain_head'].includes(t))).toEqual([]);
    const types = await vault.db.query<{ type: string }>('SELECT DISTINCT type FROM audit_events WHERE id > $1', [last]);
    expect(types.map((t) => t.type).filter((t) => t !== 'mfa.verified')).toEqual([]);
  }, 300_000);
});

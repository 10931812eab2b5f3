import { randomUUID } from 'node:crypto';
import type { Test } from 'supertest';
import { encodeCursor } from '../../src/common/pagination';
import { accountInput, postgresTarget, secretValue, sshTarget } from '../factories';
import { needsStepUp } from '../support/http';
import { ADMIN_PASSWORD, startTestVault, TestVault } from '../support/vault';

/**
 * INVARIANT 17: malformed or hostile input gets a 4xx with a stable code, changes nothing, is never a 500,
 * and no error body carries a secret that was sent. Every case below goes through the same checks.
 */

type Method = 'get' | 'post' | 'patch' | 'put' | 'delete';

/** What the cases can refer to: rows that exist before any bad request is made. */
interface Fixture {
  auth: string;
  /** A PostgreSQL target with one account. */
  pg: { id: string; name: string };
  account: { id: string; username: string };
  /** An SSH target without accounts. */
  ssh: { id: string; name: string };
}

const SECRET_KEYS = /password|privateKey|passphrase|token|secret/i;

/** Builds requests and remembers every secret it sends, so the response can be searched for them. */
class BadRequests {
  readonly sent: string[] = [];
  /** The admin's fresh step-up code, sent on the admin actions that need one (so the request is judged on its input). */
  mfaCode?: string;
  /** Whether a request carried it. */
  codeSent = false;

  constructor(
    private readonly vault: TestVault,
    readonly f: Fixture,
  ) {}

  /** A new recognisable secret, remembered. */
  secret(label = 'secret'): string {
    const s = secretValue(label);
    this.sent.push(s);
    return s;
  }

  /** A JSON body (any JSON value), as the admin unless `auth` says otherwise; secrets in it are remembered. */
  json(method: Method, path: string, body: unknown, auth: string | null = this.f.auth): Test {
    this.collect(body);
    return this.raw(method, path, JSON.stringify(body), 'application/json', auth);
  }

  /** Exactly these bytes, with this content type. */
  raw(method: Method, path: string, text: string, contentType: string, auth: string | null = this.f.auth): Test {
    return this.bare(method, path, auth).set('Content-Type', contentType).send(text);
  }

  /** No body. */
  bare(method: Method, path: string, auth: string | null = this.f.auth): Test {
    const req = this.vault.http()[method](path);
    if (auth === null) return req;
    if (auth === this.f.auth && this.mfaCode && needsStepUp(method, path)) {
      req.set('X-MFA-Code', this.mfaCode);
      this.codeSent = true;
    }
    return req.set('Authorization', auth);
  }

  /** A target that would be accepted, with a remembered secret. */
  target(overrides: Record<string, unknown> = {}) {
    return postgresTarget({ admin: { username: 'postgres', password: this.secret('target-admin') }, ...overrides });
  }

  /** An account that would be accepted on the PostgreSQL target, with a remembered secret. */
  account(overrides: Record<string, unknown> = {}) {
    return accountInput(this.f.pg.id, { password: this.secret('account'), ...overrides });
  }

  private collect(value: unknown, key = ''): void {
    // too short to be told apart from ordinary text in a response (an empty password, say)
    if (typeof value === 'string' && SECRET_KEYS.test(key)) {
      if (value.length >= 8) this.sent.push(value);
    }
    else if (Array.isArray(value)) value.forEach((v) => this.collect(v, key));
    else if (value && typeof value === 'object') Object.entries(value).forEach(([k, v]) => this.collect(v, k));
  }
}

interface BadCase {
  send: (r: BadRequests) => Test;
  status: number;
  code: string;
  /** Audit events the request writes by design (a failed login is audited). */
  audited?: number;
}

type Table = Array<[label: string, bad: BadCase]>;
const refused = (status: number, code: string, send: BadCase['send'], audited = 0): BadCase => ({ send, status, code, audited });
const invalid = (send: BadCase['send']) => refused(400, 'VALIDATION_FAILED', send);

const HOSTILE_NAMES: Array<[string, string]> = [
  ['shell quote breakout', "'; id; '"],
  ['command substitution', '$(id)'],
  ['backticks', '`id`'],
  ['ssh option injection', '-oProxyCommand=x'],
  ['a leading double dash', '--help'],
  ['a newline', 'db\nid'],
  ['a trailing newline', 'db\n'],
  ['double quotes', 'a"b'],
  ['single quotes', "a'b"],
  ['a space', 'a b'],
  ['a path', '../../etc/passwd'],
  ['a NUL byte', 'a\u0000b'],
  ['full-width letters', 'ｒｏｏｔ'],
  ['200 characters', 'a'.repeat(200)],
];

const deeplyNested = (levels: number, open: string, close: string) => open.repeat(levels) + '1' + close.repeat(levels);

const MALFORMED_BODIES: Table = [
  ['malformed JSON (cut off)', invalid((r) => r.raw('post', '/v1/targets', `{"name":"db1","admin":{"username":"x","password":"${r.secret()}"`, 'application/json'))],
  ['JSON followed by garbage', invalid((r) => r.raw('post', '/v1/targets', `${JSON.stringify(r.target())}garbage`, 'application/json'))],
  ['single-quoted pseudo-JSON', invalid((r) => r.raw('post', '/v1/targets', `{'name':'db1','admin':{'password':'${r.secret()}'}}`, 'application/json'))],
  ['a JSON array', invalid((r) => r.json('post', '/v1/targets', [r.target()]))],
  ['a JSON string', invalid((r) => r.json('post', '/v1/targets', r.secret()))],
  ['JSON null', invalid((r) => r.json('post', '/v1/targets', null))],
  ['a JSON number', invalid((r) => r.json('post', '/v1/targets', 42))],
  ['an empty object', invalid((r) => r.json('post', '/v1/targets', {}))],
  ['an empty body', invalid((r) => r.raw('post', '/v1/targets', '', 'application/json'))],
  ['deeply nested arrays', invalid((r) => r.raw('post', '/v1/targets', `{"name":${deeplyNested(20000, '[', ']')}}`, 'application/json'))],
  ['deeply nested objects', invalid((r) => r.raw('post', '/v1/targets', `{"name":"x","x":${deeplyNested(9000, '{"a":', '}')}}`, 'application/json'))],
  ['a __proto__ key', invalid((r) => r.raw('post', '/v1/targets', JSON.stringify(r.target()).replace(/^\{/, '{"__proto__":{"isAdmin":true},'), 'application/json'))],
  ['a nested __proto__ key', invalid((r) => r.raw('post', '/v1/targets', JSON.stringify(r.target()).replace('"admin":{', '"admin":{"__proto__":{"x":1},'), 'application/json'))],
  ['a constructor key', invalid((r) => r.json('post', '/v1/targets', { ...r.target(), constructor: { prototype: { isAdmin: true } } }))],
  ['a toString key in options', invalid((r) => r.json('post', '/v1/targets', r.target({ options: { toString: 'x' } })))],
  ['a body over 64 KiB', refused(413, 'PAYLOAD_TOO_LARGE', (r) => r.json('post', '/v1/targets', { ...r.target(), padding: 'x'.repeat(70 * 1024) }))],
  ['a private key over 64 KiB', refused(413, 'PAYLOAD_TOO_LARGE', (r) => r.json('post', '/v1/targets', sshTarget({ admin: { username: 'root', privateKey: r.secret('k').repeat(3000) } })))],
  ['an account body over 64 KiB', refused(413, 'PAYLOAD_TOO_LARGE', (r) => r.json('post', '/v1/accounts', r.account({ password: r.secret('p').repeat(3000) })))],
  ['text/plain', invalid((r) => r.raw('post', '/v1/targets', JSON.stringify(r.target()), 'text/plain'))],
  ['a form', invalid((r) => r.raw('post', '/v1/targets', `name=db1&type=postgres&admin[password]=${r.secret()}`, 'application/x-www-form-urlencoded'))],
  ['JSON in an unsupported charset', refused(415, 'UNSUPPORTED_MEDIA_TYPE', (r) => r.raw('post', '/v1/targets', JSON.stringify(r.target()), 'application/json; charset=latin1'))],
  ['an unsupported content encoding', refused(415, 'UNSUPPORTED_MEDIA_TYPE', (r) => r.raw('post', '/v1/targets', JSON.stringify(r.target()), 'application/json').set('Content-Encoding', 'compress'))],
  ['gzip that is not gzip', invalid((r) => r.raw('post', '/v1/targets', JSON.stringify(r.target()), 'application/json').set('Content-Encoding', 'gzip'))],
  ['malformed JSON to login', invalid((r) => r.raw('post', '/v1/auth/login', `{"username":"admin","password":"${r.secret()}`, 'application/json', null))],
];

const WRONG_TYPES_AND_UNKNOWN_FIELDS: Table = [
  ['port as a string', invalid((r) => r.json('post', '/v1/targets', r.target({ port: '5432' })))],
  ['port 0', invalid((r) => r.json('post', '/v1/targets', r.target({ port: 0 })))],
  ['port 70000', invalid((r) => r.json('post', '/v1/targets', r.target({ port: 70000 })))],
  ['a fractional port', invalid((r) => r.json('post', '/v1/targets', r.target({ port: 22.5 })))],
  ['port 1e400 (Infinity)', invalid((r) => r.raw('post', '/v1/targets', JSON.stringify(r.target()).replace('"port":5432', '"port":1e400'), 'application/json'))],
  ['an unknown target type', invalid((r) => r.json('post', '/v1/targets', r.target({ type: 'oracle' })))],
  ['type as a number', invalid((r) => r.json('post', '/v1/targets', r.target({ type: 1 })))],
  ['name as a number', invalid((r) => r.json('post', '/v1/targets', r.target({ name: 123 })))],
  ['name null', invalid((r) => r.json('post', '/v1/targets', r.target({ name: null })))],
  ['admin as a string', invalid((r) => r.json('post', '/v1/targets', r.target({ admin: r.secret('admin') })))],
  ['admin as an array', invalid((r) => r.json('post', '/v1/targets', r.target({ admin: [{ username: 'root', password: r.secret() }] })))],
  ['admin null', invalid((r) => r.json('post', '/v1/targets', r.target({ admin: null })))],
  ['admin without a username', invalid((r) => r.json('post', '/v1/targets', r.target({ admin: { password: r.secret() } })))],
  ['admin without any credential', invalid((r) => r.json('post', '/v1/targets', r.target({ admin: { username: 'postgres' } })))],
  ['admin password null', invalid((r) => r.json('post', '/v1/targets', r.target({ admin: { username: 'postgres', password: null } })))],
  ['admin password as a number', invalid((r) => r.json('post', '/v1/targets', r.target({ admin: { username: 'postgres', password: 12345678 } })))],
  ['an admin password with a control character', invalid((r) => r.json('post', '/v1/targets', r.target({ admin: { username: 'postgres', password: `${r.secret()}\u0007` } })))],
  ['a private key for a PostgreSQL target', invalid((r) => r.json('post', '/v1/targets', r.target({ admin: { username: 'postgres', privateKey: r.secret('key') } })))],
  ['a passphrase without a private key', invalid((r) => r.json('post', '/v1/targets', sshTarget({ admin: { username: 'root', password: r.secret(), passphrase: r.secret() } })))],
  ['options as an array', invalid((r) => r.json('post', '/v1/targets', r.target({ options: [] })))],
  ['options null', invalid((r) => r.json('post', '/v1/targets', r.target({ options: null })))],
  ['sudo as a string', invalid((r) => r.json('post', '/v1/targets', sshTarget({ admin: { username: 'root', password: r.secret() }, options: { sudo: 'yes' } })))],
  ['a bad host key fingerprint', invalid((r) => r.json('post', '/v1/targets', sshTarget({ admin: { username: 'root', password: r.secret() }, options: { hostKeySha256: 'nope' } })))],
  ['an SSH option on a PostgreSQL target', invalid((r) => r.json('post', '/v1/targets', r.target({ options: { sudo: true } })))],
  ['a database option on an SSH target', invalid((r) => r.json('post', '/v1/targets', sshTarget({ admin: { username: 'root', password: r.secret() }, options: { database: 'x' } })))],
  ['an unknown top-level field', invalid((r) => r.json('post', '/v1/targets', { ...r.target(), id: randomUUID() }))],
  ['an unknown admin field', invalid((r) => r.json('post', '/v1/targets', r.target({ admin: { username: 'postgres', password: r.secret(), isRoot: true } })))],
  ['an unknown option', invalid((r) => r.json('post', '/v1/targets', r.target({ options: { shell: '/bin/sh' } })))],

  ['PATCH target name null', invalid((r) => r.json('patch', `/v1/targets/${r.f.ssh.id}`, { name: null }))],
  ['PATCH target host null', invalid((r) => r.json('patch', `/v1/targets/${r.f.ssh.id}`, { host: null }))],
  ['PATCH target port null', invalid((r) => r.json('patch', `/v1/targets/${r.f.ssh.id}`, { port: null }))],
  ['PATCH target admin null', invalid((r) => r.json('patch', `/v1/targets/${r.f.ssh.id}`, { admin: null }))],
  ['PATCH target options null', invalid((r) => r.json('patch', `/v1/targets/${r.f.ssh.id}`, { options: null }))],
  ['PATCH target type (not changeable)', invalid((r) => r.json('patch', `/v1/targets/${r.f.ssh.id}`, { type: 'postgres' }))],
  ['PATCH target admin without credential', invalid((r) => r.json('patch', `/v1/targets/${r.f.ssh.id}`, { admin: { username: 'root' } }))],
  ['PATCH target with an option of another type', invalid((r) => r.json('patch', `/v1/targets/${r.f.ssh.id}`, { options: { database: 'x' } }))],
  ['PATCH target with an unknown nested field', invalid((r) => r.json('patch', `/v1/targets/${r.f.ssh.id}`, { admin: { username: 'root', password: r.secret(), uid: 0 } }))],

  ['targetId not a UUID', invalid((r) => r.json('post', '/v1/accounts', r.account({ targetId: 'not-a-uuid' })))],
  ['targetId as a number', invalid((r) => r.json('post', '/v1/accounts', r.account({ targetId: 123 })))],
  ['username as an array', invalid((r) => r.json('post', '/v1/accounts', r.account({ username: ['app'] })))],
  ['account password as a number', invalid((r) => r.json('post', '/v1/accounts', r.account({ password: 12345678 })))],
  ['account password null', invalid((r) => r.json('post', '/v1/accounts', r.account({ password: null })))],
  ['an empty account password', invalid((r) => r.json('post', '/v1/accounts', r.account({ password: '' })))],
  ['an account password with a newline', invalid((r) => r.json('post', '/v1/accounts', r.account({ password: `${r.secret()}\n` })))],
  ['policy as a string', invalid((r) => r.json('post', '/v1/accounts', r.account({ policy: 'strict' })))],
  ['policy as an array', invalid((r) => r.json('post', '/v1/accounts', r.account({ policy: [] })))],
  ['a policy number as a string', invalid((r) => r.json('post', '/v1/accounts', r.account({ policy: { checkoutTtlSeconds: '3600' } })))],
  ['a policy number in an array', invalid((r) => r.json('post', '/v1/accounts', r.account({ policy: { checkoutTtlSeconds: [3600] } })))],
  ['a policy boolean as a string', invalid((r) => r.json('post', '/v1/accounts', r.account({ policy: { rotateAfterCheckin: 'true' } })))],
  ['a policy field null', invalid((r) => r.json('post', '/v1/accounts', r.account({ policy: { approvalsRequired: null } })))],
  ['approvalsRequired out of range', invalid((r) => r.json('post', '/v1/accounts', r.account({ policy: { approvalsRequired: 99 } })))],
  ['a checkout TTL under a minute', invalid((r) => r.json('post', '/v1/accounts', r.account({ policy: { checkoutTtlSeconds: 5 } })))],
  ['passwordClasses as a string', invalid((r) => r.json('post', '/v1/accounts', r.account({ policy: { passwordClasses: 'lower' } })))],
  ['an unknown password class', invalid((r) => r.json('post', '/v1/accounts', r.account({ policy: { passwordClasses: ['emoji'] } })))],
  ['a repeated password class', invalid((r) => r.json('post', '/v1/accounts', r.account({ policy: { passwordClasses: ['lower', 'lower'] } })))],
  ['an unknown account field', invalid((r) => r.json('post', '/v1/accounts', r.account({ status: 'checked_out' })))],
  ['an unknown policy field', invalid((r) => r.json('post', '/v1/accounts', r.account({ policy: { neverRotate: true } })))],

  ['PATCH account policy null', invalid((r) => r.json('patch', `/v1/accounts/${r.f.account.id}`, { policy: null }))],
  ['PATCH account username (not changeable)', invalid((r) => r.json('patch', `/v1/accounts/${r.f.account.id}`, { username: 'other' }))],
  ['PATCH account password (not here)', invalid((r) => r.json('patch', `/v1/accounts/${r.f.account.id}`, { password: r.secret() }))],
  ['PATCH account with an unknown policy field', invalid((r) => r.json('patch', `/v1/accounts/${r.f.account.id}`, { policy: { maxApprovals: 1 } }))],
];

const HOSTILE_NAME_CASES: Table = HOSTILE_NAMES.flatMap(([label, value]): Table => [
  [`target name with ${label}`, invalid((r) => r.json('post', '/v1/targets', r.target({ name: value })))],
  [`host with ${label}`, invalid((r) => r.json('post', '/v1/targets', r.target({ host: value })))],
  [`admin username with ${label}`, invalid((r) => r.json('post', '/v1/targets', r.target({ admin: { username: value, password: r.secret() } })))],
  [`PATCH target name with ${label}`, invalid((r) => r.json('patch', `/v1/targets/${r.f.ssh.id}`, { name: value }))],
  [`PATCH host with ${label}`, invalid((r) => r.json('patch', `/v1/targets/${r.f.ssh.id}`, { host: value }))],
  [`PostgreSQL account username with ${label}`, invalid((r) => r.json('post', '/v1/accounts', r.account({ username: value })))],
  [`SSH account username with ${label}`, invalid((r) => r.json('post', '/v1/accounts', r.account({ targetId: r.f.ssh.id, username: value })))],
]);

const RULES_AND_CONFLICTS: Table = [
  ['an uppercase SSH account name', invalid((r) => r.json('post', '/v1/accounts', r.account({ targetId: r.f.ssh.id, username: 'Deploy' })))],
  ['a dotted SSH account name (MySQL only)', invalid((r) => r.json('post', '/v1/accounts', r.account({ targetId: r.f.ssh.id, username: 'app.user' })))],
  ['a dashed PostgreSQL account name', invalid((r) => r.json('post', '/v1/accounts', r.account({ username: 'app-user' })))],
  ['a 64-character PostgreSQL account name', invalid((r) => r.json('post', '/v1/accounts', r.account({ username: 'a'.repeat(64) })))],
  ['a checkout TTL above the maximum', invalid((r) => r.json('post', '/v1/accounts', r.account({ policy: { checkoutTtlSeconds: 7200, maxCheckoutTtlSeconds: 3600 } })))],
  ['a PATCH lowering the maximum below the TTL', invalid((r) => r.json('patch', `/v1/accounts/${r.f.account.id}`, { policy: { maxCheckoutTtlSeconds: 600 } }))],
  ['an account with a null password', invalid((r) => r.json('post', '/v1/accounts', { targetId: r.f.pg.id, username: 'app_nopw', password: null }))],
  ['an account for a target that does not exist', invalid((r) => r.json('post', '/v1/accounts', r.account({ targetId: randomUUID() })))],
  ['a duplicate target name', refused(409, 'TARGET_NAME_TAKEN', (r) => r.json('post', '/v1/targets', r.target({ name: r.f.pg.name })))],
  ['a rename onto a taken name', refused(409, 'TARGET_NAME_TAKEN', (r) => r.json('patch', `/v1/targets/${r.f.ssh.id}`, { name: r.f.pg.name }))],
  ['moving a target without its admin credential', refused(400, 'ADMIN_CREDENTIAL_REQUIRED', (r) => r.json('patch', `/v1/targets/${r.f.pg.id}`, { host: 'elsewhere.example.com' }))],
  ['changing its port without its admin credential', refused(400, 'ADMIN_CREDENTIAL_REQUIRED', (r) => r.json('patch', `/v1/targets/${r.f.pg.id}`, { port: 6543 }))],
  ['unpinning an SSH host key without the admin credential', refused(400, 'ADMIN_CREDENTIAL_REQUIRED', (r) => r.json('patch', `/v1/targets/${r.f.ssh.id}`, { options: { hostKeySha256: `SHA256:${'A'.repeat(43)}` } }))],
  ['a duplicate account', refused(409, 'ACCOUNT_EXISTS', (r) => r.json('post', '/v1/accounts', r.account({ username: r.f.account.username })))],
  ['deleting a target that still has accounts', refused(409, 'TARGET_IN_USE', (r) => r.bare('delete', `/v1/targets/${r.f.pg.id}`))],
  ['PATCH of a target that does not exist', refused(404, 'NOT_FOUND', (r) => r.json('patch', `/v1/targets/${randomUUID()}`, { host: 'x.example.com' }))],
  ['DELETE of an account that does not exist', refused(404, 'NOT_FOUND', (r) => r.bare('delete', `/v1/accounts/${randomUUID()}`))],
];

const BAD_PATHS: Table = [
  ['GET a target id that is not a UUID', invalid((r) => r.bare('get', '/v1/targets/not-a-uuid'))],
  ['PATCH a target id that is not a UUID', invalid((r) => r.json('patch', '/v1/targets/not-a-uuid', { host: 'x.example.com' }))],
  ['DELETE a target id that is not a UUID', invalid((r) => r.bare('delete', '/v1/targets/not-a-uuid'))],
  ['DELETE an account id that is not a UUID', invalid((r) => r.bare('delete', '/v1/accounts/1'))],
  ['a ../ id', invalid((r) => r.bare('get', '/v1/targets/../'))],
  ['an encoded ../../etc/passwd id', invalid((r) => r.bare('delete', '/v1/targets/..%2F..%2Fetc%2Fpasswd'))],
  ['an SQL-looking id', invalid((r) => r.bare('delete', `/v1/targets/${encodeURIComponent("1' OR '1'='1")}`))],
  ['a UUID followed by NUL', invalid((r) => r.bare('get', `/v1/targets/${r.f.pg.id}%00`))],
  ['a very long id', invalid((r) => r.bare('get', `/v1/accounts/${'a'.repeat(4000)}`))],
  ['broken percent-encoding', invalid((r) => r.bare('get', '/v1/targets/%E0%A4%A'))],
  ['a GET of a target that does not exist', refused(404, 'NOT_FOUND', (r) => r.bare('get', `/v1/targets/${randomUUID()}`))],
  ['an unknown route', refused(404, 'NOT_FOUND', (r) => r.bare('get', '/v1/nope'))],
  ['an unknown route without a token', refused(404, 'NOT_FOUND', (r) => r.bare('post', '/v1/admin/shell', null))],
  ['an unknown API version', refused(404, 'NOT_FOUND', (r) => r.json('post', '/v2/targets', r.target()))],
  ['a sub-path that does not exist', refused(404, 'NOT_FOUND', (r) => r.json('post', `/v1/targets/${r.f.pg.id}/accounts`, r.account()))],
  ['an unsupported method', refused(404, 'NOT_FOUND', (r) => r.json('put', `/v1/targets/${r.f.ssh.id}`, r.target()))],
  ['DELETE of the collection', refused(404, 'NOT_FOUND', (r) => r.bare('delete', '/v1/targets'))],
];

const BAD_QUERIES: Table = [
  ...['/v1/targets', '/v1/accounts', '/v1/audit-events'].flatMap((list): Table => [
    [`${list} limit=0`, invalid((r) => r.bare('get', `${list}?limit=0`))],
    [`${list} limit=-1`, invalid((r) => r.bare('get', `${list}?limit=-1`))],
    [`${list} limit=abc`, invalid((r) => r.bare('get', `${list}?limit=abc`))],
    [`${list} limit=1.5`, invalid((r) => r.bare('get', `${list}?limit=1.5`))],
    [`${list} limit=100000`, invalid((r) => r.bare('get', `${list}?limit=100000`))],
    [`${list} limit given twice`, invalid((r) => r.bare('get', `${list}?limit=1&limit=2`))],
    [`${list} an unknown query parameter`, invalid((r) => r.bare('get', `${list}?offset=10`))],
    [`${list} a constructor query parameter`, invalid((r) => r.bare('get', `${list}?constructor=x`))],
    [`${list} a cursor that is not base64url`, invalid((r) => r.bare('get', `${list}?cursor=${encodeURIComponent('!!!')}`))],
    [`${list} a cursor that is not JSON`, invalid((r) => r.bare('get', `${list}?cursor=${Buffer.from('not json').toString('base64url')}`))],
    [`${list} a cursor of the wrong shape`, invalid((r) => r.bare('get', `${list}?cursor=${encodeCursor([1, 2])}`))],
    [`${list} a cursor holding a NUL`, invalid((r) => r.bare('get', `${list}?cursor=${encodeCursor(['a\u0000'])}`))],
    [`${list} a cursor that is too long`, invalid((r) => r.bare('get', `${list}?cursor=${'A'.repeat(600)}`))],
    [`${list} a cursor given twice`, invalid((r) => r.bare('get', `${list}?cursor=abc&cursor=def`))],
  ]),
  ['/v1/accounts a cursor that is not a UUID', invalid((r) => r.bare('get', `/v1/accounts?cursor=${encodeCursor(['abc'])}`))],
  ['/v1/accounts targetId not a UUID', invalid((r) => r.bare('get', '/v1/accounts?targetId=abc'))],
  ['/v1/accounts an unknown status', invalid((r) => r.bare('get', '/v1/accounts?status=hacked'))],
  ['/v1/targets an unknown type', invalid((r) => r.bare('get', '/v1/targets?type=oracle'))],
  ['/v1/audit-events a cursor that is not an id', invalid((r) => r.bare('get', `/v1/audit-events?cursor=${encodeCursor(['abc'])}`))],
  ['/v1/audit-events a cursor beyond bigint', invalid((r) => r.bare('get', `/v1/audit-events?cursor=${encodeCursor(['99999999999999999999999'])}`))],
  ['/v1/audit-events an SQL-looking type', invalid((r) => r.bare('get', `/v1/audit-events?type=${encodeURIComponent("x' OR 1=1 --")}`))],
  ['/v1/audit-events a subjectId with NUL', invalid((r) => r.bare('get', '/v1/audit-events?subjectId=%00'))],
  ['/v1/audit-events an actorId with NUL', invalid((r) => r.bare('get', '/v1/audit-events?actorId=a%00b'))],
  ['/v1/audit-events a subjectId that is too long', invalid((r) => r.bare('get', `/v1/audit-events?subjectId=${'a'.repeat(300)}`))],
];

const unauthenticated = (send: BadCase['send'], audited = 0) => refused(401, 'UNAUTHENTICATED', send, audited);
const login = (r: BadRequests, body: unknown) => r.json('post', '/v1/auth/login', body, null);

const BAD_CREDENTIALS: Table = [
  ['a login without a password', invalid((r) => login(r, { username: 'admin' }))],
  ['a login without a username', invalid((r) => login(r, { password: r.secret() }))],
  ['an empty login', invalid((r) => login(r, {}))],
  ['a login with a numeric username', invalid((r) => login(r, { username: 1, password: r.secret() }))],
  ['a login with an empty password', invalid((r) => login(r, { username: 'admin', password: '' }))],
  ['a login with a NUL in the username', invalid((r) => login(r, { username: 'ad\u0000min', password: r.secret() }))],
  ['a login with a non-numeric code', invalid((r) => login(r, { username: 'admin', password: ADMIN_PASSWORD, code: 'abcdef' }))],
  ['a login with an unknown field', invalid((r) => login(r, { username: 'admin', password: ADMIN_PASSWORD, roles: ['admin'] }))],
  ['a login as text/plain', invalid((r) => r.raw('post', '/v1/auth/login', JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }), 'text/plain', null))],
  ['a login with a wrong password (audited)', unauthenticated((r) => login(r, { username: 'admin', password: r.secret('wrong') }), 1)],
  ['a login of an unknown user (audited)', unauthenticated((r) => login(r, { username: 'mallory', password: r.secret('wrong') }), 1)],
  ['a login with a password typed as the username (audited)', unauthenticated((r) => login(r, { username: r.secret('typed-in-username'), password: r.secret() }), 1)],
  ['no Authorization header', unauthenticated((r) => r.json('post', '/v1/targets', r.target(), null))],
  ['a garbage bearer token', unauthenticated((r) => r.json('post', '/v1/targets', r.target(), `Bearer ${r.secret('garbage')}`))],
  ['a bearer token that is too long', unauthenticated((r) => r.json('post', '/v1/targets', r.target(), `Bearer pvt_${r.secret('long').repeat(200)}`))],
  ['an unknown token of the right form', unauthenticated((r) => r.json('post', '/v1/targets', r.target(), `Bearer pvt_${r.secret('unknown')}`))],
  ['a bearer token with spaces', unauthenticated((r) => r.bare('delete', `/v1/targets/${r.f.ssh.id}`, `Bearer pvt_${r.secret()} extra`))],
  ['an empty bearer', unauthenticated((r) => r.bare('delete', `/v1/targets/${r.f.ssh.id}`, 'Bearer '))],
  ['basic auth with the admin password', unauthenticated((r) => r.bare('delete', `/v1/targets/${r.f.ssh.id}`, `Basic ${Buffer.from(`admin:${ADMIN_PASSWORD}`).toString('base64')}`))],
  ['the password itself as a token', unauthenticated((r) => r.bare('delete', `/v1/targets/${r.f.ssh.id}`, `Bearer ${ADMIN_PASSWORD}`))],
];

describe('bad input (INVARIANT 17, e2e, real PostgreSQL)', () => {
  let vault: TestVault;
  let fixture: Fixture;

  /** Rows whose change would show that a refused request did something anyway. */
  const state = async () =>
    (
      await vault.db.query<Record<string, string | number>>(
        `SELECT (SELECT count(*)::int FROM targets) AS targets,
                (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) FROM targets t) AS "targetRows",
                (SELECT count(*)::int FROM accounts) AS accounts,
                (SELECT md5(coalesce(string_agg(a::text, '|' ORDER BY a.id), '')) FROM accounts a) AS "accountRows",
                (SELECT count(*)::int FROM audit_events WHERE type <> 'mfa.verified') AS "auditEvents",
                (SELECT count(*)::int FROM access_tokens) AS "accessTokens",
                (SELECT md5(coalesce(string_agg((to_jsonb(u) - 'mfa_last_step')::text, '|' ORDER BY u.id), '')) FROM users u) AS users,
                (SELECT count(*)::int FROM audit_events WHERE type = 'mfa.verified') AS "mfaVerified",
                (SELECT md5(coalesce(string_agg(u.mfa_last_step::text, '|' ORDER BY u.id), '')) FROM users u) AS "mfaSteps"`,
      )
    )[0];
  const lastEventId = async () => (await vault.db.query<{ max: string }>("SELECT coalesce(max(id), 0)::text AS max FROM audit_events"))[0].max;

  beforeAll(async () => {
    // no background sweep: the admin's step-up codes move the test clock, and a rotation or drift check coming due
    // would change the fixture's rows while a case is judged
    vault = await startTestVault({ env: { VAULT_ROTATION_SWEEP_MS: '3600000', VAULT_CHECKOUT_SWEEP_MS: '3600000', VAULT_EPHEMERAL_SWEEP_MS: '3600000' } });
    const auth = await vault.adminAuth();
    const create = async (path: string, body: object) =>
      (await vault.http().post(path).set('Authorization', auth).set('X-MFA-Code', await (await vault.admin()).code()).send(body).expect(201)).body;
    const pg = await create('/v1/targets', postgresTarget());
    const ssh = await create('/v1/targets', sshTarget());
    const account = await create('/v1/accounts', accountInput(pg.id));
    fixture = { auth, pg, ssh, account };
  });
  afterAll(() => vault.close());

  async function expectRefused(bad: BadCase): Promise<void> {
    const before = await state();
    const since = await lastEventId();
    const r = new BadRequests(vault, fixture);
    r.mfaCode = await (await vault.admin()).code();
    const res = await bad.send(r);

    expect({ status: res.status, body: res.body }).toEqual({
      status: bad.status,
      body: { statusCode: bad.status, code: bad.code, message: expect.any(String) },
    });
    for (const secret of r.sent) expect(res.text).not.toContain(secret);
    expect(res.text).not.toContain(ADMIN_PASSWORD);

    const audited = bad.audited ?? 0;
    const after = await state();
    // an admin action's step-up code is burned once the request passed validation and the action starts (a rule the
    // service then applies may still refuse it, like a checkout of a busy account): at most that, and only then
    const mfa = (st: typeof before) => ({ mfaVerified: Number(st.mfaVerified), mfaSteps: st.mfaSteps });
    expect({ ...after, ...mfa(before) }).toEqual({ ...before, auditEvents: Number(before.auditEvents) + audited });
    if (!r.codeSent) expect(mfa(after)).toEqual(mfa(before));
    else expect(mfa(after).mfaVerified - mfa(before).mfaVerified).toBeLessThanOrEqual(1);
    if (audited > 0) {
      const events = await vault.db.query<{ type: string; outcome: string; row: string }>(
        'SELECT type, outcome, row_to_json(e)::text AS row FROM audit_events e WHERE e.id > $1',
        [since],
      );
      expect(events.map((e) => [e.type, e.outcome])).toEqual([['auth.login', 'failure']]);
      for (const secret of r.sent) expect(events[0].row).not.toContain(secret);
    }
  }

  describe('malformed bodies and content types', () => {
    it.each(MALFORMED_BODIES)('refuses %s', (_label, bad) => expectRefused(bad));
  });

  describe('wrong types, nulls and unknown fields', () => {
    it.each(WRONG_TYPES_AND_UNKNOWN_FIELDS)('refuses %s', (_label, bad) => expectRefused(bad));
  });

  describe('hostile names', () => {
    it.each(HOSTILE_NAME_CASES)('refuses a %s', (_label, bad) => expectRefused(bad));
  });

  describe('domain rules and conflicts', () => {
    it.each(RULES_AND_CONFLICTS)('refuses %s', (_label, bad) => expectRefused(bad));
  });

  describe('bad paths and unknown routes', () => {
    it.each(BAD_PATHS)('refuses %s', (_label, bad) => expectRefused(bad));
  });

  describe('bad query parameters', () => {
    it.each(BAD_QUERIES)('refuses %s', (_label, bad) => expectRefused(bad));
  });

  describe('bad credentials', () => {
    it.each(BAD_CREDENTIALS)('refuses %s', (_label, bad) => expectRefused(bad));
  });

  it('still works normally after all of that', async () => {
    const auth = fixture.auth;
    await vault.http().get(`/v1/targets/${fixture.pg.id}`).set('Authorization', auth).expect(200);
    const verify = await vault.http().get('/v1/audit-events/verify').set('Authorization', auth).expect(200);
    expect(verify.body).toMatchObject({ ok: true });
  });
});

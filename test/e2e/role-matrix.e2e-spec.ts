import { randomUUID } from 'node:crypto';
import type { Test } from 'supertest';
import { Role, ROLES } from '../../src/common/actor';
import { registeredRoutes } from '../support/routes';
import { startTestVault, TestUser, TestVault } from '../support/vault';

/**
 * Route × caller matrix, against the running application on the real PostgreSQL.
 *
 * ACCESS below is the source of truth for who may call what (the API contract plus the @Roles declarations). The routes
 * are read from the Express router the application actually built, so a route added later without a row here
 * fails the first test, and a row whose route is gone fails it too.
 */

type Access =
  /** No authentication at all: never answers 401/403. */
  | { kind: 'public' }
  /** Not an endpoint: a Nest middleware registered for every method and path; it always passes the request on. */
  | { kind: 'middleware'; what: string }
  | {
      kind: 'roles';
      roles: readonly Role[];
      /** @RequiresMfa: a person with a fresh `X-MFA-Code`; without it 401 MFA_REQUIRED, service tokens 403. */
      stepUp?: true;
      /** @AllowWithoutMfa: a user who has not enrolled TOTP yet may call it. */
      beforeEnrollment?: true;
      /** Only a person can do this (TOTP enrollment): a service token gets 403 FORBIDDEN even with the role. */
      usersOnly?: true;
      /** Body for POST/PATCH instead of `{}` (a well-formed one, so the request gets past validation). */
      body?: Record<string, unknown>;
    };

const PUBLIC: Access = { kind: 'public' };
const allow = (roles: readonly Role[], opts: Omit<Extract<Access, { kind: 'roles' }>, 'kind' | 'roles'> = {}): Access => ({ kind: 'roles', roles, ...opts });
const ANY = ROLES;
const ADMIN = allow(['admin']);
/** An admin action that weakens protection or moves secrets: the admin's own fresh code too. */
const ADMIN_STEP_UP = allow(['admin'], { stepUp: true });

const ACCESS: Record<string, Access> = {
  // nestjs-pino (LoggerModule): pino-http and the logger binding, registered by Nest with all() on every path
  'ALL /{*path}': { kind: 'middleware', what: 'nestjs-pino request logging' },

  'GET /health/live': PUBLIC,
  'GET /metrics': PUBLIC,
  'GET /health/ready': PUBLIC,

  // OpenAPI (src/openapi): Swagger UI and the JSON document, registered by SwaggerModule on the HTTP adapter (outside the guards)
  'GET /docs': PUBLIC,
  'GET /docs/': PUBLIC,
  'GET /docs/index.html': PUBLIC,
  'GET /docs/swagger-ui-init.js': PUBLIC,
  'GET /docs/docs/swagger-ui-init.js': PUBLIC,
  'GET /docs/LICENSE': PUBLIC,
  'GET /docs-json': PUBLIC,

  // Identity
  'POST /v1/auth/login': PUBLIC,
  // the web portal's session (src/identity/browser-session.controller.ts): sign-in is public like login; reading and
  // ending one answer only to the session cookie, so a bearer caller (all of them here) gets 404 NOT_FOUND, never 401/403
  'POST /v1/auth/session': PUBLIC,
  'GET /v1/auth/session': allow(ANY, { beforeEnrollment: true }),
  'DELETE /v1/auth/session': allow(ANY, { beforeEnrollment: true }),
  'GET /v1/me': allow(ANY, { beforeEnrollment: true }),
  'POST /v1/me/mfa/totp': allow(ANY, { beforeEnrollment: true, usersOnly: true }),
  'POST /v1/me/mfa/totp/confirm': allow(ANY, { beforeEnrollment: true, usersOnly: true, body: { code: '000000' } }),
  // security keys (src/identity/webauthn): the first one without a step-up, another one (these users have TOTP) with it
  'POST /v1/me/webauthn/registrations': allow(ANY, { beforeEnrollment: true, usersOnly: true, stepUp: true }),
  'POST /v1/me/webauthn/registrations/confirm': allow(ANY, { beforeEnrollment: true, usersOnly: true, body: { challengeId: '00000000-0000-4000-8000-000000000000', name: 'key', response: {} } }),
  'GET /v1/me/webauthn/credentials': allow(ANY, { beforeEnrollment: true, usersOnly: true }),
  'DELETE /v1/me/webauthn/credentials/:id': allow(ANY, { stepUp: true, usersOnly: true }),
  'POST /v1/me/webauthn/step-up': allow(ANY, { usersOnly: true, body: { method: 'POST', path: '/v1/checkouts' } }),
  'GET /v1/users/:id/webauthn': ADMIN,
  'DELETE /v1/users/:id/webauthn/:credentialId': ADMIN_STEP_UP,
  // one's own e-mail (approval requests go there) and muted notifications: a person with a fresh code
  'PATCH /v1/me': allow(ANY, { stepUp: true }),
  'POST /v1/users': ADMIN_STEP_UP,
  'GET /v1/users': ADMIN,
  'GET /v1/users/:id': ADMIN,
  'PATCH /v1/users/:id': ADMIN_STEP_UP,
  'POST /v1/users/:id/mfa/reset': ADMIN_STEP_UP,
  'POST /v1/service-tokens': ADMIN_STEP_UP,
  'GET /v1/service-tokens': ADMIN,
  'DELETE /v1/service-tokens/:id': ADMIN_STEP_UP,

  // single sign-on (src/identity/oidc): providers are the admin's (changes with a code); signing in is public like login
  'GET /v1/oidc-providers': ADMIN,
  'PUT /v1/oidc-providers/:name': ADMIN_STEP_UP,
  'DELETE /v1/oidc-providers/:name': ADMIN_STEP_UP,
  'GET /v1/auth/oidc/providers': PUBLIC,
  'GET /v1/auth/oidc/:name/start': PUBLIC,
  'GET /v1/auth/oidc/callback': PUBLIC,
  'POST /v1/auth/oidc/:name/device': PUBLIC,
  'POST /v1/auth/oidc/device/token': PUBLIC,

  // Targets
  'POST /v1/targets': ADMIN_STEP_UP,
  // approvers decide on access to a target and auditors review it: both read what the target is (never a secret)
  'GET /v1/targets': allow(['admin', 'operator', 'approver', 'auditor']),
  'GET /v1/targets/:id': allow(['admin', 'operator', 'approver', 'auditor']),
  'PATCH /v1/targets/:id': ADMIN_STEP_UP,
  'DELETE /v1/targets/:id': ADMIN_STEP_UP,
  'POST /v1/targets/:id/verify': ADMIN_STEP_UP,

  // Accounts
  'POST /v1/accounts': ADMIN_STEP_UP,
  'GET /v1/accounts': allow(['admin', 'operator', 'approver', 'auditor']),
  'GET /v1/accounts/:id': allow(['admin', 'operator', 'approver', 'auditor']),
  'PATCH /v1/accounts/:id': ADMIN_STEP_UP,
  'DELETE /v1/accounts/:id': ADMIN_STEP_UP,
  'POST /v1/accounts/:id/rotate': allow(['admin', 'scheduler']),
  'GET /v1/accounts/:id/rotations': allow(['admin', 'scheduler', 'auditor']),

  // Checkouts
  'POST /v1/checkouts': allow(['operator'], { stepUp: true, body: { accountId: randomUUID(), justification: 'role matrix probe' } }),
  'GET /v1/checkouts': allow(['operator', 'admin', 'approver', 'auditor']),
  'GET /v1/checkouts/:id': allow(['operator', 'admin', 'approver', 'auditor']),
  'POST /v1/checkouts/:id/approve': allow(['approver'], { stepUp: true }),
  'POST /v1/checkouts/:id/deny': allow(['approver'], { stepUp: true }),
  // the after-the-fact review of a break-glass checkout: an approver's or an auditor's control
  'POST /v1/checkouts/:id/review': allow(['approver', 'auditor'], { stepUp: true, body: { comment: 'role matrix probe' } }),
  'POST /v1/checkouts/:id/reveal': allow(['operator'], { stepUp: true }),
  'POST /v1/checkouts/:id/extend': allow(['operator'], { stepUp: true, body: { ttlSeconds: 600 } }),
  'POST /v1/checkouts/:id/checkin': allow(['operator', 'admin']),
  'POST /v1/checkouts/:id/revoke': ADMIN,

  // One-time accounts
  'POST /v1/ephemeral-accounts': allow(['operator', 'admin'], { body: { targetId: randomUUID(), vendorUserId: randomUUID(), ttlSeconds: 600, justification: 'role matrix probe' } }),
  'GET /v1/ephemeral-accounts': allow(['operator', 'vendor', 'approver', 'admin', 'auditor']),
  'GET /v1/ephemeral-accounts/:id': allow(['operator', 'vendor', 'approver', 'admin', 'auditor']),
  'POST /v1/ephemeral-accounts/:id/approve': allow(['approver'], { stepUp: true }),
  'POST /v1/ephemeral-accounts/:id/deny': allow(['approver'], { stepUp: true }),
  'POST /v1/ephemeral-accounts/:id/claim': allow(['vendor'], { stepUp: true }),
  'POST /v1/ephemeral-accounts/:id/revoke': allow(['vendor', 'operator', 'admin']),
  'GET /v1/targets/:id/ephemeral-policy': allow(['admin', 'operator', 'approver']),
  'PUT /v1/targets/:id/ephemeral-policy': allow(['admin'], { stepUp: true, body: { approvalsRequired: 1, maxTtlSeconds: 3600 } }),

  // Live sessions on targets: whoever reads the checkout / one-time account (the API narrows to the holder), admins target-wide
  'GET /v1/checkouts/:id/sessions': allow(['operator', 'admin', 'approver', 'auditor']),
  'GET /v1/ephemeral-accounts/:id/sessions': allow(['vendor', 'operator', 'admin', 'approver', 'auditor']),
  'GET /v1/targets/:id/sessions': ADMIN,
  'POST /v1/targets/:id/sessions/:sessionId/terminate': ADMIN_STEP_UP,

  // SSH gateway sessions and their recordings (the API narrows operators and vendors to their own sessions)
  'GET /v1/sessions': allow(['operator', 'vendor', 'admin', 'auditor']),
  'GET /v1/sessions/:id': allow(['operator', 'vendor', 'admin', 'auditor']),
  'GET /v1/sessions/:id/recording': allow(['admin', 'auditor']),
  'POST /v1/sessions/:id/verify': allow(['auditor']),

  // the SSH gateway: where it is (anyone signed in); connection tickets for the holder (the API narrows to the checkout's
  // requester / the one-time account's vendor); an admin ends a live session with a fresh code
  'GET /v1/gateway': allow(ANY),
  'POST /v1/checkouts/:id/connect': allow(['operator'], { stepUp: true }),
  'POST /v1/ephemeral-accounts/:id/connect': allow(['vendor'], { stepUp: true }),
  'POST /v1/sessions/:id/terminate': ADMIN_STEP_UP,

  // Audit
  'GET /v1/audit-events': allow(['auditor', 'admin']),
  'GET /v1/audit-events/verify': allow(['auditor', 'admin']),
  'GET /v1/audit-events/:id': allow(['auditor', 'admin']),

  // Notifications: channels and routes (secrets write-only), the test message, the delivery log
  'POST /v1/notification-channels': ADMIN_STEP_UP,
  'GET /v1/notification-channels': allow(['admin', 'auditor']),
  'GET /v1/notification-channels/:id': allow(['admin', 'auditor']),
  'PATCH /v1/notification-channels/:id': ADMIN_STEP_UP,
  'DELETE /v1/notification-channels/:id': ADMIN_STEP_UP,
  'POST /v1/notification-channels/:id/test': ADMIN_STEP_UP,
  'POST /v1/notification-routes': ADMIN_STEP_UP,
  'GET /v1/notification-routes': allow(['admin', 'auditor']),
  'GET /v1/notification-routes/:id': allow(['admin', 'auditor']),
  'DELETE /v1/notification-routes/:id': ADMIN_STEP_UP,
  'GET /v1/notifications': allow(['admin', 'auditor']),
};


type Caller =
  | { name: string; kind: 'user'; roles: Role[]; auth: string; user: TestUser }
  | { name: string; kind: 'service'; roles: Role[]; auth: string }
  | { name: string; kind: 'anonymous'; roles: Role[] };

type Expected = { allowed: true } | { status: number; code: string };

function expectationFor(access: Access, caller: Caller): Expected {
  if (access.kind !== 'roles') return { allowed: true };
  if (caller.kind === 'anonymous') return { status: 401, code: 'UNAUTHENTICATED' };
  if (!caller.roles.some((r) => access.roles.includes(r))) return { status: 403, code: 'FORBIDDEN' };
  if (caller.kind === 'service' && (access.stepUp || access.usersOnly)) return { status: 403, code: 'FORBIDDEN' };
  if (access.stepUp) return { status: 401, code: 'MFA_REQUIRED' };
  return { allowed: true };
}

/** Dummy ids: a fresh UUID for every path parameter, so writes hit nothing that exists. */
const fillParams = (path: string) => path.replace(/:(\w+)/g, () => randomUUID());

type Verb = 'get' | 'post' | 'put' | 'patch' | 'delete';

interface Answer {
  status: number;
  code: unknown;
}

describe('route × role matrix (e2e, real PostgreSQL)', () => {
  let vault: TestVault;
  let callers: Caller[];

  /** Sends one request: `{}` (or the row's body) for POST/PUT/PATCH, no body otherwise. */
  const send = async (route: string, opts: { auth?: string; body?: Record<string, unknown>; mfaCode?: string } = {}): Promise<Answer> => {
    const [method, path] = route.split(' ');
    const verb = method.toLowerCase() as Verb;
    if (!['get', 'post', 'put', 'patch', 'delete'].includes(verb)) throw new Error(`no request helper for ${method} (${route})`);
    let req: Test = vault.http()[verb](fillParams(path));
    if (opts.auth) req = req.set('Authorization', opts.auth);
    if (opts.mfaCode) req = req.set('X-MFA-Code', opts.mfaCode);
    if (verb === 'post' || verb === 'put' || verb === 'patch') req = req.send(opts.body ?? {});
    const res = await req;
    return { status: res.status, code: (res.body as { code?: unknown } | undefined)?.code };
  };

  /** '' when the answer meets the expectation, else a line describing the mismatch. */
  const check = (route: string, who: string, expected: Expected, got: Answer): string => {
    const shown = `${got.status} ${String(got.code)}`;
    if ('allowed' in expected) {
      // dummy ids and bodies make 400/404/409 normal; a refusal or a crash is not
      return [401, 403, 500].includes(got.status) ? `${route} as ${who}: expected to be let through (not 401/403/500), got ${shown}` : '';
    }
    return got.status === expected.status && got.code === expected.code ? '' : `${route} as ${who}: expected ${expected.status} ${expected.code}, got ${shown}`;
  };

  beforeAll(async () => {
    vault = await startTestVault();
    const admin = await vault.admin();
    callers = [];
    for (const role of ROLES) {
      const user = await vault.createUser([role]);
      callers.push({ name: `user[${role}]`, kind: 'user', roles: [role], auth: user.auth, user });
    }
    for (const role of ['scheduler', 'auditor'] as const) {
      const res = await vault.http().post('/v1/service-tokens').set('Authorization', admin.auth).set('X-MFA-Code', await admin.code()).send({ name: `matrix ${role}`, roles: [role] }).expect(201);
      callers.push({ name: `service-token[${role}]`, kind: 'service', roles: [role], auth: `Bearer ${res.body.token}` });
    }
    callers.push({ name: 'no token', kind: 'anonymous', roles: [] });
  });
  afterAll(() => vault?.close());

  it('declares every registered route in the table, and every row is a registered route', () => {
    const registered = registeredRoutes(vault);
    const problems: string[] = [];
    for (const r of new Set(registered)) {
      if (!(r in ACCESS)) problems.push(`route ${r} is registered but has no row in ACCESS: declare who may call it`);
      else if (ACCESS[r].kind !== 'middleware' && registered.filter((x) => x === r).length > 1) problems.push(`route ${r} is registered more than once`);
    }
    for (const r of Object.keys(ACCESS)) if (!registered.includes(r)) problems.push(`ACCESS row ${r} matches no registered route`);
    if (problems.length > 0) throw new Error(`route table out of date:\n  ${problems.join('\n  ')}`);
    expect(registered.filter((r) => ACCESS[r]?.kind !== 'middleware').length).toBeGreaterThanOrEqual(20);
  });

  it.each(Object.entries(ACCESS))('%s: every caller gets what the table says', async (route, access) => {
    const mismatches: string[] = [];
    if (access.kind === 'middleware') {
      // passes every request on: a path nothing handles is a plain 404 for everyone, whatever the method
      for (const caller of callers) {
        for (const verb of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE']) {
          const probe = `${verb} /v1/no-such-route/:id`;
          const got = await send(probe, { auth: 'auth' in caller ? caller.auth : undefined });
          if (got.status !== 404 || got.code !== 'NOT_FOUND') mismatches.push(`${probe} as ${caller.name}: expected 404 NOT_FOUND, got ${got.status} ${String(got.code)}`);
        }
      }
      expect(mismatches).toEqual([]);
      return;
    }
    const body = access.kind === 'roles' ? access.body : undefined;
    for (const caller of callers) {
      const expected = expectationFor(access, caller);
      mismatches.push(check(route, caller.name, expected, await send(route, { auth: 'auth' in caller ? caller.auth : undefined, body })));
      // step-up: the same allowed person with a fresh code is let through (the dummy id then makes it a 404)
      if (access.kind === 'roles' && access.stepUp && caller.kind === 'user' && 'code' in expected && expected.code === 'MFA_REQUIRED') {
        const got = await send(route, { auth: caller.auth, body, mfaCode: await caller.user.code() });
        mismatches.push(check(`${route} (with X-MFA-Code)`, caller.name, { allowed: true }, got));
      }
    }
    expect(mismatches.filter(Boolean)).toEqual([]);
  });

  it.each([
    ['an admin', ['admin'] as Role[]],
    ['a user with every role', [...ROLES]],
  ])('%s who has not enrolled TOTP may only read /v1/me and enroll: 403 MFA_ENROLLMENT_REQUIRED everywhere else', async (_label, roles) => {
    const pending = await vault.createUser(roles, { enroll: false });
    const mismatches: string[] = [];
    for (const route of [...new Set(registeredRoutes(vault))].sort()) {
      const access = ACCESS[route];
      if (access?.kind === 'middleware') continue;
      let expected: Expected;
      if (access?.kind === 'public' || (access?.kind === 'roles' && access.beforeEnrollment)) expected = { allowed: true };
      // roles are checked before enrollment: a route this user's roles do not reach stays FORBIDDEN
      else if (access?.kind === 'roles' && !roles.some((r) => access.roles.includes(r))) expected = { status: 403, code: 'FORBIDDEN' };
      else expected = { status: 403, code: 'MFA_ENROLLMENT_REQUIRED' };
      // `{}` bodies here: a made-up confirmation code would count as a failed MFA attempt once enrollment has started
      mismatches.push(check(route, `unenrolled ${roles.join('+')}`, expected, await send(route, { auth: pending.auth })));
    }
    expect(mismatches.filter(Boolean)).toEqual([]);
    const me = await vault.http().get('/v1/me').set('Authorization', pending.auth).expect(200);
    expect(me.body).toMatchObject({ id: pending.id, mfaEnrolled: false });
  });

  it('left the callers intact: the admin and every role user still sign in, nobody was disabled', async () => {
    const users = (await vault.db.query<{ username: string; disabled: boolean; mfa: boolean }>('SELECT username, disabled, mfa_secret IS NOT NULL AS mfa FROM users'))
      .filter((u) => u.username === 'admin' || callers.some((c) => c.kind === 'user' && c.user.username === u.username));
    expect(users).toHaveLength(ROLES.length + 1);
    for (const u of users) expect(u).toMatchObject({ disabled: false, mfa: true });
    for (const c of callers) if (c.kind !== 'anonymous') await vault.http().get('/v1/me').set('Authorization', c.auth).expect(200);
  });
});

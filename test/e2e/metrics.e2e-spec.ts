import { randomBytes, randomUUID } from 'node:crypto';
import { accountInput, postgresTarget } from '../factories';
import { actingAs } from '../support/http';
import { ADMIN_PASSWORD, startTestVault, TestUser, TestVault } from '../support/vault';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a Prometheus text exposition (names with `_bucket`, `_sum`, `_count` suffixes as written). */
function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

/**
 * GET /metrics after real traffic: the gauges read from the database (pending approvals, checkouts, accounts,
 * one-time accounts), the MFA failure counter, and the request latency histogram, labelled by route pattern.
 * No label value is ever an id, a username or a secret.
 */
describe('metrics (e2e)', () => {
  let vault: TestVault;
  let admin: TestUser;
  let operator: TestUser;
  let vendor: TestUser;
  /** Everything this test created or was told that must never become a label value. */
  const sensitive: string[] = [ADMIN_PASSWORD];

  const as = (user: TestUser) => actingAs(vault, user);
  const scrape = async () => {
    const res = await vault.http().get('/metrics').expect(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain;.*version=0\.0\.4/);
    return { text: res.text, samples: parse(res.text) };
  };
  const value = (samples: Sample[], name: string, labels: Record<string, string> = {}) => {
    const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
    if (found.length === 0) throw new Error(`no sample ${name} ${JSON.stringify(labels)}`);
    return found.reduce((sum, s) => sum + s.value, 0);
  };

  beforeAll(async () => {
    vault = await startTestVault({ env: { VAULT_ROTATION_SWEEP_MS: '3600000', VAULT_CHECKOUT_SWEEP_MS: '3600000', VAULT_EPHEMERAL_SWEEP_MS: '3600000' } });
    admin = await vault.admin();
    operator = await vault.createUser(['operator']);
    vendor = await vault.createUser(['vendor']);
    for (const u of [admin, operator, vendor]) sensitive.push(u.id, u.username, u.password, u.secret, u.auth.replace(/^Bearer /, ''));
  });
  afterAll(() => vault?.close());

  it('exposes every vault metric, with plausible values, and labels that never carry an id, a username or a secret', async () => {
    const before = (await scrape()).samples;
    expect(value(before, 'vault_pending_approvals', { kind: 'checkout' })).toBe(0);
    expect(value(before, 'vault_pending_approvals', { kind: 'ephemeral' })).toBe(0);
    expect(value(before, 'vault_mfa_failures_total', { reason: 'MFA_INVALID' })).toBe(0);
    expect(value(before, 'vault_mfa_failures_total', { reason: 'MFA_REPLAYED' })).toBe(0);

    // a target, an account that needs one approval, and an open checkout request for it
    const target = postgresTarget();
    sensitive.push(target.admin.password, target.name);
    const targetId = (await as(admin).post('/v1/targets', target, true).expect(201)).body.id as string;
    const input = accountInput(targetId, { policy: { approvalsRequired: 1 } });
    sensitive.push(input.password, input.username);
    const accountId = (await as(admin).post('/v1/accounts', input, true).expect(201)).body.id as string;
    const checkout = (await as(operator).post('/v1/checkouts', { accountId, justification: 'metrics test' }, true).expect(201)).body;
    expect(checkout.status).toBe('pending_approval');
    // a one-time account request waiting for its approver
    await as(admin).put(`/v1/targets/${targetId}/ephemeral-policy`, { approvalsRequired: 1, maxTtlSeconds: 3600 }, true).expect(200);
    const eph = (await as(operator).post('/v1/ephemeral-accounts', { targetId, vendorUserId: vendor.id, ttlSeconds: 600, justification: 'metrics test' }).expect(201)).body;
    expect(eph.status).toBe('pending_approval');
    sensitive.push(targetId, accountId, checkout.id, eph.id);

    // two failed MFA checks (a wrong code, then a replayed one) and a read of the checkout by its id
    await as(operator).get(`/v1/checkouts/${checkout.id}`).expect(200);
    const stepUp = `/v1/checkouts/${checkout.id}/extend`;
    expect((await vault.http().post(stepUp).set('Authorization', operator.auth).set('X-MFA-Code', '000000').send({ ttlSeconds: 60 }).expect(401)).body.code).toBe(
      'MFA_INVALID',
    );
    const code = await operator.code();
    await vault.http().post(stepUp).set('Authorization', operator.auth).set('X-MFA-Code', code).send({ ttlSeconds: 60 }).expect(409); // burned, then refused: not active
    expect((await vault.http().post(stepUp).set('Authorization', operator.auth).set('X-MFA-Code', code).send({ ttlSeconds: 60 }).expect(401)).body.code).toBe(
      'MFA_REPLAYED',
    );
    // a path no route matches, with an id and a random value in it
    const stray = `/v1/nowhere/${randomUUID()}/${randomBytes(8).toString('hex')}`;
    sensitive.push(stray);
    await vault.http().get(stray).expect(404);
    // a body the JSON parser refuses: no route was reached
    await vault.http().post('/v1/auth/login').set('Content-Type', 'application/json').send(`{"username": "admin", "password": "${input.password}"`).expect(400);
    // a query string with a secret in it, on a real route
    await as(admin).get(`/v1/accounts?cursor=${encodeURIComponent(input.password)}`);

    const { text, samples } = await scrape();
    expect(value(samples, 'vault_pending_approvals', { kind: 'checkout' })).toBe(1);
    expect(value(samples, 'vault_pending_approvals', { kind: 'ephemeral' })).toBe(1);
    expect(value(samples, 'vault_checkouts', { state: 'pending_approval' })).toBe(1);
    expect(value(samples, 'vault_checkouts', { state: 'active' })).toBe(0);
    expect(value(samples, 'vault_accounts', { status: 'checked_out' })).toBe(1);
    expect(value(samples, 'vault_accounts', { status: 'needs_attention' })).toBe(0);
    expect(value(samples, 'vault_ephemeral_accounts', { status: 'active' })).toBe(0);
    expect(value(samples, 'vault_rotations_pending')).toBe(0);
    expect(text).toContain('# TYPE vault_rotations_total counter');
    expect(value(samples, 'vault_mfa_failures_total', { reason: 'MFA_INVALID' })).toBe(1);
    expect(value(samples, 'vault_mfa_failures_total', { reason: 'MFA_REPLAYED' })).toBe(1);
    expect(value(samples, 'vault_process_process_resident_memory_bytes')).toBeGreaterThan(0);

    // the histogram: by route pattern, method and status; buckets from 5 ms to 10 s
    const h = 'vault_http_request_duration_seconds';
    expect(text).toContain(`# TYPE ${h} histogram`);
    expect(value(samples, `${h}_count`, { method: 'GET', route: '/v1/checkouts/:id', status: '200' })).toBe(1);
    expect(value(samples, `${h}_count`, { method: 'POST', route: '/v1/checkouts/:id/extend', status: '401' })).toBe(2);
    expect(value(samples, `${h}_count`, { method: 'POST', route: '/v1/checkouts', status: '201' })).toBe(1);
    expect(value(samples, `${h}_count`, { method: 'POST', route: '/v1/auth/login', status: '200' })).toBeGreaterThanOrEqual(3);
    expect(value(samples, `${h}_count`, { method: 'GET', route: '/v1/accounts' })).toBe(1);
    expect(value(samples, `${h}_count`, { method: 'GET', route: 'unmatched', status: '404' })).toBe(1);
    expect(value(samples, `${h}_count`, { method: 'POST', route: 'unmatched', status: '400' })).toBe(1);
    expect(value(samples, `${h}_count`, { route: '/metrics', status: '200' })).toBe(1); // the first scrape
    const buckets = samples.filter((s) => s.name === `${h}_bucket` && s.labels.route === '/v1/checkouts/:id').map((s) => s.labels.le);
    expect(buckets).toEqual(['0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5', '5', '10', '+Inf']);
    const sum = value(samples, `${h}_sum`, { method: 'GET', route: '/v1/checkouts/:id' });
    expect(sum).toBeGreaterThan(0);
    expect(sum).toBeLessThan(10);
    expect(value(samples, 'vault_http_errors_total', { class: '4xx' })).toBeGreaterThanOrEqual(5);
    expect(value(samples, 'vault_http_errors_total', { class: '5xx' })).toBe(0);

    // every route label is a pattern or "unmatched": nothing a client typed
    const routes = new Set(samples.filter((s) => s.name.startsWith(h)).map((s) => s.labels.route));
    for (const r of routes) expect(r).toMatch(/^(unmatched|\/[a-z0-9/:-]*)$/);
    expect([...routes].filter((r) => r.includes(':id')).length).toBeGreaterThan(0);

    // no label value anywhere contains an id, a username or a secret of this test
    const labelValues = samples.flatMap((s) => Object.values(s.labels));
    for (const v of labelValues) expect(v).toMatch(/^[A-Za-z0-9_.+:/-]*$/);
    for (const s of sensitive.filter((x) => x.length >= 6)) {
      expect({ secret: s.slice(0, 3) + '…', found: text.includes(s) }).toEqual({ secret: s.slice(0, 3) + '…', found: false });
    }
  });
});

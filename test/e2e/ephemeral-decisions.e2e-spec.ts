import { randomUUID } from 'node:crypto';
import type { Actor, Role } from '../../src/common/actor';
import { ClaimedWork, INSTANCE_ID, RenewOptions, Queryable } from '../../src/database/claimed-work';
import { EphemeralProvisioner } from '../../src/ephemeral/ephemeral-provisioner.service';
import { EphemeralStore } from '../../src/ephemeral/ephemeral-store';
import { EphemeralModule } from '../../src/ephemeral/ephemeral.module';
import { EphemeralService } from '../../src/ephemeral/ephemeral.service';
import type { TargetType } from '../../src/crypto/password-generator';
import { TargetsService } from '../../src/targets/targets.service';
import { buildModule, ModuleHarness, TEST_ADMIN } from '../support/module-harness';

/**
 * The one-time account decisions the reaper and the claim make, on the services themselves (module harness: a real
 * database, fake targets, the test clock; no HTTP): one poison row never stops the others' removal, failed removals
 * back off and end in needs_attention at the attempt limit, and a claim that lapsed before the create never touches
 * the target.
 */
const MAX_ATTEMPTS = 3;

describe('one-time account decisions (module harness)', () => {
  let h: ModuleHarness;
  let requester: Actor;
  let vendor: Actor;

  async function user(roles: Role[]): Promise<Actor> {
    const id = randomUUID();
    const name = `u${id.slice(0, 8)}`;
    await h.db.query('INSERT INTO users (id, username, password_hash, roles) VALUES ($1, $2, $3, $4)', [id, name, 'not-a-hash', roles]);
    return { id, kind: 'user', name, roles, mfaEnrolled: true };
  }

  /** A target of `type` whose one-time accounts need no approval. */
  async function target(type: TargetType): Promise<string> {
    const options = type === 'postgres' ? { database: 'postgres' } : {};
    const port = { ssh: 22, postgres: 5432, mysql: 3306 }[type];
    const t = await h.get(TargetsService).create(TEST_ADMIN, {
      name: `t-${randomUUID().slice(0, 8)}`,
      type,
      host: `${type}.invalid`,
      port,
      admin: { username: 'vault_admin', password: 'Admin-Password-1' },
      options,
    });
    await h.get(EphemeralService).setPolicy(TEST_ADMIN, t.id, { approvalsRequired: 0, maxTtlSeconds: 3600 });
    return t.id;
  }

  /** Requested, approved (no approval needed) and claimed: the account exists on the fake target. */
  async function claimed(targetId: string, ttlSeconds = 600) {
    const request = await h.get(EphemeralService).request(requester, { targetId, vendorUserId: vendor.id, ttlSeconds, justification: 'decision test' });
    expect(request.status).toBe('approved');
    return h.get(EphemeralProvisioner).claim(vendor, request.id);
  }

  const row = async (id: string) =>
    (
      await h.db.query<{ status: string; attempts: number; last_error: string | null; claimed_by: string | null; retry_in: number | null }>(
        'SELECT status, attempts, last_error, claimed_by, extract(epoch FROM claimed_until - now())::float AS retry_in FROM ephemeral_accounts WHERE id = $1',
        [id],
      )
    )[0];
  /** The retry of a failed removal is due now (its backoff is database time). */
  const lapseClaim = (id: string) => h.db.query("UPDATE ephemeral_accounts SET claimed_until = now() - interval '1 second' WHERE id = $1", [id]);
  const events = async (id: string) =>
    (await h.db.query<{ type: string; details: Record<string, unknown> }>('SELECT type, details FROM audit_events WHERE subject_id = $1 ORDER BY id', [id]));

  beforeAll(async () => {
    h = await buildModule({ imports: [EphemeralModule], env: { VAULT_EPHEMERAL_MAX_ATTEMPTS: String(MAX_ATTEMPTS) } });
    requester = await user(['operator']);
    vendor = await user(['vendor']);
  });
  afterAll(() => h?.close());
  afterEach(async () => {
    for (const type of ['ssh', 'postgres', 'mysql'] as const) h.fake(type).reset();
    // nothing of one case is due in the next
    await h.db.query("UPDATE ephemeral_accounts SET status = 'revoked', claimed_by = NULL WHERE status NOT IN ('denied', 'revoked', 'expired')");
  });

  it('the reaper: an account whose target credential no longer decrypts does not stop the removal of the others', async () => {
    const pg = h.fake('postgres');
    const [t1, t2, t3] = [await target('postgres'), await target('postgres'), await target('postgres')];
    const [a1, a2, a3] = [await claimed(t1), await claimed(t2), await claimed(t3)];
    expect([...pg.users.keys()]).toEqual(expect.arrayContaining([a1.username, a2.username, a3.username]));
    // the poison: the middle account's target was changed outside the API, its admin credential no longer decrypts
    await h.db.query("UPDATE targets SET host = 'elsewhere.invalid' WHERE id = $1", [t2]);
    h.clock.advance(601_000);

    expect(await h.get(EphemeralProvisioner).reap()).toEqual({ lapsed: 0, removed: 3 });
    expect((await row(a1.id)).status).toBe('expired');
    expect((await row(a3.id)).status).toBe('expired');
    expect(pg.users.has(a1.username)).toBe(false);
    expect(pg.users.has(a3.username)).toBe(false);
    // the poison backs off (15 s, jittered) and is retried; nothing reached its target
    const poison = await row(a2.id);
    expect(poison).toMatchObject({ status: 'revoking', attempts: 1, last_error: 'TARGET_CREDENTIAL_UNREADABLE', claimed_by: null });
    expect(poison.retry_in).toBeGreaterThan(5);
    expect(poison.retry_in).toBeLessThanOrEqual(15);
    expect(pg.calls('deleteUser', a2.username)).toEqual([]);
    expect(pg.users.has(a2.username)).toBe(true);
    expect((await events(a2.id)).map((e) => e.type).slice(-2)).toEqual(['ephemeral.expired', 'ephemeral.remove_failed']);
    // not due again before its backoff
    expect(await h.get(EphemeralProvisioner).reap()).toEqual({ lapsed: 0, removed: 0 });
  });

  it('removal failures back off (doubling) and end in needs_attention at the attempt limit; it is still retried, hourly', async () => {
    const ssh = h.fake('ssh');
    const account = await claimed(await target('ssh'));
    ssh.fail('deleteUser', 'TARGET_UNREACHABLE', { times: Infinity });
    h.clock.advance(601_000);
    const reaper = h.get(EphemeralProvisioner);

    const seen: Array<{ status: string; attempts: number; retry_in: number | null }> = [];
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      expect(await reaper.reap()).toEqual({ lapsed: 0, removed: 1 });
      const r = await row(account.id);
      seen.push({ status: r.status, attempts: r.attempts, retry_in: r.retry_in });
      expect(r.last_error).toBe('TARGET_UNREACHABLE');
      expect(r.claimed_by).toBeNull();
      await lapseClaim(account.id);
    }
    expect(seen.map((s) => [s.status, s.attempts])).toEqual([
      ['revoking', 1],
      ['revoking', 2],
      ['needs_attention', 3],
    ]);
    // 15 s then 30 s (each jittered down to half at most), then the hourly retry of needs_attention
    expect(seen[0].retry_in).toBeGreaterThan(7);
    expect(seen[0].retry_in).toBeLessThanOrEqual(15);
    expect(seen[1].retry_in).toBeGreaterThan(14);
    expect(seen[1].retry_in).toBeLessThanOrEqual(30);
    expect(seen[2].retry_in).toBeGreaterThan(3590);
    const failures = (await events(account.id)).filter((e) => e.type === 'ephemeral.remove_failed').map((e) => e.details);
    expect(failures).toEqual([
      expect.objectContaining({ attempts: 1, errorCode: 'TARGET_UNREACHABLE', needsAttention: false }),
      expect.objectContaining({ attempts: 2, errorCode: 'TARGET_UNREACHABLE', needsAttention: false }),
      expect.objectContaining({ attempts: 3, errorCode: 'TARGET_UNREACHABLE', needsAttention: true }),
    ]);
    expect(ssh.calls('deleteUser', account.username)).toHaveLength(MAX_ATTEMPTS);

    // the target answers again: the hourly retry removes it
    ssh.reset();
    expect(await reaper.reap()).toEqual({ lapsed: 0, removed: 1 });
    expect(await row(account.id)).toMatchObject({ status: 'expired', last_error: null });
    expect(ssh.users.has(account.username)).toBe(false);
  });

  describe('a claim whose claim lapsed before the create', () => {
    /** Runs `meanwhile` right before the claimant renews its claim on the intent (between the intent and the create). */
    function beforeRenew(meanwhile: (id: string) => Promise<unknown>) {
      const work = h.get(ClaimedWork);
      const renew = work.renew.bind(work);
      return jest.spyOn(work, 'renew').mockImplementationOnce(async (q: Queryable, o: RenewOptions) => {
        await meanwhile(o.id);
        return renew(q, o);
      });
    }

    it('never touches the target: the intent goes to the reaper, which removes anything that may be there', async () => {
      const pg = h.fake('postgres');
      const targetId = await target('postgres');
      const request = await h.get(EphemeralService).request(requester, { targetId, vendorUserId: vendor.id, ttlSeconds: 600, justification: 'decision test' });
      beforeRenew(lapseClaim);
      await expect(h.get(EphemeralProvisioner).claim(vendor, request.id)).rejects.toMatchObject({ code: 'REVOKED', status: 410 });
      const [intent] = await h.db.query<{ status: string; end_reason: string; username: string; claimed_by: string | null }>(
        'SELECT status, end_reason, username, claimed_by FROM ephemeral_accounts WHERE id = $1',
        [request.id],
      );
      expect(pg.calls('newUser', intent.username)).toEqual([]);
      expect(intent).toMatchObject({ status: 'revoking', end_reason: 'create_failed', claimed_by: null });
      expect((await events(request.id)).map((e) => e.type)).toEqual(['ephemeral.requested', 'ephemeral.claimed', 'ephemeral.create_failed']);
      // the reaper's removal is idempotent: it asks the target to delete what may be there, and the row ends
      await lapseClaim(request.id);
      expect(await h.get(EphemeralProvisioner).reap()).toEqual({ lapsed: 0, removed: 1 });
      expect((await row(request.id)).status).toBe('revoked');
      expect(pg.calls('newUser', intent.username)).toEqual([]);
      expect(pg.calls('deleteUser', intent.username)).toHaveLength(1);
    });

    it('never touches the target when the reaper of another instance took the intent over meanwhile', async () => {
      const pg = h.fake('postgres');
      const targetId = await target('postgres');
      const request = await h.get(EphemeralService).request(requester, { targetId, vendorUserId: vendor.id, ttlSeconds: 600, justification: 'decision test' });
      const store = h.get(EphemeralStore);
      beforeRenew(async (id) => {
        await lapseClaim(id);
        const taken = await store.takeForRemoval(h.dataSource, { now: h.clock.now(), claimant: 'another-instance', claimSeconds: 60 });
        expect(taken).toMatchObject({ id, reason: 'reaped' });
      });
      await expect(h.get(EphemeralProvisioner).claim(vendor, request.id)).rejects.toMatchObject({ code: 'REVOKED' });
      const [{ username }] = await h.db.query<{ username: string }>('SELECT username FROM ephemeral_accounts WHERE id = $1', [request.id]);
      expect(pg.calls('newUser', username)).toEqual([]);
      // the other instance's removal is untouched by the failed claimant
      expect(await row(request.id)).toMatchObject({ status: 'revoking', claimed_by: 'another-instance' });
      expect(INSTANCE_ID).not.toBe('another-instance');
    });
  });

  it('ephemeral.created records when the target itself stops the account: null for MySQL (no account expiry), never silently', async () => {
    const pgAccount = await claimed(await target('postgres'));
    const myAccount = await claimed(await target('mysql'));
    const created = async (id: string) => (await events(id)).find((e) => e.type === 'ephemeral.created')?.details;
    expect(await created(pgAccount.id)).toMatchObject({ expiresOnTarget: pgAccount.expiresAt });
    expect(await created(myAccount.id)).toMatchObject({ expiresOnTarget: null });
    expect(h.fake('mysql').created.get(myAccount.username)).toEqual({});
  });
});

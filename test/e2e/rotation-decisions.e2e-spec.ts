import { randomBytes, randomUUID } from 'node:crypto';
import { Account, AccountStore } from '../../src/accounts/account-store';
import { DEFAULT_POLICY } from '../../src/accounts/policy';
import { INSTANCE_ID } from '../../src/database/claimed-work';
import { UnitOfWork } from '../../src/database/unit-of-work';
import { HeartbeatService } from '../../src/rotation/heartbeat.service';
import { RotationStore } from '../../src/rotation/rotation-store';
import { RotationService } from '../../src/rotation/rotation.service';
import { RotationModule } from '../../src/rotation/rotation.module';
import { FakeConnector } from '../support/fake-connector';
import { buildModule } from '../support/module-harness';
import { createFakeTarget } from '../support/fake-target';

/**
 * Rotation's decisions, tested directly on the rotation module (a real database, a fake PostgreSQL target, no HTTP):
 * how recovery settles an abandoned rotation by test logins, that a lapsed claim never touches the target, and that
 * one poisoned pending rotation does not stop recovery of the others, due rotations or the heartbeat.
 */

const CURRENT = 'Current-Password-1';

/** A harness with one fake PostgreSQL target and helpers to put accounts and rotations in a given state. */
async function rotationWorld(env: Record<string, string> = {}) {
  const h = await buildModule({ imports: [RotationModule], env: { VAULT_ROTATION_MAX_FAILURES: '3', ...env } });
  const pg: FakeConnector = h.fake('postgres');
  const em = () => h.dataSource.manager;
  const newTarget = () => createFakeTarget(h);
  const targetId = await newTarget();

  /** An account that exists on the fake target with the password the vault holds. */
  const account = async (o: { targetId?: string; failures?: number } = {}): Promise<Account> => {
    const username = `u_${randomBytes(4).toString('hex')}`;
    pg.users.set(username, CURRENT);
    const id = randomUUID();
    await h.get(AccountStore).create(em(), { id, targetId: o.targetId ?? targetId, username, password: CURRENT, policy: DEFAULT_POLICY, nextRotationAt: new Date(Date.now() + 3600_000) });
    if (o.failures) await h.db.query('UPDATE accounts SET rotation_failures = $2 WHERE id = $1', [id, o.failures]);
    return h.get(AccountStore).find(em(), id);
  };
  /** Step 1 only (this instance's claim), and the pending password it wrote. */
  const writeAhead = async (a: Account) => {
    const rotationId = await h.get(UnitOfWork).run((tx) => h.get(RotationService).writeAhead(tx, a, 'manual', null));
    return { rotationId, pending: (await h.get(RotationStore).loadPending(rotationId)).password };
  };
  /** What a dead instance leaves: the claim is someone else's and has lapsed. */
  const abandon = (rotationId: string) => h.db.query("UPDATE rotations SET claimed_by = 'dead-instance', claimed_until = now() - interval '1 second' WHERE id = $1", [rotationId]);
  const state = async (accountId: string, rotationId: string) => {
    const a = await h.get(AccountStore).find(em(), accountId);
    const [r] = await h.db.query<{ status: string; error_code: string | null; has_secret: boolean; claimed_by: string }>(
      'SELECT status, error_code, pending_secret IS NOT NULL AS has_secret, claimed_by FROM rotations WHERE id = $1',
      [rotationId],
    );
    const events = await h.db.query<{ type: string; details: Record<string, unknown> }>("SELECT type, details FROM audit_events WHERE subject_id = $1 AND type <> 'rotation.started' ORDER BY id", [accountId]);
    return { account: a, password: h.get(AccountStore).password(a), rotation: r, events };
  };
  return { h, pg, em, newTarget, targetId, account, writeAhead, abandon, state };
}

describe('rotation recovery decides by test logins (module tier)', () => {
  let w: Awaited<ReturnType<typeof rotationWorld>>;
  beforeAll(async () => {
    w = await rotationWorld();
  }, 60_000);
  afterAll(() => w?.h.close());
  afterEach(() => w.pg.reset());

  interface Row {
    /** What the target holds for the account when recovery logs in. */
    target: 'pending' | 'current' | 'neither' | 'cannot tell';
    failuresBefore: number;
    account: { status: string; failures: number; password: 'pending' | 'current'; nextRotation: 'backoff' | 'interval' | 'none' | 'unchanged' };
    rotation: { status: string; errorCode: string | null };
    event: { type: string; details: Record<string, unknown> } | null;
  }
  const table: Array<[string, Row]> = [
    [
      'the pending password works: it becomes current',
      { target: 'pending', failuresBefore: 0, account: { status: 'available', failures: 0, password: 'pending', nextRotation: 'interval' }, rotation: { status: 'succeeded', errorCode: null }, event: { type: 'rotation.succeeded', details: { how: 'recovered' } } },
    ],
    [
      'the current password works: the pending one is dropped, counted as a failure',
      { target: 'current', failuresBefore: 0, account: { status: 'available', failures: 1, password: 'current', nextRotation: 'backoff' }, rotation: { status: 'failed', errorCode: 'ABANDONED' }, event: { type: 'rotation.failed', details: { errorCode: 'ABANDONED', failures: 1, currentPasswordWorks: true, needsAttention: false } } },
    ],
    [
      'neither works: a failure, retried after a backoff (the admin credential can always set a fresh one)',
      { target: 'neither', failuresBefore: 0, account: { status: 'available', failures: 1, password: 'current', nextRotation: 'backoff' }, rotation: { status: 'failed', errorCode: 'ABANDONED' }, event: { type: 'rotation.failed', details: { failures: 1, currentPasswordWorks: false, needsAttention: false } } },
    ],
    [
      'neither works at the failure limit: needs_attention, not rotated again',
      { target: 'neither', failuresBefore: 2, account: { status: 'needs_attention', failures: 3, password: 'current', nextRotation: 'none' }, rotation: { status: 'failed', errorCode: 'ABANDONED' }, event: { type: 'rotation.failed', details: { failures: 3, currentPasswordWorks: false, needsAttention: true } } },
    ],
    [
      'the target cannot tell: the rotation stays pending (claimed by this instance) and nothing is decided',
      { target: 'cannot tell', failuresBefore: 0, account: { status: 'rotating', failures: 0, password: 'current', nextRotation: 'unchanged' }, rotation: { status: 'pending', errorCode: null }, event: null },
    ],
  ];

  it.each(table)('%s', async (_name, row) => {
    const a = await w.account({ failures: row.failuresBefore });
    const { rotationId, pending } = await w.writeAhead(a);
    await w.abandon(rotationId);
    if (row.target === 'pending') w.pg.users.set(a.username, pending);
    if (row.target === 'neither') w.pg.users.set(a.username, 'Changed-Behind-The-Vault-9');
    if (row.target === 'cannot tell') w.pg.cannotTell('login', { username: a.username, times: Infinity });

    const before = Date.now();
    expect(await w.h.get(RotationService).recoverStale()).toBe(1);
    const s = await w.state(a.id, rotationId);

    expect(s.account.status).toBe(row.account.status);
    expect(s.account.rotationFailures).toBe(row.account.failures);
    expect(s.password).toBe(row.account.password === 'pending' ? pending : CURRENT);
    const next = s.account.nextRotationAt?.getTime() ?? null;
    if (row.account.nextRotation === 'none') expect(next).toBeNull();
    if (row.account.nextRotation === 'unchanged') expect(next).toBe(a.nextRotationAt?.getTime());
    if (row.account.nextRotation === 'backoff') {
      // 30 s for the first failure, jittered down to no less than half
      expect(next! - before).toBeGreaterThanOrEqual(14_000);
      expect(next! - Date.now()).toBeLessThanOrEqual(30_000);
    }
    if (row.account.nextRotation === 'interval') expect(next! - before).toBeGreaterThan(DEFAULT_POLICY.rotationIntervalSeconds * 1000 - 60_000);
    expect({ status: s.rotation.status, errorCode: s.rotation.error_code }).toEqual(row.rotation);
    expect(s.rotation.has_secret).toBe(row.rotation.status === 'pending');
    if (row.rotation.status === 'pending') expect(s.rotation.claimed_by).toBe(INSTANCE_ID);
    if (row.event) expect(s.events).toEqual([{ type: row.event.type, details: expect.objectContaining({ rotationId, ...row.event.details }) }]);
    else expect(s.events).toEqual([]);
    // recovery only logs in: it never sets a password on the target
    expect(w.pg.calls('updatePassword', a.username)).toEqual([]);
  });

  it('a claim that lapsed before the target change: the target is never touched, and recovery keeps the current password', async () => {
    const a = await w.account();
    const { rotationId } = await w.writeAhead(a);
    await w.h.db.query("UPDATE rotations SET claimed_until = now() - interval '1 second' WHERE id = $1", [rotationId]);
    expect(await w.h.get(RotationService).execute(rotationId)).toBe('pending');
    expect(w.pg.calls('updatePassword', a.username)).toEqual([]);
    expect(w.pg.users.get(a.username)).toBe(CURRENT);

    expect(await w.h.get(RotationService).recoverStale()).toBe(1);
    const s = await w.state(a.id, rotationId);
    expect(s.account).toMatchObject({ status: 'available', rotationFailures: 1 });
    expect(s.password).toBe(CURRENT);
    expect(s.rotation).toMatchObject({ status: 'failed', error_code: 'ABANDONED' });
    expect(w.pg.calls('updatePassword', a.username)).toEqual([]);
  });

  it.each([
    ['the change is refused', { afterEffect: false }, { result: 'failed', status: 'failed', password: 'current', errorCode: 'TARGET_ERROR' }],
    ['the change took effect but its answer was lost', { afterEffect: true }, { result: 'succeeded', status: 'succeeded', password: 'pending', errorCode: null }],
  ] as const)('a running rotation whose target change fails (%s) is settled the same way', async (_name, fault, expected) => {
    const a = await w.account();
    const { rotationId, pending } = await w.writeAhead(a);
    w.pg.fail('updatePassword', 'TARGET_ERROR', { username: a.username, afterEffect: fault.afterEffect });
    expect(await w.h.get(RotationService).execute(rotationId)).toBe(expected.result);
    const s = await w.state(a.id, rotationId);
    expect(s.rotation).toMatchObject({ status: expected.status, error_code: expected.errorCode });
    expect(s.password).toBe(expected.password === 'pending' ? pending : CURRENT);
    expect(w.pg.users.get(a.username)).toBe(s.password);
  });
});

describe('a poisoned pending rotation does not stop the sweeps (module tier)', () => {
  let w: Awaited<ReturnType<typeof rotationWorld>>;
  beforeAll(async () => {
    w = await rotationWorld();
  }, 60_000);
  afterAll(() => w?.h.close());

  it("one pending rotation whose target's secret does not decrypt is skipped; others' recovery, due rotations and the heartbeat still run", async () => {
    // the poison: an abandoned rotation on a target whose admin credential no longer decrypts (its row changed outside the API)
    const poisonTarget = await w.newTarget();
    const poisoned = await w.account({ targetId: poisonTarget });
    const poison = await w.writeAhead(poisoned);
    await w.abandon(poison.rotationId);
    await w.h.db.query("UPDATE targets SET host = 'elsewhere.example.net' WHERE id = $1", [poisonTarget]);
    // another abandoned rotation, whose pending password was set on its target before its instance died
    const other = await w.account();
    const otherRotation = await w.writeAhead(other);
    await w.abandon(otherRotation.rotationId);
    w.pg.users.set(other.username, otherRotation.pending);
    // an account due for rotation, and one due for its heartbeat
    const due = await w.account();
    await w.h.db.query("UPDATE accounts SET next_rotation_at = now() - interval '1 minute' WHERE id = $1", [due.id]);
    const checked = await w.account();

    const rotation = w.h.get(RotationService);
    expect(await rotation.recoverStale()).toBe(2); // both taken: the poison skipped (logged), the other settled
    expect((await w.state(other.id, otherRotation.rotationId)).rotation.status).toBe('succeeded');
    expect(await rotation.rotateDue()).toBe(1);
    const [scheduled] = await w.h.db.query<{ status: string }>("SELECT status FROM rotations WHERE account_id = $1 AND reason = 'scheduled'", [due.id]);
    expect(scheduled.status).toBe('succeeded');
    await w.h.db.query('UPDATE accounts SET last_verified_at = now() WHERE id <> $1', [checked.id]);
    expect(await w.h.get(HeartbeatService).run()).toEqual({ checked: 1, drifted: 0 });
    expect(w.pg.calls('login', checked.username)).toEqual([{ op: 'login', username: checked.username, result: 'ok' }]);

    // the poison is still pending and untouched, for an admin to fix (its credential must be entered again)
    const p = await w.state(poisoned.id, poison.rotationId);
    expect(p.rotation.status).toBe('pending');
    expect(p.account.status).toBe('rotating');
    expect(w.pg.calls('updatePassword', poisoned.username)).toEqual([]);
    expect(w.pg.calls('login', poisoned.username)).toEqual([]);
  });
});

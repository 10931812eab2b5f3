import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EntityManager } from 'typeorm';
import { ACCOUNT_STATUSES, ACCOUNT_TRANSITIONS, AccountStatus, AccountTransition, accountTransitionsMarkdown } from '../../src/accounts/account-states';
import { accountSettledSql, AccountStore } from '../../src/accounts/account-store';
import { AccountsModule } from '../../src/accounts/accounts.module';
import { DEFAULT_POLICY } from '../../src/accounts/policy';
import { TargetsModule } from '../../src/targets/targets.module';
import { buildModule, ModuleHarness } from '../support/module-harness';
import { createFakeTarget } from '../support/fake-target';

/**
 * The account life cycle (src/accounts/account-states.ts) on a real database: every named transition from every
 * status — the allowed ones happen (status, version, updated_at, what else they set), the forbidden ones change
 * nothing — and docs/architecture.md shows the same table as the code.
 */
describe('account state machine (AccountStore on a real database)', () => {
  let h: ModuleHarness;
  let store: AccountStore;
  let targetId: string;
  const em = (): EntityManager => h.dataSource.manager;

  beforeAll(async () => {
    h = await buildModule({ imports: [AccountsModule, TargetsModule] });
    store = h.get(AccountStore);
    targetId = await createFakeTarget(h, 'postgres', 'states-pg');
  }, 60_000);
  afterAll(() => h?.close());

  /** A fresh account with a password, put in `status` the way only a test may (raw SQL). */
  const accountIn = async (status: AccountStatus, o: { password?: string | null; mustRotate?: boolean } = {}) => {
    const id = randomUUID();
    await store.create(em(), {
      id,
      targetId,
      username: `u_${id.slice(0, 8)}`,
      password: o.password === undefined ? 'Old-Password-1' : o.password,
      policy: DEFAULT_POLICY,
      nextRotationAt: new Date(Date.now() + 3600_000),
    });
    await h.db.query("UPDATE accounts SET status = $2, must_rotate = $3, updated_at = now() - interval '1 hour' WHERE id = $1", [id, status, o.mustRotate ?? false]);
    return id;
  };
  const row = async (id: string) =>
    (
      await h.db.query<{ status: AccountStatus; version: number; stamped: boolean; must_rotate: boolean; rotation_failures: number; next_rotation_at: Date | null }>(
        "SELECT status, version, updated_at > now() - interval '1 minute' AS stamped, must_rotate, rotation_failures, next_rotation_at FROM accounts WHERE id = $1",
        [id],
      )
    )[0];

  const later = () => new Date(Date.now() + 60_000);
  /** Each transition as its store method; a Record, so a transition added to the table without a case here does not compile. */
  const run: Record<AccountTransition, (id: string) => Promise<boolean>> = {
    takeForCheckout: async (id) => (await store.takeForCheckout(em(), id)) !== null,
    release: (id) => store.release(em(), id),
    beginRotation: (id) => store.beginRotation(em(), id),
    markMustRotate: (id) => store.markMustRotate(em(), id),
    finishRotation: (id) => store.finishRotation(em(), id, 'New-Password-2', new Date(), later()),
    failRotation: (id) => store.failRotation(em(), id, { attention: false, failures: 1, nextAt: later() }),
    needsAttention: (id) => store.failRotation(em(), id, { attention: true, failures: 3, nextAt: null }),
    remove: (id) => store.remove(em(), id),
  };

  const cases = (Object.keys(ACCOUNT_TRANSITIONS) as AccountTransition[]).flatMap((t) => ACCOUNT_STATUSES.map((from) => [t, from] as const));

  it.each(cases)('%s from %s: happens exactly when the table allows it', async (transition, from) => {
    const rule = ACCOUNT_TRANSITIONS[transition];
    const id = await accountIn(from);
    const before = await row(id);
    const happened = await run[transition](id);
    const after = await row(id);
    if (!rule.from.includes(from)) {
      expect(happened).toBe(false);
      expect(after).toEqual(before); // forbidden: nothing changed, not even the version
      return;
    }
    expect(happened).toBe(true);
    if (rule.to === 'deleted') {
      expect(after).toBeUndefined();
      return;
    }
    expect(after.status).toBe(rule.to);
    expect(after.version).toBe(before.version + 1);
    expect(after.stamped).toBe(true);
  });

  it('takeForCheckout also needs a password, no must_rotate and the caller guard; whyNotTakeable names each', async () => {
    const noPassword = await accountIn('available', { password: null });
    const mustRotate = await accountIn('available', { mustRotate: true });
    const guarded = await accountIn('available');
    expect(await store.takeForCheckout(em(), noPassword)).toBeNull();
    expect(await store.takeForCheckout(em(), mustRotate)).toBeNull();
    expect(await store.takeForCheckout(em(), guarded, 'a.id IS NULL')).toBeNull();
    expect(await store.whyNotTakeable(em(), noPassword)).toMatchObject({ code: 'ACCOUNT_NO_PASSWORD' });
    expect(await store.whyNotTakeable(em(), mustRotate)).toMatchObject({ code: 'ACCOUNT_ROTATION_PENDING' });
    expect(await store.whyNotTakeable(em(), guarded)).toBeNull(); // the account allows it: the caller's guard refused
    expect(await store.whyNotTakeable(em(), await accountIn('checked_out'))).toMatchObject({ code: 'ACCOUNT_CHECKED_OUT' });
    expect(await store.whyNotTakeable(em(), await accountIn('rotating'))).toMatchObject({ code: 'ACCOUNT_ROTATING' });
    expect(await store.whyNotTakeable(em(), await accountIn('needs_attention'))).toMatchObject({ code: 'ACCOUNT_NEEDS_ATTENTION' });
    expect(await store.whyNotTakeable(em(), randomUUID())).toMatchObject({ code: 'NOT_FOUND' });
    for (const id of [noPassword, mustRotate, guarded]) expect((await row(id)).status).toBe('available');

    const taken = await store.takeForCheckout(em(), guarded, 'a.id IS NOT NULL');
    expect(taken).toMatchObject({ id: guarded, host: 'pg.invalid', port: 5432, policy: DEFAULT_POLICY });
    expect(store.credentialOf(taken!)).toEqual({ username: `u_${guarded.slice(0, 8)}`, password: 'Old-Password-1', host: 'pg.invalid', port: 5432 });
    expect(await store.credential(em(), guarded)).toEqual(store.credentialOf(taken!));
  });

  it('the rotation transitions set what they promise; must_rotate holds until a rotation succeeds', async () => {
    const id = await accountIn('checked_out');
    expect(await store.beginRotation(em(), id)).toBe(true);
    expect(await store.markMustRotate(em(), id)).toBe(true);
    const settled = async () => (await h.db.query<{ settled: boolean }>(`SELECT ${accountSettledSql('x.id')} AS settled FROM (SELECT $1::uuid AS id) x`, [id]))[0].settled;
    expect(await settled()).toBe(false);
    expect(await store.failRotation(em(), id, { attention: false, failures: 1, nextAt: later() })).toBe(true);
    expect(await row(id)).toMatchObject({ status: 'available', must_rotate: true, rotation_failures: 1 });
    expect(await store.takeForCheckout(em(), id)).toBeNull(); // still owes its rotation
    expect(await store.beginRotation(em(), id)).toBe(true);
    expect(await store.failRotation(em(), id, { attention: true, failures: 2, nextAt: later() })).toBe(true);
    expect(await row(id)).toMatchObject({ status: 'needs_attention', rotation_failures: 2, next_rotation_at: null });
    expect(await store.beginRotation(em(), id)).toBe(true);
    const now = new Date();
    expect(await store.finishRotation(em(), id, 'New-Password-2', now, later())).toBe(true);
    const done = await store.find(em(), id);
    expect(done).toMatchObject({ status: 'available', mustRotate: false, rotationFailures: 0, lastRotatedAt: now });
    expect(store.password(done)).toBe('New-Password-2');
    expect(await settled()).toBe(true);
  });

  it('docs/architecture.md shows the transition table of the code', () => {
    const doc = readFileSync(join(__dirname, '../../docs/architecture.md'), 'utf8');
    const section = doc.split(/^## Account life cycle$/m)[1]?.split(/^## /m)[0] ?? '';
    const table = section
      .split('\n')
      .filter((l) => l.startsWith('|'))
      .join('\n');
    expect(table).toBe(accountTransitionsMarkdown());
  });
});

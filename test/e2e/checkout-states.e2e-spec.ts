import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EntityManager } from 'typeorm';
import { accountSecretRef } from '../../src/accounts/account.entity';
import { accountSettledSql } from '../../src/accounts/account-store';
import { CheckoutCleanup, CheckoutStatus } from '../../src/checkouts/checkout.entity';
import { CheckoutLifecycleService } from '../../src/checkouts/checkout-lifecycle.service';
import {
  CHECKOUT_STATUSES, CHECKOUT_TRANSITIONS, CHECKOUT_UPDATES, checkoutTransitionsMarkdown, CLEANUP_STATES, CLEANUP_TRANSITIONS, CleanupTransitionName, EndReason,
  statusAfter,
} from '../../src/checkouts/checkout-states';
import { CheckoutStore } from '../../src/checkouts/checkout-store';
import { CheckoutsModule } from '../../src/checkouts/checkouts.module';
import { SecretBoxService } from '../../src/crypto/secret-box.service';
import { ClaimedWork } from '../../src/database/claimed-work';
import { createFakeTarget } from '../support/fake-target';
import { buildModule, ModuleHarness } from '../support/module-harness';

/**
 * The checkout life cycle on a real database (docs/architecture.md "Checkout life cycle"): every transition of
 * checkout-states.ts from every status, allowed or forbidden, through the store's statements (each checks its `from`
 * in its WHERE and bumps `version`); the cleanup sub-state the same way; what the sweeps take; and the data flow from
 * the end of a checkout to its rotation and session cleanup on a (fake) target, with a poisoned item in the sweep.
 */
describe('checkout life cycle (state machine, real database)', () => {
  let h: ModuleHarness;
  let store: CheckoutStore;
  let me: string;
  let targetId: string;
  let operator: string;

  const END_REASONS: EndReason[] = ['checked_in', 'expired', 'approval_timeout', 'revoked', 'requester_disabled', 'requester_role_removed'];
  const HOUR = 3600_000;

  const tx = <T>(work: (em: EntityManager) => Promise<T>) => h.dataSource.transaction(work);

  const newUser = async (roles: string[], disabled = false) => {
    const id: string = randomUUID();
    await h.db.query('INSERT INTO users (id, username, password_hash, roles, disabled) VALUES ($1, $2, $3, $4, $5)', [id, `u-${id.slice(0, 8)}`, 'x', roles, disabled]);
    return id;
  };

  /** An account on the fake PostgreSQL target, its password known to the vault and the target. */
  const newAccount = async (o: { status?: string; mustRotate?: boolean; policy?: object } = {}) => {
    const id: string = randomUUID();
    const username = `acct_${id.slice(0, 8)}`;
    const password = `Pw-${randomUUID()}`;
    await h.db.query(
      `INSERT INTO accounts (id, target_id, username, status, password_secret, policy, next_rotation_at, must_rotate)
       VALUES ($1, $2, $3, $4, $5, $6, now() + interval '30 days', $7)`,
      [id, targetId, username, o.status ?? 'available', h.get(SecretBoxService).encrypt(accountSecretRef(id), password), o.policy ?? {}, o.mustRotate ?? false],
    );
    h.fake('postgres').users.set(username, password);
    return { id, username, password };
  };

  /** A checkout put straight into a state (the way a test sets a stage), break-glass so that it may be reviewed. */
  const seed = async (status: CheckoutStatus, o: { cleanup?: CheckoutCleanup; claimedBy?: string | null; accountId?: string; requesterId?: string; due?: boolean } = {}) => {
    const id: string = randomUUID();
    const accountId = o.accountId ?? (await newAccount({ status: status === 'active' || status === 'pending_approval' ? 'checked_out' : 'available' })).id;
    const past = new Date(Date.now() - HOUR);
    const future = new Date(Date.now() + HOUR);
    const ended = !['active', 'pending_approval'].includes(status);
    await h.db.query(
      `INSERT INTO checkouts (id, account_id, requester_id, status, justification, ttl_seconds, break_glass, approvals_required, rotate_after_checkin,
                              requested_at, approval_deadline, activated_at, expires_at, ended_at, ended_by, end_reason, cleanup, cleanup_claimed_by, cleanup_claimed_until)
       VALUES ($1, $2, $3, $4, 'test', 3600, true, 1, true, now(), $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
      [
        id,
        accountId,
        o.requesterId ?? operator,
        status,
        status === 'pending_approval' ? (o.due ? past : future) : null,
        status === 'pending_approval' ? null : past,
        status === 'pending_approval' ? null : o.due ? past : future,
        ended ? past : null,
        ended ? 'system' : null,
        ended ? (status === 'returned' ? 'checked_in' : status) : null,
        o.cleanup ?? 'none',
        o.claimedBy === undefined ? me : o.claimedBy,
        new Date(Date.now() + 60_000),
      ],
    );
    return { id, accountId };
  };

  const row = async (id: string) =>
    (
      await h.db.query<{ status: CheckoutStatus; cleanup: CheckoutCleanup; version: number; cleanup_attempts: number; reviewed: boolean }>(
        'SELECT status, cleanup, version, cleanup_attempts, reviewed_at IS NOT NULL AS reviewed FROM checkouts WHERE id = $1',
        [id],
      )
    )[0];

  beforeAll(async () => {
    h = await buildModule({ imports: [CheckoutsModule] });
    store = h.get(CheckoutStore);
    me = h.get(ClaimedWork).instanceId;
    operator = await newUser(['operator']);
    targetId = await createFakeTarget(h);
  }, 60_000);
  afterAll(() => h?.close());

  describe('status transitions: every one from every status', () => {
    type Op = { name: string; allowedFrom: readonly CheckoutStatus[]; to?: (from: CheckoutStatus) => CheckoutStatus; run: (em: EntityManager, id: string) => Promise<unknown> };
    const ops: Op[] = [
      {
        name: 'approve',
        allowedFrom: CHECKOUT_TRANSITIONS.filter((t) => t.name === 'approve').map((t) => t.from),
        to: () => 'active',
        run: (em, id) => store.activate(em, id, new Date(), new Date(Date.now() + HOUR)),
      },
      {
        name: 'deny',
        allowedFrom: CHECKOUT_TRANSITIONS.filter((t) => t.name === 'deny').map((t) => t.from),
        to: () => 'denied',
        run: (em, id) => store.deny(em, id, new Date(), operator),
      },
      ...END_REASONS.map(
        (reason): Op => ({
          name: `end (${reason})`,
          allowedFrom: CHECKOUT_STATUSES.filter((s) => statusAfter(s, reason) !== undefined),
          to: (from) => statusAfter(from, reason) as CheckoutStatus,
          run: (em, id) => store.end(em, id, reason, { endedAt: new Date(), endedBy: 'system', rotationId: null, claimedBy: me, claimSeconds: 60 }),
        }),
      ),
      { name: 'extend', allowedFrom: CHECKOUT_UPDATES.extend.in, run: (em, id) => store.extend(em, id, new Date(Date.now() + 2 * HOUR)) },
      { name: 'review', allowedFrom: CHECKOUT_UPDATES.review.in, run: (em, id) => store.review(em, id, new Date(), operator, 'looked at it') },
    ];
    const cases = ops.flatMap((op) => CHECKOUT_STATUSES.map((from) => [op.name, from, op.allowedFrom.includes(from), op] as const));

    it('the table is what the docs show, and every status but the ended ones leaves by some transition', () => {
      const doc = readFileSync(join(__dirname, '../../docs/architecture.md'), 'utf8');
      expect(doc).toContain(checkoutTransitionsMarkdown());
      const leaves = new Set(CHECKOUT_TRANSITIONS.map((t) => t.from));
      expect([...leaves].sort()).toEqual(['active', 'pending_approval']);
      // every end reason but a denial (its own transition) is recorded by some transition
      for (const reason of END_REASONS) expect(CHECKOUT_STATUSES.some((s) => statusAfter(s, reason))).toBe(true);
    });

    it.each(cases)('%s from %s: allowed = %s', async (_name, from, allowed, op) => {
      const { id } = await seed(from);
      const before = await row(id);
      const result = await tx((em) => op.run(em, id));
      const after = await row(id);
      if (allowed) {
        expect(result).not.toBeNull();
        expect(after.version).toBe(before.version + 1);
        expect(after.status).toBe(op.to ? op.to(from) : from);
        if (op.name.startsWith('end')) expect(after.cleanup).toBe(from === 'active' ? 'pending' : 'none'); // owe: none → pending
        if (op.name === 'review') expect(after.reviewed).toBe(true);
      } else {
        expect(result).toBeNull();
        expect(after).toEqual(before);
      }
    });

    it('a break-glass review happens once; an ordinary checkout is never reviewed', async () => {
      const { id } = await seed('returned');
      expect(await tx((em) => store.review(em, id, new Date(), operator, 'first'))).not.toBeNull();
      expect(await tx((em) => store.review(em, id, new Date(), operator, 'second'))).toBeNull();
      const plain = await seed('returned');
      await h.db.query('UPDATE checkouts SET break_glass = false WHERE id = $1', [plain.id]);
      expect(await tx((em) => store.review(em, plain.id, new Date(), operator, 'no'))).toBeNull();
    });

    it('owe happens only from cleanup none: an open checkout that somehow owes a cleanup is not ended again', async () => {
      const { id } = await seed('active', { cleanup: 'pending' });
      const before = await row(id);
      expect(await tx((em) => store.end(em, id, 'checked_in', { endedAt: new Date(), endedBy: 'system', rotationId: null, claimedBy: me, claimSeconds: 60 }))).toBeNull();
      expect(await row(id)).toEqual(before);
    });
  });

  describe('the cleanup sub-state: every transition from every state', () => {
    const run: Record<Exclude<CleanupTransitionName, 'owe'>, (em: EntityManager, id: string, claimant: string) => Promise<boolean>> = {
      finish: (em, id, c) => store.finishCleanup(em, id, c),
      defer: (em, id, c) => store.deferCleanup(em, id, c),
      retry: (em, id, c) => store.failCleanup(em, id, c, { attempts: 1, giveUp: false, backoffSeconds: 30 }),
      give_up: (em, id, c) => store.failCleanup(em, id, c, { attempts: 1, giveUp: true, backoffSeconds: 30 }),
    };
    const cases = CLEANUP_TRANSITIONS.filter((t) => t.name !== 'owe').flatMap((t) =>
      CLEANUP_STATES.map((from) => [t.name as Exclude<CleanupTransitionName, 'owe'>, from, t.from === from, t.to] as const),
    );

    it.each(cases)('%s from %s (this instance holding the claim): allowed = %s', async (name, from, allowed, to) => {
      const { id } = await seed('returned', { cleanup: from });
      const before = await row(id);
      expect(await tx((em) => run[name](em, id, me))).toBe(allowed);
      const after = await row(id);
      if (allowed) {
        expect(after).toMatchObject({ cleanup: to, version: before.version + 1 });
      } else {
        expect(after).toEqual(before);
      }
    });

    it.each(Object.keys(run) as Array<keyof typeof run>)('%s needs the claim: another instance or a released claim changes nothing', async (name) => {
      const { id } = await seed('returned', { cleanup: 'pending', claimedBy: 'other-host:1:abcdef12' });
      const before = await row(id);
      expect(await tx((em) => run[name](em, id, me))).toBe(false);
      expect(await row(id)).toEqual(before);
    });

    it('a retry counts the attempt and waits out its backoff; a claim is renewed only while held', async () => {
      const { id } = await seed('returned', { cleanup: 'pending' });
      expect(await tx((em) => store.failCleanup(em, id, me, { attempts: 1, giveUp: false, backoffSeconds: 600 }))).toBe(true);
      const [r] = await h.db.query<{ attempts: number; wait: number }>(
        'SELECT cleanup_attempts AS attempts, extract(epoch FROM cleanup_claimed_until - now())::int AS wait FROM checkouts WHERE id = $1',
        [id],
      );
      expect(r.attempts).toBe(1);
      expect(r.wait).toBeGreaterThan(590);
      expect(await store.renewCleanup(h.dataSource, id, 60)).toBe(true);
      await h.db.query("UPDATE checkouts SET cleanup_claimed_until = now() - interval '1 second' WHERE id = $1", [id]);
      expect(await store.renewCleanup(h.dataSource, id, 60)).toBe(false); // lapsed: whoever claims it next does the work
    });
  });

  describe('what the sweeps take', () => {
    it('takeDue: a lease past its expiry, a request past its deadline, a disabled requester, a requester who is no operator; each with its reason', async () => {
      const disabled = await newUser(['operator'], true);
      const demoted = await newUser(['auditor']);
      const cases: Array<[string, EndReason]> = [
        [(await seed('active', { due: true })).id, 'expired'],
        [(await seed('pending_approval', { due: true })).id, 'approval_timeout'],
        [(await seed('active', { requesterId: disabled })).id, 'requester_disabled'],
        [(await seed('pending_approval', { requesterId: demoted })).id, 'requester_role_removed'],
      ];
      const notDue = [(await seed('active')).id, (await seed('pending_approval')).id, (await seed('expired', { requesterId: disabled })).id];
      const taken: Array<[string, EndReason]> = [];
      const skip: string[] = [];
      for (;;) {
        const due = await tx((em) => store.takeDue(em, new Date(), skip));
        if (!due) break;
        if (!cases.some(([id]) => id === due.checkout.id) && !notDue.includes(due.checkout.id)) {
          skip.push(due.checkout.id); // a leftover of another test
          continue;
        }
        taken.push([due.checkout.id, due.reason]);
        skip.push(due.checkout.id);
      }
      expect(taken).toEqual(cases);
    });

    it('takeDue passes over a checkout another transaction holds (SKIP LOCKED)', async () => {
      const { id } = await seed('active', { due: true });
      await h.dataSource.transaction(async (holder) => {
        await holder.query('SELECT id FROM checkouts WHERE id = $1 FOR UPDATE', [id]);
        const seen: string[] = [];
        for (;;) {
          const due = await tx((em) => store.takeDue(em, new Date(), seen));
          if (!due) break;
          seen.push(due.checkout.id);
        }
        expect(seen).not.toContain(id);
      });
    });

    it('claimOwedCleanup: owed, unclaimed (lapsed) and the account settled; never one another instance holds', async () => {
      const settled = await newAccount();
      const unsettled = await newAccount({ mustRotate: true });
      const lapsed = (await seed('returned', { cleanup: 'pending', accountId: settled.id })).id;
      await h.db.query("UPDATE checkouts SET cleanup_claimed_until = now() - interval '1 second', cleanup_claimed_by = 'gone:1:00000000' WHERE id = $1", [lapsed]);
      const waiting = (await seed('returned', { cleanup: 'pending', accountId: unsettled.id })).id;
      await h.db.query("UPDATE checkouts SET cleanup_claimed_until = now() - interval '1 second' WHERE id = $1", [waiting]);
      const held = (await seed('returned', { cleanup: 'pending', claimedBy: 'other:1:00000000', accountId: (await newAccount()).id })).id;
      const ids = [lapsed, waiting, held];
      const claimed = await store.claimOwedCleanup(h.dataSource, { limit: 100, seconds: 60, accountReadySql: accountSettledSql('c.account_id') });
      expect(claimed.map((c) => c.id).filter((id) => ids.includes(id))).toEqual([lapsed]);
      expect((await h.db.query<{ by: string }>('SELECT cleanup_claimed_by AS by FROM checkouts WHERE id = $1', [lapsed]))[0].by).toBe(me);
      expect(await store.claimOwedCleanup(h.dataSource, { limit: 100, seconds: 60, accountReadySql: accountSettledSql('c.account_id') })).toEqual([]);
    });

    it('noCleanupOwedSql and whyAccountCannotBeDeleted', async () => {
      const account = await newAccount();
      expect(await store.cleanupOwed(h.dataSource.manager, account.id)).toBe(false);
      expect(await store.whyAccountCannotBeDeleted(h.dataSource.manager, account.id)).toBeNull();
      const { id } = await seed('returned', { cleanup: 'pending', accountId: account.id });
      expect(await store.cleanupOwed(h.dataSource.manager, account.id)).toBe(true);
      expect(await store.whyAccountCannotBeDeleted(h.dataSource.manager, account.id)).toBe("its last checkout's session cleanup is pending");
      await h.db.query("UPDATE checkouts SET cleanup = 'failed' WHERE id = $1", [id]);
      expect(await store.cleanupOwed(h.dataSource.manager, account.id)).toBe(false);
      expect(await store.whyAccountCannotBeDeleted(h.dataSource.manager, account.id)).toBe("its last checkout's session cleanup is failed");
      await h.db.query("UPDATE checkouts SET cleanup = 'done' WHERE id = $1", [id]);
      expect(await store.whyAccountCannotBeDeleted(h.dataSource.manager, account.id)).toBe('a break-glass checkout of it is not reviewed yet');
      await h.db.query('UPDATE checkouts SET reviewed_at = now() WHERE id = $1', [id]);
      expect(await store.whyAccountCannotBeDeleted(h.dataSource.manager, account.id)).toBeNull();
    });
  });

  it('the counts the metrics read (vault_checkouts, vault_pending_approvals)', async () => {
    const before = await store.watchCounts(h.dataSource);
    const pendingBefore = await store.pendingApprovalCount(h.dataSource);
    await seed('active');
    await seed('pending_approval');
    await seed('returned', { cleanup: 'failed' }); // break-glass, not reviewed
    expect(await store.watchCounts(h.dataSource)).toEqual({
      active: before.active + 1,
      pending_approval: before.pending_approval + 1,
      break_glass_unreviewed: before.break_glass_unreviewed + 3,
      cleanup_failed: before.cleanup_failed + 1,
    });
    expect(await store.pendingApprovalCount(h.dataSource)).toBe(pendingBefore + 1);
  });

  describe('from the end of a checkout to its rotation and session cleanup (fake target)', () => {
    const lifecycle = () => h.get(CheckoutLifecycleService);
    // what the tests above left open or owed is settled, so each sweep below sees only its own checkouts
    const clear = () =>
      h.db.query(`UPDATE checkouts SET status = CASE WHEN status IN ('active', 'pending_approval') THEN 'returned' ELSE status END,
                                       cleanup = CASE WHEN cleanup = 'pending' THEN 'done' ELSE cleanup END`);

    it('the sweep expires a lease: the account is rotated on the target, then its sessions are ended, then the cleanup is done', async () => {
      await clear();
      const pg = h.fake('postgres');
      const account = await newAccount();
      const { id } = await seed('active', { due: true, accountId: account.id });
      const opsBefore = pg.ops.length;
      expect(await lifecycle().expireDue()).toBe(1);
      expect(await row(id)).toMatchObject({ status: 'expired', cleanup: 'done' });
      const ops = pg.ops.slice(opsBefore).filter((c) => c.username === account.username).map((c) => `${c.op} ${c.result}`);
      expect(ops).toEqual(['updatePassword ok', 'login ok', 'terminateSessions ok']);
      expect(pg.users.get(account.username)).not.toBe(account.password);
      const [a] = await h.db.query<{ status: string; must_rotate: boolean }>('SELECT status, must_rotate FROM accounts WHERE id = $1', [account.id]);
      expect(a).toEqual({ status: 'available', must_rotate: false });
    });

    it('one checkout that cannot be ended is skipped (and stays open); the rest of the sweep still ends', async () => {
      await clear();
      const poisoned = await seed('active', { due: true });
      const others = [await seed('active', { due: true }), await seed('pending_approval', { due: true }), await seed('active', { due: true })];
      await h.db.query(`CREATE FUNCTION test_refuse_end() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF OLD.id = '${poisoned.id}' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$`);
      await h.db.query('CREATE TRIGGER test_refuse_end BEFORE UPDATE ON checkouts FOR EACH ROW EXECUTE FUNCTION test_refuse_end()');
      try {
        expect(await lifecycle().expireDue()).toBe(3);
      } finally {
        await h.db.query('DROP TRIGGER test_refuse_end ON checkouts');
        await h.db.query('DROP FUNCTION test_refuse_end()');
      }
      expect((await row(poisoned.id)).status).toBe('active');
      for (const o of others) expect((await row(o.id)).status).toBe('expired');
      expect(await lifecycle().expireDue()).toBe(1); // the next sweep takes it
      expect((await row(poisoned.id)).status).toBe('expired');
    });

    it('a session cleanup that fails is retried after a backoff by the sweep, and done once the target answers', async () => {
      await clear();
      const pg = h.fake('postgres');
      const account = await newAccount({ policy: { rotateAfterCheckin: false } });
      const { id } = await seed('active', { due: true, accountId: account.id });
      await h.db.query('UPDATE checkouts SET rotate_after_checkin = false WHERE id = $1', [id]);
      pg.fail('terminateSessions', 'TARGET_UNREACHABLE', { username: account.username });
      expect(await lifecycle().expireDue()).toBe(1);
      expect(await row(id)).toMatchObject({ status: 'expired', cleanup: 'pending', cleanup_attempts: 1 });
      expect(await lifecycle().finishStale()).toBe(0); // backing off
      await h.db.query("UPDATE checkouts SET cleanup_claimed_until = now() - interval '1 second' WHERE id = $1", [id]);
      expect(await lifecycle().finishStale()).toBe(1);
      expect(await row(id)).toMatchObject({ cleanup: 'done', cleanup_attempts: 1 });
      expect(pg.calls('terminateSessions', account.username).map((c) => c.result)).toEqual(['TARGET_UNREACHABLE', 'ok']);
    });
  });
});

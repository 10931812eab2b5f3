import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { INSTANCE_ID } from '../../src/database/claimed-work';
import { EphemeralStore } from '../../src/ephemeral/ephemeral-store';
import { EphemeralModule } from '../../src/ephemeral/ephemeral.module';
import { allowedChanges, EPHEMERAL_STATUSES, EPHEMERAL_TRANSITIONS, EphemeralTransition } from '../../src/ephemeral/ephemeral-states';
import type { EphemeralStatus } from '../../src/ephemeral/ephemeral.entity';
import { buildModule, ModuleHarness } from '../support/module-harness';

/**
 * The one-time account life cycle (src/ephemeral/ephemeral-states.ts) on a real database: every named transition of
 * EphemeralStore is tried from every status. From a status its table allows, it happens (the status it names, version
 * + 1); from any other, the statement changes nothing. The changes that happened are exactly the table's, so no
 * statement moves a row in a way the table (and docs/architecture.md) does not say.
 */

interface Variant {
  label: string;
  /** Column values the transition needs besides its status (e.g. why a removal ends as expired). */
  row?: Record<string, unknown>;
  run(id: string): Promise<unknown>;
  to: EphemeralStatus;
}

describe('one-time account state machine (real database)', () => {
  let h: ModuleHarness;
  let store: EphemeralStore;
  let targetId: string;
  let vendorId: string;
  let requesterId: string;
  const now = new Date();
  const q = () => h.dataSource;

  beforeAll(async () => {
    h = await buildModule({ imports: [EphemeralModule] });
    store = h.get(EphemeralStore);
    [vendorId, requesterId, targetId] = [randomUUID(), randomUUID(), randomUUID()];
    for (const [id, role] of [[vendorId, 'vendor'], [requesterId, 'operator']]) {
      await h.db.query("INSERT INTO users (id, username, password_hash, roles) VALUES ($1, $2, 'x', ARRAY[$3])", [id, `u-${id.slice(0, 8)}`, role]);
    }
    await h.db.query(
      "INSERT INTO targets (id, name, type, host, port, admin_username, admin_secret, admin_credentials) VALUES ($1, 't1', 'ssh', 'h', 22, 'root', '\\x00', '{}')",
      [targetId],
    );
  });
  afterAll(() => h?.close());

  /** A fresh row in `status`: its request deadline and expiry passed, claimed by this instance until a minute ago. */
  async function rowIn(status: EphemeralStatus, extra: Record<string, unknown> = {}): Promise<string> {
    await h.db.query('DELETE FROM ephemeral_accounts');
    const id = randomUUID();
    const past = new Date(now.getTime() - 60_000);
    await h.db.query(
      `INSERT INTO ephemeral_accounts (id, target_id, vendor_id, requester_id, status, justification, ttl_seconds, approvals_required,
                                       requested_at, request_deadline, username, expires_at, claimed_by, claimed_until)
       VALUES ($1, $2, $3, $4, $5, 'walk', 600, 1, $6, $6, $7, $6, $8, $6)`,
      [id, targetId, vendorId, requesterId, status, past, `vwalk_${id.slice(0, 8)}`, INSTANCE_ID],
    );
    for (const [column, value] of Object.entries(extra)) await h.db.query(`UPDATE ephemeral_accounts SET ${column} = $2 WHERE id = $1`, [id, value]);
    return id;
  }

  const variants: Record<EphemeralTransition, Variant[]> = {
    approve: [{ label: 'approve', run: (id) => store.approve(q(), id), to: 'approved' }],
    deny: [{ label: 'deny', run: (id) => store.deny(q(), id, requesterId, now), to: 'denied' }],
    requireReapproval: [{ label: 'requireReapproval', run: (id) => store.requireReapproval(q(), id, 2), to: 'pending_approval' }],
    lapse: [{ label: 'lapse', run: () => store.lapseRequests(q(), now, 10), to: 'expired' }],
    withdraw: [{ label: 'withdraw', run: (id) => store.withdraw(q(), id, requesterId, now), to: 'revoked' }],
    claim: [
      {
        label: 'claim',
        row: { claimed_by: null, claimed_until: null, username: null },
        run: (id) => store.claim(q(), id, { username: `vclaim_${id.slice(0, 8)}`, claimedAt: now, expiresAt: now, claimant: INSTANCE_ID, claimSeconds: 60 }),
        to: 'creating',
      },
    ],
    activate: [{ label: 'activate', run: (id) => store.activate(q(), id, INSTANCE_ID, Buffer.from('sealed')), to: 'active' }],
    failCreate: [{ label: 'failCreate', run: (id) => store.failCreate(q(), id, INSTANCE_ID, 'TARGET_TIMEOUT'), to: 'revoking' }],
    revoke: [
      { label: 'revoke (taken over now)', run: (id) => store.revoke(q(), id, { by: requesterId, claimant: INSTANCE_ID, claimSeconds: 60 }), to: 'revoking' },
      { label: 'revoke (after the claim lapses)', run: (id) => store.revoke(q(), id, { by: requesterId, claimant: null, claimSeconds: 60 }), to: 'revoking' },
    ],
    takeForRemoval: [{ label: 'takeForRemoval', run: () => store.takeForRemoval(q(), { now, claimant: INSTANCE_ID, claimSeconds: 60 }), to: 'revoking' }],
    finishRemoval: [
      { label: 'finishRemoval (time up)', row: { end_reason: 'expired' }, run: (id) => store.finishRemoval(q(), id, INSTANCE_ID, now), to: 'expired' },
      { label: 'finishRemoval (revoked)', row: { end_reason: 'revoked' }, run: (id) => store.finishRemoval(q(), id, INSTANCE_ID, now), to: 'revoked' },
    ],
    failRemoval: [
      { label: 'failRemoval (retry)', run: (id) => store.failRemoval(q(), id, INSTANCE_ID, { attempts: 1, attention: false, errorCode: 'TARGET_ERROR', retrySeconds: 15 }), to: 'revoking' },
      {
        label: 'failRemoval (at the limit)',
        run: (id) => store.failRemoval(q(), id, INSTANCE_ID, { attempts: 5, attention: true, errorCode: 'TARGET_ERROR', retrySeconds: 3600 }),
        to: 'needs_attention',
      },
    ],
    reopenForRemoval: [{ label: 'reopenForRemoval', run: (id) => store.reopenForRemoval(q(), id), to: 'revoking' }],
  };

  const cases = (Object.keys(variants) as EphemeralTransition[]).flatMap((t) => variants[t].flatMap((v) => EPHEMERAL_STATUSES.map((from) => ({ t, v, from }))));
  const happened = new Set<string>();

  it.each(cases.map((c) => [c.v.label, c.from, c] as const))('%s from %s', async (_label, _from, { t, v, from }) => {
    const id = await rowIn(from, v.row);
    await v.run(id);
    const [row] = await h.db.query<{ status: EphemeralStatus; version: number }>('SELECT status, version FROM ephemeral_accounts WHERE id = $1', [id]);
    const allowed = (EPHEMERAL_TRANSITIONS[t].from as readonly EphemeralStatus[]).includes(from);
    if (allowed) {
      expect(row).toEqual({ status: v.to, version: 2 });
      happened.add(`${from}>${v.to}`);
    } else {
      expect(row).toEqual({ status: from, version: 1 });
    }
  });

  it('the changes that happened are exactly the allowed ones; every other pair of statuses is forbidden', () => {
    expect([...happened].sort()).toEqual([...allowedChanges()].sort());
    const forbidden = EPHEMERAL_STATUSES.flatMap((a) => EPHEMERAL_STATUSES.map((b) => `${a}>${b}`)).filter((p) => !allowedChanges().has(p));
    for (const pair of forbidden) expect(happened.has(pair)).toBe(false);
    // the final statuses are left only by reopenForRemoval (a claimant that lost its row created the account anyway)
    for (const [name, t] of Object.entries(EPHEMERAL_TRANSITIONS)) {
      if (name !== 'reopenForRemoval') expect(t.from.filter((s) => ['denied', 'revoked', 'expired'].includes(s))).toEqual([]);
    }
  });

  it('a removal or creation step is refused to an instance that does not hold the claim', async () => {
    for (const [status, step] of [
      ['creating', (id: string) => store.activate(q(), id, 'another-instance', Buffer.from('sealed'))],
      ['creating', (id: string) => store.failCreate(q(), id, 'another-instance', 'TARGET_ERROR')],
      ['revoking', (id: string) => store.finishRemoval(q(), id, 'another-instance', now)],
      ['revoking', (id: string) => store.failRemoval(q(), id, 'another-instance', { attempts: 1, attention: false, errorCode: 'TARGET_ERROR', retrySeconds: 15 })],
    ] as const) {
      const id = await rowIn(status);
      await step(id);
      expect(await h.db.query('SELECT status, version FROM ephemeral_accounts WHERE id = $1', [id])).toEqual([{ status, version: 1 }]);
    }
    // a claim that has not lapsed is not the reaper's
    const held = await rowIn('revoking', { claimed_until: new Date(Date.now() + 60_000) });
    expect(await store.takeForRemoval(q(), { now, claimant: 'another-instance', claimSeconds: 60 })).toBeNull();
    expect(await h.db.query('SELECT status, claimed_by FROM ephemeral_accounts WHERE id = $1', [held])).toEqual([{ status: 'revoking', claimed_by: INSTANCE_ID }]);
  });

  it('the counts other owners read: open on a target, on targets by status, waiting for approvers', async () => {
    await h.db.query('DELETE FROM ephemeral_accounts');
    for (const status of EPHEMERAL_STATUSES) {
      const id = randomUUID();
      await h.db.query(
        `INSERT INTO ephemeral_accounts (id, target_id, vendor_id, requester_id, status, justification, ttl_seconds, approvals_required, requested_at, request_deadline)
         VALUES ($1, $2, $3, $4, $5, 'count', 600, 1, now(), now())`,
        [id, targetId, vendorId, requesterId, status],
      );
    }
    // all but denied, revoked and expired exist, may exist, or may still be created on the target
    expect(await store.countOpenOnTarget(q(), targetId)).toBe(EPHEMERAL_STATUSES.length - 3);
    expect(await store.countOpenOnTarget(q(), randomUUID())).toBe(0);
    expect(await store.countOnTargetsByStatus(q())).toEqual({ creating: 1, active: 1, revoking: 1, needs_attention: 1 });
    expect(await store.countPendingApproval(q())).toBe(1);
    await h.db.query('DELETE FROM ephemeral_accounts');
    expect(await store.countOnTargetsByStatus(q())).toEqual({ creating: 0, active: 0, revoking: 0, needs_attention: 0 });
  });

  it('docs/architecture.md lists every transition as the code has it', () => {
    const doc = readFileSync(join(__dirname, '../../docs/architecture.md'), 'utf8');
    for (const [name, t] of Object.entries(EPHEMERAL_TRANSITIONS)) {
      expect(doc).toContain(`| \`${name}\` | ${t.from.map((s) => `\`${s}\``).join(', ')} | ${t.to.map((s) => `\`${s}\``).join(', ')} |`);
    }
  });
});

import { randomBytes } from 'node:crypto';
import { REAL_TARGETS, RealTarget } from '../support/targets/real';
import { actingAs } from '../support/http';
import { startTestVault, TestUser, TestVault } from '../support/vault';

/**
 * Issue 12 review, finding 7: the review of a break-glass checkout is the one control after the fact. A stolen
 * approver token alone must not be enough to mark one reviewed (step-up MFA), and nothing is reviewed while the
 * access it grants still runs (409 CHECKOUT_NOT_ENDED). Through the HTTP API on the real PostgreSQL.
 */
describe('break-glass review needs step-up and an ended checkout (e2e)', () => {
  let vault: TestVault;
  let admin: TestUser;
  let operator: TestUser;
  let approver: TestUser;
  let real: RealTarget;
  let targetId: string;

  const as = (user: TestUser) => actingAs(vault, user);
  const reviewedAt = async (id: string) => (await vault.db.query<{ reviewed_at: Date | null }>('SELECT reviewed_at FROM checkouts WHERE id = $1', [id]))[0].reviewed_at;
  const reviewEvents = async (id: string) =>
    (await vault.db.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_events WHERE subject_id = $1 AND type = 'checkout.reviewed'", [id]))[0].n;

  beforeAll(async () => {
    vault = await startTestVault({ env: { VAULT_ROTATION_SWEEP_MS: '3600000', VAULT_CHECKOUT_SWEEP_MS: '3600000' } });
    admin = await vault.admin();
    operator = await vault.createUser(['operator']);
    approver = await vault.createUser(['approver']);
    real = await REAL_TARGETS.postgres();
    targetId = (await as(admin).post('/v1/targets', { name: 'review-pg', ...real.body }, true).expect(201)).body.id;
    await as(admin).post(`/v1/targets/${targetId}/verify`, {}, true).expect(200);
  }, 60_000);
  afterAll(async () => {
    await vault?.close();
    await real?.stop();
  });

  it('refuses a review without the approver’s code, and while the checkout is active; reviews it once ended, with the code', async () => {
    const username = `rv_${randomBytes(4).toString('hex')}`;
    await real.createAccount(username, `Orig-${randomBytes(10).toString('hex')}`);
    const account = (await as(admin).post('/v1/accounts', { targetId, username, password: `Orig-${randomBytes(10).toString('hex')}`, policy: { approvalsRequired: 1, breakGlassAllowed: true } }, true).expect(201)).body;
    const co = (await as(operator).post('/v1/checkouts', { accountId: account.id, justification: 'prod is down, INC-1', breakGlass: true }, true).expect(201)).body;
    expect(co).toMatchObject({ status: 'active', breakGlass: true });

    // a stolen approver token alone: no code, no review (also not after the checkout ended)
    expect((await as(approver).post(`/v1/checkouts/${co.id}/review`, { comment: 'looks fine' }).expect(401)).body.code).toBe('MFA_REQUIRED');
    // with the code, but the access still runs: refused, nothing changed
    expect((await as(approver).post(`/v1/checkouts/${co.id}/review`, { comment: 'looks fine' }, true).expect(409)).body.code).toBe('CHECKOUT_NOT_ENDED');
    expect(await reviewedAt(co.id)).toBeNull();
    expect(await reviewEvents(co.id)).toBe(0);

    await as(operator).post(`/v1/checkouts/${co.id}/checkin`).expect(200);
    expect((await as(approver).post(`/v1/checkouts/${co.id}/review`, { comment: 'looks fine' }).expect(401)).body.code).toBe('MFA_REQUIRED');
    expect(await reviewedAt(co.id)).toBeNull();
    const reviewed = (await as(approver).post(`/v1/checkouts/${co.id}/review`, { comment: 'justified: INC-1' }, true).expect(200)).body;
    expect(reviewed.review).toMatchObject({ reviewedBy: approver.id, comment: 'justified: INC-1' });
    expect(await reviewEvents(co.id)).toBe(1);
  });
});

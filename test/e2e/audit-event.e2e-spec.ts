import { actingAs } from '../support/http';
import { startTestVault, TestUser, TestVault } from '../support/vault';

/** GET /v1/audit-events/:id: one event, for the web portal's deep link /portal/audit/<id> (issue 15). */
describe('one audit event by id (e2e, real PostgreSQL)', () => {
  let vault: TestVault;
  let auditor: TestUser;

  beforeAll(async () => {
    vault = await startTestVault();
    auditor = await vault.createUser(['auditor']);
  });
  afterAll(() => vault.close());

  it('answers the event as the list shows it, to auditors and admins', async () => {
    // sealed first (the sealer runs in the background: an event could be sealed between the list and the read)
    await actingAs(vault, auditor).get('/v1/audit-events/verify').expect(200);
    const listed = (await actingAs(vault, auditor).get('/v1/audit-events?limit=3').expect(200)).body.items as Array<{ id: string }>;
    expect(listed.length).toBeGreaterThan(0);
    for (const event of listed) {
      expect((await actingAs(vault, auditor).get(`/v1/audit-events/${event.id}`).expect(200)).body).toEqual(event);
    }
    await actingAs(vault, await vault.admin()).get(`/v1/audit-events/${listed[0].id}`).expect(200);
  });

  it('is refused to other roles', async () => {
    const operator = await vault.createUser(['operator']);
    expect((await actingAs(vault, operator).get('/v1/audit-events/1').expect(403)).body.code).toBe('FORBIDDEN');
  });

  it.each(['999999999', '0', 'abc', '1.5', '-1', '01', '9'.repeat(19), 'verify-me'])('%s names no event: 404 NOT_FOUND', async (id) => {
    expect((await actingAs(vault, auditor).get(`/v1/audit-events/${id}`).expect(404)).body.code).toBe('NOT_FOUND');
  });

  it('the verify route is still the verify route', async () => {
    expect((await actingAs(vault, auditor).get('/v1/audit-events/verify').expect(200)).body.ok).toBe(true);
  });
});

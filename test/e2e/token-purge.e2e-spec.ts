import { IdentityService } from '../../src/identity/identity.service';
import { browserSignIn } from '../support/browser-session';
import { startTestVault, TestVault } from '../support/vault';

/**
 * Ended login tokens and browser sessions are deleted a day after they ended (the rotation sweep's hourly step), so the
 * table does not grow with every sign-in for ever; live ones stay.
 */
describe('purging ended tokens and sessions (e2e, real PostgreSQL)', () => {
  let vault: TestVault;
  beforeAll(async () => (vault = await startTestVault({ env: { VAULT_PORTAL_IDLE_SECONDS: '600' } })));
  afterAll(() => vault.close());

  const rows = (userId: string) =>
    vault.db.query<{ kind: string; revoked: boolean }>('SELECT kind, revoked_at IS NOT NULL AS revoked FROM access_tokens WHERE user_id = $1 ORDER BY created_at', [userId]);

  it('deletes what ended more than a day ago (revoked, expired, idle), keeps what still works, and runs at most hourly', async () => {
    const user = await vault.createUser(['operator']);
    const creds = { username: user.username, password: user.password, code: user.code };
    const signedOut = await browserSignIn(vault, creds);
    await vault.http().delete('/v1/auth/session').set('Cookie', signedOut.cookie).set('X-CSRF-Token', signedOut.csrf).expect(204);
    // revoked two days ago (revocations are stamped with the database's clock)
    await vault.db.query("UPDATE access_tokens SET revoked_at = now() - interval '2 days' WHERE user_id = $1 AND revoked_at IS NOT NULL", [user.id]);
    await browserSignIn(vault, creds); // left idle
    // createUser's two bearer tokens (the one before enrollment, revoked by it, and the one after), the two sessions
    expect((await rows(user.id)).map((r) => r.kind).sort()).toEqual(['bearer', 'bearer', 'browser', 'browser']);

    vault.clock.advance(2 * 24 * 3600 * 1000 + 600_000); // the bearer token (24 h) and the idle session ended > a day ago
    const live = await browserSignIn(vault, creds);
    const purge = () => vault.get(IdentityService).purgeEndedTokens();
    expect(await purge()).toBeGreaterThanOrEqual(4); // the admin's ended tokens too
    expect(await rows(user.id)).toEqual([{ kind: 'browser', revoked: false }]);
    await vault.http().get('/v1/me').set('Cookie', live.cookie).expect(200);
    expect(await purge()).toBe(0); // within the hour: not again
  });
});

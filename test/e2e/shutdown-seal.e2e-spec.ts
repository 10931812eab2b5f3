/**
 * Shutdown order (review finding, issue 13): background work still running when the vault stops (here a rotation at a
 * slow target) commits its audit events before the sealer closes, so this instance leaves nothing unsealed behind.
 * Failed when the waiting for background work moved into a global module whose shutdown hook ran after the sealer's.
 */
import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { AccountStore } from '../../src/accounts/account-store';
import { DEFAULT_POLICY } from '../../src/accounts/policy';
import { ConnectorRegistry } from '../../src/connectors/connector.registry';
import { RotationService } from '../../src/rotation/rotation.service';
import { createTestDatabase } from '../support/db';
import { FakeConnector } from '../support/fake-connector';
import { TEST_ADMIN } from '../support/module-harness';
import { createFakeTarget } from '../support/fake-target';
import { startTestVault } from '../support/vault';

class SlowFake extends FakeConnector {
  override async updatePassword(...a: Parameters<FakeConnector['updatePassword']>) {
    await new Promise((r) => setTimeout(r, 500));
    return super.updatePassword(...a);
  }
}

it('a rotation that finishes during shutdown has its audit events committed and sealed', async () => {
  const db = await createTestDatabase();
  try {
    const vault = await startTestVault({ db });
    const fake = new SlowFake('postgres');
    vault.get(ConnectorRegistry).register(fake);
    const targetId = await createFakeTarget(vault, 'postgres', 'pg-x');
    fake.users.set('app_u', 'Current-Password-1');
    const id = randomUUID();
    await vault.get(AccountStore).create(vault.get(DataSource).manager, { id, targetId, username: 'app_u', password: 'Current-Password-1', policy: DEFAULT_POLICY, nextRotationAt: new Date(Date.now() + 3600_000) });
    await vault.get(RotationService).request(TEST_ADMIN, id);
    await vault.close(); // while the rotation is at the target
    const rows = await db.query<{ type: string; sealed: boolean }>("SELECT type, seq IS NOT NULL AS sealed FROM audit_events WHERE type LIKE 'rotation.%' ORDER BY id");
    expect(rows).toEqual([
      { type: 'rotation.started', sealed: true },
      { type: 'rotation.succeeded', sealed: true },
    ]);
  } finally {
    await db.drop();
  }
});

import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { UnitOfWork } from '../../src/database/unit-of-work';
import { GatewayStore, SessionEndReason } from '../../src/gateway/gateway-store';
import type { RecordingSeal } from '../../src/gateway/recording/recording.service';
import type { TestUser, TestVault } from './vault';

/**
 * Gateway sessions made the way the gateway makes them (its store; then, at the end, the row ended and the
 * `gateway.session_ended` audit event with the recording's seal), for tests of the recordings and the sessions API
 * that need no SSH connection.
 */
export function gatewaySessions(vault: TestVault, defaults: { targetId?: string; account?: string } = {}) {
  const store = new GatewayStore();
  const ds = () => vault.get(DataSource);
  return {
    async open(user: TestUser, o: { targetId?: string } = {}): Promise<string> {
      const id = randomUUID();
      await store.insertSession(ds(), {
        id,
        ticketId: randomUUID(),
        userId: user.id,
        checkoutId: randomUUID(),
        ephemeralId: null,
        targetId: o.targetId ?? defaults.targetId ?? randomUUID(),
        account: defaults.account ?? 'app_user',
        instanceId: 'test-instance',
        clientAddress: '127.0.0.1',
        startedAt: new Date(),
      });
      return id;
    },
    async end(id: string, recording: RecordingSeal | null, reason: SessionEndReason = 'client_closed'): Promise<void> {
      await vault.get(UnitOfWork).run(async ({ em, audit }) => {
        await store.end(em, id, reason, new Date());
        await audit({ type: 'gateway.session_ended', actor: null, subjectType: 'gateway_session', subjectId: id, details: { sessionId: id, reason, recording } });
      });
    },
  };
}

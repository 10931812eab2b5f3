import { randomBytes } from 'node:crypto';
import type { TargetType } from '../../src/crypto/password-generator';
import { TargetsService } from '../../src/targets/targets.service';
import { ModuleHarness, TEST_ADMIN } from './module-harness';

/**
 * A target registered through TargetsService (so its admin credential is encrypted and bound as the vault does it)
 * whose connector is the harness's in-memory fake of `type` (h.fake(type)). Needs TargetsModule among the harness's
 * imports (directly or through a feature module). Answers the target's id.
 */
export async function createFakeTarget(h: ModuleHarness, type: TargetType = 'postgres'): Promise<string> {
  const created = await h.get(TargetsService).create(TEST_ADMIN, {
    name: `fake-${type}-${randomBytes(3).toString('hex')}`,
    type,
    host: `${type}.invalid`,
    port: { ssh: 22, postgres: 5432, mysql: 3306 }[type],
    admin: { username: 'vault_admin', password: 'Admin-Password-1' },
    options: type === 'postgres' ? { database: 'postgres' } : {},
  });
  return created.id;
}

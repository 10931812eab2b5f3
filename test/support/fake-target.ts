import { randomBytes } from 'node:crypto';
import type { TargetType } from '../../src/crypto/password-generator';
import { TargetsService } from '../../src/targets/targets.service';
import { TEST_ADMIN } from './module-harness';

/**
 * A target registered through TargetsService (so its admin credential is encrypted and bound as the vault does it)
 * whose connector is the harness's in-memory fake of `type` (h.fake(type)). Needs TargetsModule among the harness's
 * imports (directly or through a feature module); a test vault (test/support/vault.ts) works too. Answers the target's id.
 */
export async function createFakeTarget(h: { get(token: typeof TargetsService): TargetsService }, type: TargetType = 'postgres', name = `fake-${type}-${randomBytes(3).toString('hex')}`): Promise<string> {
  const created = await h.get(TargetsService).create(TEST_ADMIN, {
    name,
    type,
    host: { ssh: 'ssh.invalid', postgres: 'pg.invalid', mysql: 'mysql.invalid' }[type],
    port: { ssh: 22, postgres: 5432, mysql: 3306 }[type],
    admin: { username: 'vault_admin', password: 'Admin-Password-1' },
    options: type === 'postgres' ? { database: 'postgres' } : {},
  });
  return created.id;
}

import { actingAs } from './http';
import type { SshdHandle } from './targets/sshd';
import type { TestUser, TestVault } from './vault';

/**
 * Registers a test sshd as an SSH target the way a careful admin would (README "Least-privilege administrators"): a
 * sudo user that is not root, asked for its password by sudo, and the server's host key pinned. Resolves to the target id.
 */
export async function registerSshTarget(vault: TestVault, admin: TestUser, sshd: SshdHandle, name: string): Promise<string> {
  const sudoAdmin = await sshd.createSudoAdmin({ nopasswd: false });
  const body = {
    name,
    type: 'ssh',
    host: sshd.host,
    port: sshd.port,
    admin: { username: sudoAdmin.username, password: sudoAdmin.password },
    options: { hostKeySha256: sshd.hostKeySha256, sudo: true },
  };
  const target = await actingAs(vault, admin).post('/v1/targets', body, true).expect(201);
  return target.body.id as string;
}

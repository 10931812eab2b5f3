import { randomBytes } from 'node:crypto';
import { prepareRuntime, SENSITIVE_ENV } from './runtime';

describe('prepareRuntime', () => {
  it('reads the secrets once and removes them from the environment children would inherit', async () => {
    const env: NodeJS.ProcessEnv = {
      DATABASE_URL: 'postgres://vault:db-password@127.0.0.1:5432/vault',
      VAULT_MASTER_KEY: randomBytes(32).toString('base64'),
      VAULT_BOOTSTRAP_ADMIN_PASSWORD: 'a-long-bootstrap-password',
      KEEP_ME: 'yes',
    };
    const rt = await prepareRuntime(env);
    expect(rt.databaseUrl).toBe('postgres://vault:db-password@127.0.0.1:5432/vault');
    expect(rt.config.bootstrapAdminPassword).toBe('a-long-bootstrap-password');
    expect(rt.master.origin).toBe('env');
    for (const name of SENSITIVE_ENV) expect(env[name]).toBeUndefined();
    expect(env.KEEP_ME).toBe('yes');
  });
});

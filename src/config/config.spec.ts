import { resolve } from 'node:path';
import { loadConfig } from './config';

describe('loadConfig', () => {
  it('applies defaults', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ port: 8080, host: '127.0.0.1', tokenTtlSeconds: 3600, databaseUrl: undefined, logLevel: 'info' });
    expect(c.dataDir).toMatch(/\/data$/);
  });

  it.each([
    [{ PORT: 'eighty' }, /^invalid configuration: PORT: must be an integer/],
    [{ PORT: '70000' }, /^invalid configuration: PORT: /],
    [{ DATABASE_URL: 'mysql://x' }, /^invalid configuration: DATABASE_URL: must be a postgres/],
    [{ LOG_LEVEL: 'loud' }, /^invalid configuration: LOG_LEVEL/],
    [{ VAULT_MASTER_KEY: 'a', VAULT_MASTER_KEY_FILE: '/k' }, /set only one of VAULT_MASTER_KEY and VAULT_MASTER_KEY_FILE/],
    [{ VAULT_PORTAL_IDLE_SECONDS: '10' }, /^invalid configuration: VAULT_PORTAL_IDLE_SECONDS: must be an integer between 60 and 86400/],
    [{ VAULT_PORTAL_IDLE_SECONDS: '3600', VAULT_PORTAL_SESSION_SECONDS: '1800' }, /^invalid configuration: VAULT_PORTAL_IDLE_SECONDS: must not be longer than VAULT_PORTAL_SESSION_SECONDS/],
  ])('refuses %j with one clear line', (env, message) => {
    expect(() => loadConfig(env)).toThrow(message);
  });

  it('the web portal: 15 min idle, 8 h absolute, served from dist/portal of the checkout unless VAULT_PORTAL_DIR says otherwise', () => {
    expect(loadConfig({}).portal).toEqual({ idleSeconds: 900, sessionSeconds: 28800, dir: resolve(__dirname, '..', '..', 'dist', 'portal') });
    expect(loadConfig({ VAULT_PORTAL_DIR: '/srv/portal', VAULT_PORTAL_IDLE_SECONDS: '300' }).portal).toMatchObject({ idleSeconds: 300, dir: '/srv/portal' });
  });

  it('the SSH gateway: off unless VAULT_SSH_GATEWAY_PORT; clients told the bind address (loopback for a wildcard); port 0 only on loopback', () => {
    expect(loadConfig({}).sshGateway).toBeUndefined();
    expect(loadConfig({ VAULT_SSH_GATEWAY_PORT: '2222' }).sshGateway).toEqual({ port: 2222, bind: '0.0.0.0', host: '127.0.0.1', preauthPerAddress: 10 });
    expect(loadConfig({ VAULT_SSH_GATEWAY_PORT: '2222', VAULT_SSH_GATEWAY_BIND: '10.0.0.5' }).sshGateway).toEqual({ port: 2222, bind: '10.0.0.5', host: '10.0.0.5', preauthPerAddress: 10 });
    // behind a load balancer or NAT every client is one address: the per-address cap is a setting (1..200)
    expect(loadConfig({ VAULT_SSH_GATEWAY_PORT: '2222', VAULT_SSH_GATEWAY_PREAUTH_PER_ADDRESS: '200' }).sshGateway?.preauthPerAddress).toBe(200);
    expect(() => loadConfig({ VAULT_SSH_GATEWAY_PORT: '2222', VAULT_SSH_GATEWAY_PREAUTH_PER_ADDRESS: '0' })).toThrow(/VAULT_SSH_GATEWAY_PREAUTH_PER_ADDRESS/);
    expect(loadConfig({ VAULT_SSH_GATEWAY_PORT: '22', VAULT_SSH_GATEWAY_HOST: 'vault.example.com' }).sshGateway?.host).toBe('vault.example.com');
    expect(loadConfig({ VAULT_SSH_GATEWAY_PORT: '0', VAULT_SSH_GATEWAY_BIND: '127.0.0.1' }).sshGateway?.port).toBe(0);
    expect(() => loadConfig({ VAULT_SSH_GATEWAY_PORT: '0' })).toThrow(/^invalid configuration: VAULT_SSH_GATEWAY_PORT: 0 .* loopback/);
    expect(() => loadConfig({ VAULT_SSH_GATEWAY_PORT: '2222', VAULT_SSH_GATEWAY_BIND: 'everywhere' })).toThrow(/VAULT_SSH_GATEWAY_BIND: must be an IPv4 or IPv6 address/);
    expect(() => loadConfig({ VAULT_SSH_GATEWAY_PORT: '2222', VAULT_SSH_GATEWAY_HOST: 'a b' })).toThrow(/VAULT_SSH_GATEWAY_HOST/);
  });

  it('never echoes a sensitive value', () => {
    try {
      loadConfig({ VAULT_BOOTSTRAP_ADMIN_PASSWORD: 'short-pw' });
      fail('should throw');
    } catch (e) {
      expect((e as Error).message).toMatch(/VAULT_BOOTSTRAP_ADMIN_PASSWORD/);
      expect((e as Error).message).not.toContain('short-pw');
    }
  });
});

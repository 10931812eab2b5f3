import { sshNativeCrypto } from './upstream';

describe('ssh2 native crypto binding', () => {
  it('is built by npm ci (package.json allowScripts approves ssh2; needs make and g++), so the gateway relays at OpenSSL speed', () => {
    expect(sshNativeCrypto()).toBe(true);
  });
});

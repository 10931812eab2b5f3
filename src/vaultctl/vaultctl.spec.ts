import { chmodSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ERROR_CODES } from '../common/error-codes';
import { parseGrant } from './commands/ephemeral';
import { readSession, writeSession } from './config';
import { API_ERRORS, describeApiError, EXIT, exitForCode, exitForStatus } from './errors';
import { credentialEnv, guessType } from './exec';
import { gatewaySshConfig } from './commands/ssh';
import { commandWord, splitExec } from './program';
import { Progress } from './progress';

const cred = { username: 'app', password: 's3cret-Pw', host: 'db1', port: 5432 };

describe('vaultctl error table', () => {
  it('knows every code the vault answers with (the OpenAPI table), with an exit code of its status family', () => {
    expect(Object.keys(ERROR_CODES).filter((c) => !(c in API_ERRORS))).toEqual([]);
    const MFA = ['MFA_REQUIRED', 'MFA_INVALID', 'MFA_REPLAYED', 'MFA_ENROLLMENT_REQUIRED'];
    for (const [code, { status }] of Object.entries(ERROR_CODES)) {
      const expected = MFA.includes(code) ? EXIT.MFA : code === 'TARGET_INVALID_NAME' ? EXIT.USAGE : exitForStatus(status);
      expect({ code, exit: API_ERRORS[code].exit }).toEqual({ code, exit: expected });
    }
  });

  it('maps codes to the documented exit codes, unknown ones by status', () => {
    expect(exitForCode(400, 'VALIDATION_FAILED')).toBe(EXIT.USAGE);
    expect(exitForCode(401, 'UNAUTHENTICATED')).toBe(EXIT.UNAUTHENTICATED);
    for (const c of ['MFA_REQUIRED', 'MFA_INVALID', 'MFA_REPLAYED']) expect(exitForCode(401, c)).toBe(EXIT.MFA);
    expect(exitForCode(403, 'MFA_ENROLLMENT_REQUIRED')).toBe(EXIT.MFA);
    for (const c of ['FORBIDDEN', 'SELF_APPROVAL', 'BREAK_GLASS_NOT_ALLOWED', 'ACCESS_NOT_ALLOWED']) expect(exitForCode(403, c)).toBe(EXIT.FORBIDDEN);
    expect(exitForCode(404, 'NOT_FOUND')).toBe(EXIT.NOT_FOUND);
    expect(exitForCode(409, 'ACCOUNT_CHECKED_OUT')).toBe(EXIT.CONFLICT);
    expect(exitForCode(410, 'ALREADY_CLAIMED')).toBe(EXIT.GONE);
    expect(exitForCode(429, 'THROTTLED')).toBe(EXIT.THROTTLED);
    expect(exitForCode(502, 'TARGET_AUTH_FAILED')).toBe(EXIT.TARGET);
    expect(exitForCode(503, 'UNAVAILABLE')).toBe(EXIT.UNAVAILABLE);
    expect(exitForCode(409, 'SOMETHING_NEW')).toBe(EXIT.CONFLICT);
    expect(exitForCode(410, 'SOMETHING_NEW')).toBe(EXIT.GONE);
    expect(exitForCode(500, 'INTERNAL')).toBe(EXIT.UNEXPECTED);
  });

  it('names the code, says when the next TOTP code comes and when to retry, and strips terminal escapes', () => {
    const next = new Date(Date.now() + 20_000).toISOString();
    const replayed = describeApiError(401, 'MFA_REPLAYED', { message: 'this code was already used', nextCodeAt: next });
    expect(replayed).toMatch(/^MFA_REPLAYED \(401\): this code was already used\n {2}each code is accepted once: the next code is accepted from .*\(in about \d+ s\)/);
    expect(replayed).toContain(next);
    expect(describeApiError(429, 'THROTTLED', { message: 'too many', retryAfterSeconds: 42 })).toMatch(/try again in 42 s/);
    expect(describeApiError(400, 'X', { message: 'evil \u001b[31mred\u001b[0m\nline' })).toBe('X (400): evil [31mred[0m line');
  });
});

describe('vaultctl --exec', () => {
  it('splits the command after `--` only when --exec comes before it', () => {
    expect(splitExec(['checkout', 'a', '--exec', '--', 'psql', '-c', '--', 'x'])).toEqual({ args: ['checkout', 'a', '--exec'], execArgs: ['psql', '-c', '--', 'x'] });
    expect(splitExec(['checkout', 'a', '--', '--exec'])).toEqual({ args: ['checkout', 'a', '--', '--exec'] });
  });

  it('hands ssh the command after `--` (for the target), whatever global options come first', () => {
    expect(splitExec(['ssh', 'db1/root', '--', 'ls', '-l', '--', 'x'])).toEqual({ args: ['ssh', 'db1/root'], execArgs: ['ls', '-l', '--', 'x'] });
    expect(splitExec(['--url', 'http://v', '-c', '123456', 'ssh', 'a', '--', 'uptime'])).toEqual({ args: ['--url', 'http://v', '-c', '123456', 'ssh', 'a'], execArgs: ['uptime'] });
    expect(commandWord(['--json', '--timeout', '5', 'checkouts'])).toBe('checkouts');
    // a value that reads "ssh" is not the command
    expect(splitExec(['--code', 'ssh', 'checkouts', '--', 'ssh'])).toEqual({ args: ['--code', 'ssh', 'checkouts', '--', 'ssh'] });
  });

  it('passes the credential by environment per target type, never the caller’s vault token', () => {
    const base = { PATH: '/bin', VAULT_TOKEN: 'pvt_caller', VAULT_MFA_CODE: '123456' };
    const pg = credentialEnv(cred, 'postgres', base, { database: 'app' });
    expect(pg).toMatchObject({ PGHOST: 'db1', PGPORT: '5432', PGUSER: 'app', PGPASSWORD: 's3cret-Pw', PGDATABASE: 'app', VAULT_PASSWORD: 's3cret-Pw', VAULT_USERNAME: 'app' });
    expect(pg).not.toHaveProperty('VAULT_TOKEN');
    expect(pg).not.toHaveProperty('VAULT_MFA_CODE');
    expect(credentialEnv(cred, 'postgres', { PGDATABASE: 'mine' }, { database: 'app' }).PGDATABASE).toBe('mine');
    const my = credentialEnv(cred, 'mysql', base);
    expect(my).toMatchObject({ MYSQL_PWD: 's3cret-Pw', VAULT_HOST: 'db1', VAULT_PORT: '5432' });
    expect(my).not.toHaveProperty('PGPASSWORD');
    const ssh = credentialEnv(cred, 'ssh', base, { askpass: '/tmp/x/askpass' });
    expect(ssh).toMatchObject({ SSH_ASKPASS: '/tmp/x/askpass', SSH_ASKPASS_REQUIRE: 'force', DISPLAY: ':0' });
    expect(ssh).not.toHaveProperty('MYSQL_PWD');
  });

  it('guesses the target type from the client name', () => {
    expect(guessType('/usr/bin/psql')).toBe('postgres');
    expect(guessType('pg_dump')).toBe('postgres');
    expect(guessType('mariadb')).toBe('mysql');
    expect(guessType('scp')).toBe('ssh');
    expect(guessType('node')).toBeUndefined();
  });

  it('parses --grants', () => {
    expect(parseGrant('SELECT,INSERT:shop.*')).toEqual({ privileges: ['SELECT', 'INSERT'], on: 'shop.*' });
    expect(() => parseGrant('SELECT')).toThrow(/PRIVILEGE/);
  });
});

describe('vaultctl ssh', () => {
  const answer = {
    ticket: 'vgt_x',
    sshUser: 'vgt_x',
    mode: 'publickey' as const,
    expiresAt: '2030-01-01T00:00:00.000Z',
    gateway: { host: 'vault.example', port: 2222, hostKeySha256: 'abc', knownHostsLine: '[vault.example]:2222 ssh-ed25519 AAAA' },
    sshCommand: 'ssh …',
  };

  it('writes an ssh configuration that trusts only the gateway key and offers only the fresh key', () => {
    const config = gatewaySshConfig('/tmp/vaultctl-ssh-a b', answer);
    for (const line of [
      'HostName vault.example',
      'Port 2222',
      'User vgt_x',
      'IdentityFile "/tmp/vaultctl-ssh-a b/id_ed25519"',
      'IdentitiesOnly yes',
      'IdentityAgent none',
      'UserKnownHostsFile "/tmp/vaultctl-ssh-a b/known_hosts"',
      'GlobalKnownHostsFile /dev/null',
      'StrictHostKeyChecking yes',
      'PasswordAuthentication no',
      'ForwardAgent no',
    ]) {
      expect(config).toContain(`\n  ${line}\n`);
    }
    expect(() => gatewaySshConfig('/tmp/a"b', answer)).toThrow(/cannot be named/);
  });
});

describe('vaultctl token file', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'vaultctl-spec-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const session = { url: 'http://127.0.0.1:8080', token: 'pvt_x', expiresAt: '2030-01-01T00:00:00.000Z', username: 'op' };

  it('is written 0600 in a 0700 folder and read back', () => {
    const cfg = join(dir, 'cfg');
    writeSession(cfg, session);
    expect(statSync(cfg).mode & 0o777).toBe(0o700);
    expect(statSync(join(cfg, 'token.json')).mode & 0o777).toBe(0o600);
    expect(readSession(cfg)).toEqual(session);
  });

  it('is refused when group or others can read it, or when it is a symlink', () => {
    writeSession(dir, session);
    chmodSync(join(dir, 'token.json'), 0o640);
    expect(() => readSession(dir)).toThrow(/group or others can access it \(mode 0640\)/);
    const other = mkdtempSync(join(tmpdir(), 'vaultctl-spec-'));
    try {
      writeFileSync(join(other, 't'), JSON.stringify(session), { mode: 0o600 });
      symlinkSync(join(other, 't'), join(other, 'token.json'));
      expect(() => readSession(other)).toThrow(/symbolic link/);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it('is not written into a folder others can write to', () => {
    chmodSync(dir, 0o777);
    expect(() => writeSession(dir, session)).toThrow(/writable by group or others/);
  });
});

describe('vaultctl progress', () => {
  it('writes one line per item when not on a terminal', () => {
    let text = '';
    const stream = { isTTY: false, write: (s: string) => ((text += s), true) } as unknown as NodeJS.WriteStream;
    const p = Progress.for(2, false, stream);
    p.item('succeeded', 'a succeeded');
    p.item('skipped', 'b skipped ACCOUNT_CHECKED_OUT');
    p.finish();
    expect(text).toBe('[1/2] a succeeded\n[2/2] b skipped ACCOUNT_CHECKED_OUT\n');
  });
});

describe('approvalsThatCount', () => {
  it('counts approve decisions that still match the request, as the vault does', async () => {
    const { approvalsThatCount } = await import('./commands/common');
    const decision = (d: string, matchesRequest = true) => ({ decision: d, matchesRequest });
    expect(approvalsThatCount({ approvals: [decision('approve'), decision('deny'), decision('approve', false), decision('approve')] })).toBe(2);
    expect(approvalsThatCount({ approvals: [] })).toBe(0);
  });
});

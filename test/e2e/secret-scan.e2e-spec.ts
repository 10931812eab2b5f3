import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fingerprint, formsOf, isScannable, scan } from '../support/secret-scan';

/** The scanner that scripts/test.sh runs after jest: it finds every form of a secret and never prints one. */
describe('secret scan', () => {
  let dir: string;
  const secret = 'pw-"quoted"/päss+word=1';
  const other = 'another-secret-value-42';

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'secret-scan-test-'));
    const secrets = [
      { value: secret, origin: 'request POST /v1/accounts password' },
      { value: other, origin: 'response POST /v1/auth/login 200 accessToken' },
      { value: 'short', origin: 'request POST /v1/auth/login password' },
      { value: 'xxxxxxxxxxxx', origin: 'request POST /v1/users password' },
    ];
    writeFileSync(join(dir, 'secrets-1-a.jsonl'), secrets.map((s) => JSON.stringify(s)).join('\n') + '\n');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('skips short and one-character values; knows the escaped, URL-encoded and base64 forms', () => {
    expect(isScannable('short')).toBe(false);
    expect(isScannable('xxxxxxxxxxxx')).toBe(false);
    expect(isScannable('[REDACTED]')).toBe(false);
    expect(isScannable(secret)).toBe(true);
    // (a base64url form that equals its base64 form is left out)
    expect(formsOf(secret).map((f) => f.form)).toEqual(expect.arrayContaining(['raw', 'json-escaped', 'url-encoded', 'base64', 'base64+1', 'base64+2']));
    // inside a longer base64 value, at any alignment
    const b64 = formsOf(secret).filter((f) => f.form.startsWith('base64'));
    for (const pad of ['', 'a', 'ab', 'abc']) {
      const encoded = Buffer.from(`${pad}${secret}tail`).toString('base64');
      expect({ pad, found: b64.some((f) => encoded.includes(f.text)) }).toEqual({ pad, found: true });
    }
  });

  it('is clean when no secret appears; names the file, line, form and origin of each one that does', () => {
    writeFileSync(join(dir, 'log-1-a.log'), ['{"msg":"request completed","path":"/v1/accounts"}', '{"msg":"fine","short":"short xxxxxxxxxxxx"}'].join('\n') + '\n');
    writeFileSync(join(dir, 'audit-1-a.jsonl'), JSON.stringify({ db: 'd', event: { id: '1', details: { ok: true } } }) + '\n');
    writeFileSync(join(dir, 'errors-1-a.jsonl'), JSON.stringify({ where: 'POST /v1/accounts', status: 400, body: '{"message":"bad"}' }) + '\n');
    expect(scan(dir)).toMatchObject({ secrets: 2, skipped: 2, logLines: 2, auditEvents: 1, errorBodies: 1, hits: [] });

    writeFileSync(join(dir, 'log-1-b.log'), [JSON.stringify({ msg: 'oops', value: secret }), `{"url":"/x?p=${encodeURIComponent(secret)}"}`].join('\n') + '\n');
    const audit = { db: 'd', event: { id: '2', details: { blob: Buffer.from(secret).toString('base64') } } };
    writeFileSync(join(dir, 'audit-1-b.jsonl'), [JSON.stringify(audit), JSON.stringify(audit)].join('\n') + '\n'); // dumped twice: one event
    writeFileSync(join(dir, 'errors-1-b.jsonl'), JSON.stringify({ where: 'POST /v1/auth/login', status: 401, body: `{"message":"${other} is wrong"}` }) + '\n');
    const r = scan(dir);
    expect(r.auditEvents).toBe(2);
    expect(r.hits.map((h) => [h.file.replace(dir + '/', ''), h.line, h.form, h.secret.origin])).toEqual([
      ['log-1-b.log', 1, 'json-escaped', 'request POST /v1/accounts password'],
      ['log-1-b.log', 2, 'url-encoded', 'request POST /v1/accounts password'],
      ['audit-1-b.jsonl', 1, 'base64', 'request POST /v1/accounts password'],
      ['errors-1-b.jsonl', 1, 'raw', 'response POST /v1/auth/login 200 accessToken'],
    ]);
    for (const h of r.hits) {
      expect(h.context).toContain(`<secret ${fingerprint(h.secret.value)}>`);
      for (const f of formsOf(h.secret.value)) expect(h.context).not.toContain(f.text);
    }
  });

  it('as a command: prints the summary line, exits 1 on a leak without printing the secret', () => {
    writeFileSync(join(dir, 'log-1-a.log'), `{"msg":"leak ${other}"}\n`);
    const run = () => spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', join(__dirname, '../support/secret-scan.ts'), dir], { encoding: 'utf8' });
    const leaky = run();
    expect(leaky.status).toBe(1);
    expect(leaky.stdout).toMatch(/^secret scan: 2 secrets \(2 too short or public skipped\), 1 log lines, 0 audit events, 0 error bodies: 1 LEAKS$/m);
    expect(leaky.stdout).toContain(`log-1-a.log:1 [raw] secret ${fingerprint(other)} (response POST /v1/auth/login 200 accessToken)`);
    expect(leaky.stdout).not.toContain(other);

    writeFileSync(join(dir, 'log-1-a.log'), '{"msg":"nothing here"}\n');
    const clean = run();
    expect(clean.status).toBe(0);
    expect(clean.stdout.trim()).toBe('secret scan: 2 secrets (2 too short or public skipped), 1 log lines, 0 audit events, 0 error bodies: clean');
  }, 30_000);
});

import { Writable } from 'node:stream';
import pino from 'pino';
import { REDACT_PATHS } from './logging';

describe('log redaction', () => {
  it('censors credentials wherever the redaction paths reach', () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk, _enc, cb) => (lines.push(String(chunk)), cb()) });
    const log = pino({ redact: { paths: REDACT_PATHS, censor: '[REDACTED]' } }, sink);
    log.info({
      req: { headers: { authorization: 'Bearer pvt_secret-token', 'x-mfa-code': '123456', cookie: 'sid=abc' } },
      admin: { username: 'root', password: 'admin-pw-1', privateKey: '-----BEGIN KEY-----' },
      account: { password: 'acct-pw-2', token: 'tok-3', secret: 'sec-4' },
      password: 'top-pw-5',
    });
    const out = lines.join('');
    for (const s of ['pvt_secret-token', '123456', 'sid=abc', 'admin-pw-1', 'BEGIN KEY', 'acct-pw-2', 'tok-3', 'sec-4', 'top-pw-5']) {
      expect(out).not.toContain(s);
    }
    expect(out).toContain('"username":"root"');
    expect(out).toContain('[REDACTED]');
  });
});

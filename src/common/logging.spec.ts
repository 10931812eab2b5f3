import { Writable } from 'node:stream';
import pino from 'pino';
import { REDACT_PATHS } from './logging';

describe('log redaction', () => {
  it('censors credentials wherever the redaction paths reach', () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk, _enc, cb) => (lines.push(String(chunk)), cb()) });
    const log = pino({ redact: { paths: REDACT_PATHS, censor: '[REDACTED]' } }, sink);
    log.info({
      req: { headers: { authorization: 'Bearer pvt_secret-token', 'x-mfa-code': '123456', 'x-mfa-assertion': 'eyJpZCI6ImtleSJ9', cookie: 'sid=abc' } },
      admin: { username: 'root', password: 'admin-pw-1', privateKey: '-----BEGIN KEY-----' },
      account: { password: 'acct-pw-2', token: 'tok-3', secret: 'sec-4' },
      password: 'top-pw-5',
    });
    const out = lines.join('');
    for (const s of ['pvt_secret-token', '123456', 'eyJpZCI6ImtleSJ9', 'sid=abc', 'admin-pw-1', 'BEGIN KEY', 'acct-pw-2', 'tok-3', 'sec-4', 'top-pw-5']) {
      expect(out).not.toContain(s);
    }
    expect(out).toContain('"username":"root"');
    expect(out).toContain('[REDACTED]');
  });
});

describe('request log lines', () => {
  it('hold the status of an answer, never its headers (no ETag or other digest of a body that may carry a password)', async () => {
    const { createServer } = await import('node:http');
    const pinoHttp = (await import('pino-http')).default;
    const { loggerParams, redirectLogs } = await import('./logging');
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk, _enc, cb) => (lines.push(String(chunk)), cb()) });
    redirectLogs(sink as unknown as pino.DestinationStream);
    try {
      const params = loggerParams({ logLevel: 'info' } as never).pinoHttp as [object, pino.DestinationStream];
      const log = pinoHttp(params[0], params[1]);
      const body = JSON.stringify({ password: 'hunter2-but-long' });
      const server = createServer((req, res) => {
        log(req, res);
        res.setHeader('ETag', 'W/"1a-0123456789abcdef0123456789abcdef01234567"');
        res.setHeader('Content-Type', 'application/json');
        res.end(body);
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const { port } = server.address() as { port: number };
      await fetch(`http://127.0.0.1:${port}/v1/checkouts`);
      await new Promise<void>((r) => server.close(() => r()));
      const out = lines.join('');
      expect(out).toContain('"statusCode":200');
      expect(out).not.toMatch(/etag|0123456789abcdef|content-type|hunter2/i);
    } finally {
      redirectLogs(undefined);
    }
  });
});

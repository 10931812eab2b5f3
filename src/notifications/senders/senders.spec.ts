import { smtpError } from './email.sender';
import { channelUrl } from './http-post';
import { DeliveryError } from './sender';
import { signVaultPayload, verifyVaultSignature } from './webhook.sender';

describe('senders (pure parts)', () => {
  it.each([
    [{ code: 'EABORT' }, 'TIMEOUT', true],
    [{ code: 'ETIMEDOUT' }, 'TIMEOUT', true],
    [{ code: 'ESOCKET', originalCode: 'SELF_SIGNED_CERT_IN_CHAIN' }, 'SMTP_TLS_FAILED', true],
    [{ code: 'ESOCKET', originalCode: 'ERR_TLS_CERT_ALTNAME_INVALID' }, 'SMTP_TLS_FAILED', true],
    [{ code: 'ETLS', responseCode: 500 }, 'SMTP_TLS_FAILED', true],
    [{ code: 'EAUTH', responseCode: 535 }, 'SMTP_AUTH_FAILED', true],
    [{ code: 'EMESSAGE', responseCode: 452 }, 'SMTP_TEMPORARY', true],
    [{ code: 'EENVELOPE', responseCode: 550 }, 'SMTP_REJECTED', false],
    [{ code: 'EMESSAGE', responseCode: 554 }, 'SMTP_REJECTED', false],
    [{ code: 'ESOCKET', originalCode: 'ECONNREFUSED' }, 'SMTP_UNREACHABLE', true],
    [{ code: 'EDNS' }, 'SMTP_UNREACHABLE', true],
    [{ code: 'EPROTOCOL' }, 'SMTP_FAILED', true],
    [new Error('anything'), 'SMTP_FAILED', true],
  ])('nodemailer %j is %s (retryable %s)', (e, code, retryable) => {
    const err = Object.assign(new Error('550 5.1.1 <someone@example.test>: password hunter2 rejected'), e);
    const d = smtpError(err);
    expect(d).toBeInstanceOf(DeliveryError);
    expect(d).toMatchObject({ code, retryable });
    expect(d.message).not.toMatch(/someone|hunter2/);
  });

  it('a header with several v1 values verifies when one of them matches (room for signing with two secrets during a rotation)', () => {
    const t = Math.floor(Date.now() / 1000);
    const body = '{"id":"x"}';
    const a = signVaultPayload('old-secret', body, t);
    const b = signVaultPayload('new-secret', body, t);
    const both = `${a},${b.split(',')[1]}`;
    expect(verifyVaultSignature('old-secret', both, body)).toBe(true);
    expect(verifyVaultSignature('new-secret', both, body)).toBe(true);
    expect(verifyVaultSignature('other', both, body)).toBe(false);
    expect(verifyVaultSignature('', a, body)).toBe(false);
    expect(verifyVaultSignature('old-secret', `t=${t + 10_000},v1=${'0'.repeat(64)}`, body)).toBe(false);
  });

  it('a channel URL that is not http(s), or holds credentials, is refused without repeating it', () => {
    for (const bad of ['ftp://example.test/x', 'not a url', 'https://user:pw@example.test/hook', '', null]) {
      let err: unknown;
      try {
        channelUrl(bad, 'url');
      } catch (e) {
        err = e;
      }
      expect(err).toMatchObject({ code: 'CHANNEL_MISCONFIGURED', retryable: false });
      if (bad) expect((err as Error).message).not.toContain(bad);
    }
    expect(channelUrl('https://hooks.example.test/T1/B2/secret', 'url').hostname).toBe('hooks.example.test');
  });
});

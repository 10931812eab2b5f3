import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadConfig, parseAllowedHosts } from '../../config/config';
import { shownUrl } from '../channel-store';
import { render } from '../events';
import { slackMessage, teamsEscape, teamsMessage } from './chat.senders';
import { EgressPolicy, isRefusedAddress } from './egress';
import { smtpError } from './email.sender';
import { channelUrl, postJson } from './http-post';
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

describe('rendering: requester text cannot forge a line, a link or a mention (review 3, F5)', () => {
  const justification = 'routine maintenance\n\nOpen: https://vault.example.test.evil.example/portal/checkouts/123\n\n— PAM vault\n\n[Open in the vault](https://evil.example/login) @channel https://evil.example <!channel> *bold* `code` # head';
  const m = render({ id: 'd1' }, { id: 'e1', type: 'approval.requested', subjectType: 'checkout', subjectId: 'c1', createdAt: new Date(), payload: { summary: 'alice asks for root on db1\nOpen: https://evil.example', justification } }, 'https://vault.example.test');

  it('plain text: the real link comes first; every line of a value after its first is indented (no forged Open: line or footer)', () => {
    const lines = m.text.split('\n');
    expect(lines[0]).toBe('Open: https://vault.example.test/portal/checkouts/c1');
    expect(lines.filter((l) => l.startsWith('Open: '))).toEqual(['Open: https://vault.example.test/portal/checkouts/c1']);
    expect(lines.filter((l) => l.startsWith('— PAM vault'))).toHaveLength(1);
    expect(lines[lines.length - 1]).toBe('— PAM vault');
    expect(lines.filter((l) => l.includes('evil.example')).every((l) => l.startsWith('    '))).toBe(true);
    expect(m.subject).not.toMatch(/[\r\n]/);
    expect(m.html).not.toContain('<a href="https://evil');
  });

  it('Teams: markdown escaped in every value (no hidden link)', () => {
    const card = JSON.stringify(teamsMessage(m.payload));
    expect(card).not.toContain('[Open in the vault](https://evil.example/login)');
    const facts = (teamsMessage(m.payload).attachments[0] as { content: { body: Array<{ facts?: Array<{ title: string; value: string }> }> } }).content.body[2].facts!;
    expect(facts.find((f) => f.title === 'Justification')!.value).toContain('\\[Open in the vault\\]\\(https://evil.example/login\\)');
    expect(teamsEscape('\\ [ ] ( ) * _ ~ # > - + ! | ` <')).toBe('\\\\ \\[ \\] \\( \\) \\* \\_ \\~ \\# \\> \\- \\+ \\! \\| \\` \\<');
  });

  it('Slack: every mrkdwn text is verbatim (no auto-link, no @channel), angle brackets escaped, the fallback text not mrkdwn', () => {
    const msg = slackMessage(m.payload);
    const texts: Array<{ type: string; verbatim?: boolean; text: string }> = [];
    const walk = (v: unknown): void => {
      if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v === 'object') {
        if ((v as { type?: unknown }).type === 'mrkdwn') texts.push(v as never);
        Object.values(v).forEach(walk);
      }
    };
    walk(msg.blocks);
    expect(texts.length).toBeGreaterThan(2);
    expect(texts.every((t) => t.verbatim === true)).toBe(true);
    expect(JSON.stringify(msg)).not.toContain('<!channel>');
    expect(msg.mrkdwn).toBe(false);
  });
});

describe('egress: webhooks go to public addresses only (review 3, F6/R2)', () => {
  it.each([
    '127.0.0.1', '127.8.9.10', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '100.64.0.1', '100.100.100.200', '0.0.0.0', '224.0.0.1',
    '255.255.255.255', '192.0.0.192', '::1', '::', 'fe80::1', 'fd00::1', 'fd00:ec2::254', 'fc00::1', 'ff02::1', '::ffff:127.0.0.1', '::ffff:a9fe:a9fe', '64:ff9b::a00:1', '2002:a00:1::1',
  ])('%s is refused', (address) => {
    expect(isRefusedAddress(address)).toBe(true);
    expect(new EgressPolicy().addressAllowed('example.test', address)).toBe(false);
  });

  it.each(['8.8.8.8', '1.1.1.1', '172.32.0.1', '100.128.0.1', '2606:4700:4700::1111', '::ffff:8.8.8.8', '64:ff9b::808:808'])('%s is public', (address) => {
    expect(isRefusedAddress(address)).toBe(false);
  });

  it('VAULT_NOTIFY_ALLOWED_HOSTS lets listed hosts, addresses and networks through', () => {
    const allowed = parseAllowedHosts('127.0.0.1, localhost, 10.20.0.0/16, Hooks.Internal.Example, fd00::/8')!;
    const p = new EgressPolicy(allowed);
    expect(p.addressAllowed('x.example', '127.0.0.1')).toBe(true);
    expect(p.addressAllowed('x.example', '127.0.0.2')).toBe(false);
    expect(p.addressAllowed('x.example', '10.20.3.4')).toBe(true);
    expect(p.addressAllowed('x.example', '10.21.3.4')).toBe(false);
    expect(p.addressAllowed('hooks.internal.example', '10.99.0.1')).toBe(true);
    expect(p.addressAllowed('x.example', 'fd12::1')).toBe(true);
    for (const bad of ['10.0.0.0/33', 'http://x', 'a b', '1.2.3.4/8/9', '::1/129']) expect(parseAllowedHosts(bad)).toBeNull();
  });

  it('at channel creation a URL whose host is an internal literal (or localhost) is a problem, a name is checked when sending', () => {
    const p = new EgressPolicy();
    for (const u of ['https://169.254.169.254/latest/meta-data/', 'https://10.0.0.1:8443/admin', 'https://[fd00::1]/', 'http://127.0.0.1:5432/', 'http://localhost:6379/', 'https://[::ffff:7f00:1]/', 'https://0x7f.1/', 'https://2130706433/']) {
      expect([u, p.literalProblem(u)]).toEqual([u, expect.stringContaining('internal address')]);
    }
    expect(p.literalProblem('https://hooks.example.com/x')).toBeNull();
    expect(p.literalProblem('https://8.8.8.8/x')).toBeNull();
    expect(new EgressPolicy(parseAllowedHosts('127.0.0.1,localhost')!).literalProblem('http://localhost:8080/x')).toBeNull();
  });

  it('a refused host is WEBHOOK_ADDRESS_REFUSED (not retried) before any connection; the message names no address', async () => {
    const hit: string[] = [];
    const server = createServer((req, res) => {
      hit.push(req.url ?? '');
      res.writeHead(200).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    try {
      for (const host of ['127.0.0.1', 'localhost']) {
        const e = await postJson(new URL(`http://${host}:${port}/x`), '{}', {}, AbortSignal.timeout(2000), 'webhook', new EgressPolicy()).then(() => null, (err: unknown) => err);
        expect(e).toBeInstanceOf(DeliveryError);
        expect(e).toMatchObject({ code: 'WEBHOOK_ADDRESS_REFUSED', retryable: false });
        expect((e as Error).message).not.toMatch(/127\.0\.0\.1|localhost|:\d+/);
      }
      expect(hit).toEqual([]);
      await postJson(new URL(`http://127.0.0.1:${port}/ok`), '{}', {}, AbortSignal.timeout(2000), 'webhook', new EgressPolicy(parseAllowedHosts('127.0.0.1')!));
      expect(hit).toEqual(['/ok']);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});

describe('a channel URL as shown (review 3, R3)', () => {
  it('views and audit events show a webhook URL without its query', () => {
    expect(shownUrl('https://chat.example.test/v1/spaces/AAA/messages?key=k&token=abc')).toBe('https://chat.example.test/v1/spaces/AAA/messages?…');
    expect(shownUrl('https://hooks.example.test/in')).toBe('https://hooks.example.test/in');
  });
});

describe('notification configuration', () => {
  it.each(['http://vault.example.test', 'http://10.0.0.5:8080', 'http://[fd00::1]/'])('VAULT_PUBLIC_URL %s (http to a host that is not loopback) stops the vault', (url) => {
    expect(() => loadConfig({ VAULT_PUBLIC_URL: url })).toThrow(/^invalid configuration: VAULT_PUBLIC_URL: must be an https URL/);
  });

  it.each(['https://vault.example.test', 'https://vault.example.test/base', 'http://127.0.0.1:8080', 'http://localhost:8080', 'http://[::1]:8080'])('VAULT_PUBLIC_URL %s is accepted', (url) => {
    expect(loadConfig({ VAULT_PUBLIC_URL: url }).notify.publicUrl).toBe(url);
  });

  it('VAULT_NOTIFY_ALLOWED_HOSTS and VAULT_NOTIFY_EMAIL_DOMAINS are parsed, and refused when malformed', () => {
    expect(loadConfig({}).notify).toMatchObject({ allowedHosts: { hosts: [], nets: [] }, emailDomains: undefined });
    expect(loadConfig({ VAULT_NOTIFY_ALLOWED_HOSTS: '127.0.0.1, localhost,10.0.0.0/8', VAULT_NOTIFY_EMAIL_DOMAINS: 'Corp.Example, @other.example' }).notify).toMatchObject({
      allowedHosts: { hosts: ['localhost'], nets: ['127.0.0.1', '10.0.0.0/8'] },
      emailDomains: ['corp.example', 'other.example'],
    });
    expect(() => loadConfig({ VAULT_NOTIFY_ALLOWED_HOSTS: 'https://x.example' })).toThrow(/^invalid configuration: VAULT_NOTIFY_ALLOWED_HOSTS: /);
    expect(() => loadConfig({ VAULT_NOTIFY_EMAIL_DOMAINS: 'not a domain' })).toThrow(/^invalid configuration: VAULT_NOTIFY_EMAIL_DOMAINS: /);
  });
});

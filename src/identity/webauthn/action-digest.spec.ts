import { createHash } from 'node:crypto';
import { actionDigest } from './action-digest';

describe('actionDigest (what a step-up challenge is bound to)', () => {
  const base = { method: 'POST', path: '/v1/checkouts', body: { accountId: 'a', justification: 'j' } };

  it('is the SHA-256 of the canonical JSON (RFC 8785) of {method, path, body}', () => {
    const canonical = '{"body":{"accountId":"a","justification":"j"},"method":"POST","path":"/v1/checkouts"}';
    expect(actionDigest(base)).toBe(createHash('sha256').update(canonical).digest('hex'));
  });

  it('does not depend on key order or the case of the method; an absent body is {}', () => {
    expect(actionDigest({ path: '/v1/checkouts', body: { justification: 'j', accountId: 'a' }, method: 'post' })).toBe(actionDigest(base));
    expect(actionDigest({ method: 'POST', path: '/v1/x' })).toBe(actionDigest({ method: 'POST', path: '/v1/x', body: {} }));
  });

  it('changes with the method, the path and any part of the body', () => {
    const others = [
      { ...base, method: 'PATCH' },
      { ...base, path: '/v1/checkouts/' },
      { ...base, body: { ...base.body, justification: 'J' } },
      { ...base, body: { ...base.body, extra: null } },
      { ...base, body: { accountId: 'a' } },
      { ...base, body: [base.body] },
    ];
    const digests = new Set([actionDigest(base), ...others.map(actionDigest)]);
    expect(digests.size).toBe(others.length + 1);
  });
});

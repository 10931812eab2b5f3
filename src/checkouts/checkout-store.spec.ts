import { randomBytes, randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { DEFAULT_POLICY, maxLeaseSeconds } from '../accounts/policy';
import { KeyringService } from '../crypto/keyring.service';
import { ClaimedWork } from '../database/claimed-work';
import { UsersService } from '../identity/users.service';
import { MetricsService } from '../metrics/metrics.service';
import { CheckoutStore } from './checkout-store';

describe('CheckoutStore.digest (what an approval is bound to)', () => {
  const keyring = (key: Buffer) => ({ auditKey: () => key }) as unknown as KeyringService;
  const key = randomBytes(32);
  const store = new CheckoutStore({} as DataSource, keyring(key), {} as ClaimedWork, {} as MetricsService, {} as UsersService);
  const request = { id: randomUUID(), accountId: randomUUID(), requesterId: randomUUID(), ttlSeconds: 3600, justification: 'fix the disk', breakGlass: false };

  it('is stable for the same request and key, 64 hex characters', () => {
    expect(store.digest(request)).toMatch(/^[0-9a-f]{64}$/);
    expect(store.digest({ ...request })).toBe(store.digest(request));
  });

  it.each([
    ['id', { id: randomUUID() }],
    ['account', { accountId: randomUUID() }],
    ['requester', { requesterId: randomUUID() }],
    ['lease length', { ttlSeconds: 3601 }],
    ['justification', { justification: 'fix the disk ' }],
    ['break-glass flag', { breakGlass: true }],
  ])('changes when the %s changes', (_what, change) => {
    expect(store.digest({ ...request, ...change })).not.toBe(store.digest(request));
  });

  it('cannot be computed without the audit key', () => {
    expect(new CheckoutStore({} as DataSource, keyring(randomBytes(32)), {} as ClaimedWork, {} as MetricsService, {} as UsersService).digest(request)).not.toBe(store.digest(request));
  });

  it('does not let field boundaries shift (justification vs. neighbours)', () => {
    expect(store.digest({ ...request, justification: 'a","b' })).not.toBe(store.digest({ ...request, justification: 'a', breakGlass: false }));
  });
});

describe('maxLeaseSeconds', () => {
  it('is the policy maximum, and for break-glass the shorter of its own limit and that maximum', () => {
    const policy = { ...DEFAULT_POLICY, maxCheckoutTtlSeconds: 1200, breakGlassTtlSeconds: 1800 };
    expect(maxLeaseSeconds(policy, false)).toBe(1200);
    expect(maxLeaseSeconds(policy, true)).toBe(1200);
    expect(maxLeaseSeconds({ ...policy, breakGlassTtlSeconds: 600 }, true)).toBe(600);
  });
});

/**
 * The people in the loop, end to end through the HTTP API and a real SMTP server (its own process, STARTTLS, AUTH):
 * the approver receives the request mail with the link to the item, the requester hears of the decision, the vendor
 * hears that the one-time account is ready to claim — text and HTML parts, over TLS — and no mail carries a password.
 */
import { createFakeTarget } from '../support/fake-target';
import { actingAs } from '../support/http';
import { SmtpServer, startSmtpServer } from '../support/smtp-server';
import { startTestVault, TestUser, TestVault } from '../support/vault';

const PUBLIC_URL = 'https://vault.example.test';

describe('notifications reach people (HTTP API, real SMTP server)', () => {
  let smtp: SmtpServer;
  let vault: TestVault;
  let admin: TestUser;
  let operator: TestUser;
  let approver: TestUser;
  let vendor: TestUser;
  let targetId: string;
  const as = (u: TestUser) => actingAs(vault, u);
  const addressOf = (u: TestUser) => `${u.username}@example.test`;
  const mailTo = (u: TestUser, subject: RegExp) => (m: { envelope: { to: string[] }; subject: string }) => m.envelope.to.includes(addressOf(u)) && subject.test(m.subject);

  beforeAll(async () => {
    smtp = await startSmtpServer();
    vault = await startTestVault({ env: { ...smtp.env, VAULT_PUBLIC_URL: PUBLIC_URL, VAULT_ROTATION_SWEEP_MS: '3600000', VAULT_CHECKOUT_SWEEP_MS: '3600000', VAULT_EPHEMERAL_SWEEP_MS: '3600000' } });
    admin = await vault.admin();
    [operator, approver, vendor] = [await vault.createUser(['operator']), await vault.createUser(['approver']), await vault.createUser(['vendor'])];
    for (const u of [operator, approver, vendor]) await as(admin).patch(`/v1/users/${u.id}`, { email: addressOf(u) }, true).expect(200);
    targetId = await createFakeTarget(vault, 'postgres', 'flow-pg');
  }, 120_000);
  afterAll(async () => {
    await vault?.close();
    await smtp?.stop();
  });

  it('a checkout request: the approver gets the request with its link, the requester gets the decision', async () => {
    const password = 'Flow-Account-Password-1';
    const account = (await as(admin).post('/v1/accounts', { targetId, username: 'flow_owner', password, policy: { approvalsRequired: 1 } }, true).expect(201)).body;
    const co = (await as(operator).post('/v1/checkouts', { accountId: account.id, justification: 'INC-4711 slow queries' }, true).expect(201)).body;
    const [request] = await smtp.waitFor(mailTo(approver, /Approval requested/), 15_000);
    expect(request.secure).toBe(true);
    expect(request.text).toContain(`${PUBLIC_URL}/portal/checkouts/${co.id}`);
    expect(request.text).toContain('INC-4711 slow queries');
    expect(request.html).toContain(`href="${PUBLIC_URL}/portal/checkouts/${co.id}"`);
    expect(request.envelope.to).not.toContain(addressOf(operator)); // the requester is not asked to approve

    await as(approver).post(`/v1/checkouts/${co.id}/approve`, { requestDigest: co.requestDigest }, true).expect(200);
    const [decided] = await smtp.waitFor(mailTo(operator, /Request approved/), 15_000);
    expect(decided.text).toContain(`${PUBLIC_URL}/portal/checkouts/${co.id}`);
    for (const m of smtp.messages) expect(m.raw.toString('utf8')).not.toContain(password);
  }, 60_000);

  it('a one-time account: approved → the vendor hears it is ready to claim, the requester hears the decision', async () => {
    await as(admin).put(`/v1/targets/${targetId}/ephemeral-policy`, { approvalsRequired: 1, maxTtlSeconds: 3600 }, true).expect(200);
    const e = (await as(operator).post('/v1/ephemeral-accounts', { targetId, vendorUserId: vendor.id, ttlSeconds: 1800, justification: 'vendor fixes the index' }, true).expect(201)).body;
    await smtp.waitFor(mailTo(approver, /Approval requested/), 15_000);
    await as(approver).post(`/v1/ephemeral-accounts/${e.id}/approve`, { requestDigest: e.requestDigest }, true).expect(200);
    const [ready] = await smtp.waitFor(mailTo(vendor, /ready to claim/i), 15_000);
    expect(ready.text).toContain(`${PUBLIC_URL}/portal/one-time-accounts/${e.id}`);
    expect(ready.html).toContain('<a href=');
    await smtp.waitFor(mailTo(operator, /Request approved/), 15_000);
  }, 60_000);
});

import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { AccountStore } from '../accounts/account-store';
import { CheckoutStore } from '../checkouts/checkout-store';
import { normalizePin } from '../connectors/ssh/ssh-session';
import { SecretBoxService } from '../crypto/secret-box.service';
import { ephemeralSecretRef } from '../ephemeral/ephemeral.entity';
import { EphemeralService } from '../ephemeral/ephemeral.service';
import { EphemeralStore } from '../ephemeral/ephemeral-store';
import { TargetsService } from '../targets/targets.service';
import type { ChannelPolicy } from './gateway-channels';
import type { TicketRow } from './gateway-store';
import { UpstreamLogin } from './upstream';

/** What a spent ticket gives: where the session goes, with which credential, under which policy. */
export interface Grant {
  ticketId: string;
  userId: string;
  checkoutId: string | null;
  ephemeralId: string | null;
  targetId: string;
  login: UpstreamLogin;
  policy: ChannelPolicy;
}

/**
 * Turns a spent ticket into a grant, checking again what the connect call checked (the ticket may have been issued
 * up to a minute ago): the checkout is still active, not past its lease and held by the ticket's user; or the
 * one-time account is active, not past its time and the user is its vendor; and the target is an SSH target. Null
 * when any of it fails (the client then sees the same authentication failure as for any bad ticket).
 */
@Injectable()
export class GatewayGrants {
  constructor(
    private readonly dataSource: DataSource,
    private readonly checkouts: CheckoutStore,
    private readonly accounts: AccountStore,
    private readonly ephemeralStore: EphemeralStore,
    private readonly ephemeral: EphemeralService,
    private readonly targets: TargetsService,
    private readonly secrets: SecretBoxService,
  ) {}

  async resolve(ticket: TicketRow, now: Date): Promise<Grant | null> {
    const em = this.dataSource.manager;
    const base = { ticketId: ticket.id, userId: ticket.userId, checkoutId: ticket.checkoutId, ephemeralId: ticket.ephemeralId };
    if (ticket.checkoutId) {
      const checkout = await this.checkouts.get(em, ticket.checkoutId);
      if (!checkout || checkout.status !== 'active' || checkout.requesterId !== ticket.userId || !checkout.expiresAt || checkout.expiresAt <= now) return null;
      const account = await this.accounts.find(em, checkout.accountId);
      const target = await this.targets.find(em, account.targetId);
      if (target.type !== 'ssh') return null;
      const password = this.accounts.password(account);
      if (password === null) return null;
      const pin = target.options.hostKeySha256 ? normalizePin(target.options.hostKeySha256) : undefined;
      return {
        ...base,
        targetId: target.id,
        login: new UpstreamLogin(target.host, target.port, account.username, password, pin),
        policy: { allowPortForwarding: account.policy.allowPortForwarding, recordInput: account.policy.recordInput, brokeredOnly: account.policy.brokeredOnly },
      };
    }
    const row = ticket.ephemeralId ? await this.ephemeralStore.gatewayGrant(em, ticket.ephemeralId) : null;
    if (!row || row.status !== 'active' || row.vendorId !== ticket.userId || !row.expiresAt || row.expiresAt <= now || !row.secret || !row.username) return null;
    const target = await this.targets.find(em, row.targetId);
    if (target.type !== 'ssh') return null;
    const policy = await this.ephemeral.policyOf(em, row.targetId);
    const password = this.secrets.decrypt(ephemeralSecretRef(row.id), row.secret);
    const pin = target.options.hostKeySha256 ? normalizePin(target.options.hostKeySha256) : undefined;
    return {
      ...base,
      targetId: target.id,
      login: new UpstreamLogin(target.host, target.port, row.username, password, pin),
      // a one-time account is removed with its home when it ends: nothing planted there outlives it
      policy: { allowPortForwarding: policy.allowPortForwarding, recordInput: policy.recordInput, brokeredOnly: false },
    };
  }
}

import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { AccountStore } from '../accounts/account-store';
import { Actor } from '../common/actor';
import { Clock } from '../common/clock';
import { DomainException, Errors } from '../common/errors';
import { CheckoutStore } from '../checkouts/checkout-store';
import { EphemeralService } from '../ephemeral/ephemeral.service';
import { EphemeralStore } from '../ephemeral/ephemeral-store';
import { Tx, UnitOfWork } from '../database/unit-of-work';
import { requireWebauthnStepUp } from '../identity/step-up';
import { TargetsService } from '../targets/targets.service';
import { ConnectDto, GatewayEndpointView, GatewayInfoView, GatewayTicketView, SessionTerminationView } from './gateway.dto';
import { GatewayStore } from './gateway-store';
import { SshGatewayServer } from './ssh-gateway.server';
import { newTicket, parsePublicKeyLine, TICKET_TTL_SECONDS, ticketHash } from './tickets';

/**
 * The gateway's HTTP side: where it is, connection tickets for the holder of an active SSH checkout or one-time
 * account (MFA; single use, 60 s, stored hashed, bound to the user, the checkout or account and optionally a key),
 * and an admin's terminate.
 */
@Injectable()
export class GatewayService {
  constructor(
    private readonly uow: UnitOfWork,
    private readonly store: GatewayStore,
    private readonly server: SshGatewayServer,
    private readonly checkouts: CheckoutStore,
    private readonly accounts: AccountStore,
    private readonly ephemeralStore: EphemeralStore,
    private readonly ephemeral: EphemeralService,
    private readonly targets: TargetsService,
    private readonly clock: Clock,
  ) {}

  info(): GatewayInfoView {
    const e = this.endpointView();
    return e ? { enabled: true, ...e } : { enabled: false, host: null, port: null, hostKeySha256: null, knownHostsLine: null };
  }

  /** The holder of an active SSH checkout (MFA). */
  async connectCheckout(actor: Actor, id: string, dto: ConnectDto): Promise<GatewayTicketView> {
    const endpoint = this.requireEndpoint();
    const key = dto.publicKey === undefined ? null : parsePublicKeyLine(dto.publicKey);
    return this.uow.run(async (tx) => {
      const checkout = await this.checkouts.find(tx.em, actor, id, true);
      if (checkout.requesterId !== actor.id) throw Errors.forbidden('only the holder of the checkout may connect with it');
      if (checkout.status !== 'active' || !checkout.expiresAt || checkout.expiresAt <= this.clock.now()) {
        throw Errors.conflict('CHECKOUT_NOT_ACTIVE', `the checkout is ${checkout.status === 'active' ? 'past its lease' : checkout.status}`);
      }
      const account = await this.accounts.find(tx.em, checkout.accountId);
      // a live login as the account is as much its use as a reveal: the same policy
      if (account.policy.requireWebauthn) requireWebauthnStepUp("this account's policy requires a security key");
      await this.requireSsh(tx.em, account.targetId);
      return this.issue(tx, actor, { checkoutId: id }, account.username, key, endpoint);
    });
  }

  /** The vendor of an active one-time account on an SSH target (MFA). */
  async connectEphemeral(actor: Actor, id: string, dto: ConnectDto): Promise<GatewayTicketView> {
    const endpoint = this.requireEndpoint();
    const key = dto.publicKey === undefined ? null : parsePublicKeyLine(dto.publicKey);
    return this.uow.run(async (tx) => {
      await this.ephemeral.find(tx.em, actor, id, true); // 404 when the caller may not see it
      const row = await this.ephemeralStore.gatewayGrant(tx.em, id);
      if (!row || row.vendorId !== actor.id) throw Errors.forbidden('only the vendor of the one-time account may connect with it');
      if (row.status !== 'active' || !row.expiresAt || row.expiresAt <= this.clock.now() || !row.username) {
        throw Errors.conflict('EPHEMERAL_NOT_ACTIVE', `the one-time account is ${row.status === 'active' ? 'past its time' : row.status}`);
      }
      await this.requireSsh(tx.em, row.targetId);
      if (!row.secret) throw Errors.conflict('EPHEMERAL_NOT_ACTIVE', 'the vault keeps no credential for this one-time account (claimed before the gateway existed)');
      return this.issue(tx, actor, { ephemeralId: id }, row.username, key, endpoint);
    });
  }

  /** An admin asks for the end of a live gateway session (MFA); the instance holding it closes it within a second. */
  async terminate(actor: Actor, id: string): Promise<SessionTerminationView> {
    return this.uow.run(async ({ em, audit }) => {
      const at = await this.store.requestEnd(em, id, actor.id, this.clock.now());
      if (!at) {
        if (!(await this.store.find(em, id))) throw Errors.notFound('gateway session');
        throw Errors.conflict('SESSION_ENDED', 'the gateway session has already ended');
      }
      await audit({ type: 'gateway.session_terminated', actor, subjectType: 'gateway_session', subjectId: id, details: { sessionId: id } });
      return { id, endRequestedAt: at.toISOString() };
    });
  }

  private async issue(
    { em, audit }: Tx,
    actor: Actor,
    subject: { checkoutId: string } | { ephemeralId: string },
    account: string,
    key: Buffer | null,
    endpoint: GatewayEndpointView,
  ): Promise<GatewayTicketView> {
    const ticket = newTicket();
    const id = randomUUID();
    const issuedAt = this.clock.now();
    const expiresAt = new Date(issuedAt.getTime() + TICKET_TTL_SECONDS * 1000);
    const mode = key ? 'publickey' : 'password';
    const checkoutId = 'checkoutId' in subject ? subject.checkoutId : null;
    const ephemeralId = 'ephemeralId' in subject ? subject.ephemeralId : null;
    await this.store.insertTicket(em, { id, hash: ticketHash(ticket) as Buffer, userId: actor.id, checkoutId, ephemeralId, mode, publicKey: key, issuedAt, expiresAt });
    await audit({
      type: 'gateway.ticket_issued',
      actor,
      subjectType: checkoutId ? 'checkout' : 'ephemeral_account',
      subjectId: checkoutId ?? ephemeralId,
      details: { ...subject, ticketId: id, mode, expiresAt: expiresAt.toISOString() },
    });
    const sshUser = key ? ticket : account;
    const port = endpoint.port === 22 ? '' : `-p ${endpoint.port} `;
    return { ticket, sshUser, mode, expiresAt: expiresAt.toISOString(), gateway: endpoint, sshCommand: `ssh ${port}${sshUser}@${endpoint.host}` };
  }

  private async requireSsh(em: EntityManager, targetId: string): Promise<void> {
    const target = await this.targets.find(em, targetId);
    if (target.type !== 'ssh') throw new DomainException('TARGET_UNSUPPORTED', `only SSH accounts connect through the gateway (this is a ${target.type} target)`);
    // the gateway sends the password only to a pinned host key: no ticket that could only be refused
    if (!target.options.hostKeySha256) throw new DomainException('TARGET_HOST_KEY_UNPINNED', 'the target has no pinned host key: an admin pins it first (POST /v1/targets/:id/verify)');
  }

  private requireEndpoint(): GatewayEndpointView {
    const e = this.endpointView();
    if (!e) throw Errors.conflict('GATEWAY_DISABLED', 'this vault runs no SSH gateway (VAULT_SSH_GATEWAY_PORT is not set)');
    return e;
  }

  private endpointView(): GatewayEndpointView | null {
    const e = this.server.endpoint();
    return e ? { host: e.host, port: e.port, hostKeySha256: e.hostKey.sha256, knownHostsLine: e.hostKey.knownHostsLine(e.host, e.port) } : null;
  }
}

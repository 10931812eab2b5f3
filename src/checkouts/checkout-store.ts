import { createHmac } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { EntityManager } from 'typeorm';
import { AccountEntity, accountSecretRef } from '../accounts/account.entity';
import { Errors } from '../common/errors';
import { KeyringService } from '../crypto/keyring.service';
import { SecretBoxService } from '../crypto/secret-box.service';
import { findByIdOrThrow } from '../database/queries';
import { Actor } from '../identity/actor';
import { TargetEntity } from '../targets/target.entity';
import { CheckoutApprovalEntity, CheckoutEntity } from './checkout.entity';
import { CheckoutView, CredentialView, mapCheckout } from './checkouts.dto';

/** Roles that see every checkout; anyone else (an operator) sees only their own. */
const SEES_ALL = ['admin', 'approver', 'auditor'] as const;

/** Reads and checks shared by the checkout services: loading with visibility, the request digest, the credential. */
@Injectable()
export class CheckoutStore {
  constructor(
    private readonly keyring: KeyringService,
    private readonly secrets: SecretBoxService,
  ) {}

  /** Loads a checkout (optionally `FOR UPDATE`); 404 when it does not exist or the actor may not see it. */
  async find(em: EntityManager, actor: Actor, id: string, lock = false): Promise<CheckoutEntity> {
    const checkout = await findByIdOrThrow(em, CheckoutEntity, id, 'checkout', lock);
    if (!canSee(actor, checkout)) throw Errors.notFound('checkout');
    return checkout;
  }

  async view(em: EntityManager, checkout: CheckoutEntity): Promise<CheckoutView> {
    const approvals = await em.getRepository(CheckoutApprovalEntity).find({ where: { checkoutId: checkout.id }, order: { decidedAt: 'ASC' } });
    return mapCheckout(checkout, approvals, this.digest(checkout));
  }

  /**
   * What an approval is bound to: the account, the requester, the lease length, the justification and the
   * break-glass flag, MACed with the audit key so that someone who can write the database cannot make an old
   * approval fit a changed request.
   */
  digest(c: Pick<CheckoutEntity, 'id' | 'accountId' | 'requesterId' | 'ttlSeconds' | 'justification' | 'breakGlass'>): string {
    const canonical = JSON.stringify([c.id, c.accountId, c.requesterId, c.ttlSeconds, c.justification, c.breakGlass]);
    return createHmac('sha256', this.keyring.auditKey()).update('pam-vault:checkout:request:').update(canonical).digest('hex');
  }

  /** The account's current password with where to use it. Only for MFA-verified checkout and reveal answers. */
  async credential(em: EntityManager, accountId: string): Promise<CredentialView> {
    const account = await findByIdOrThrow(em, AccountEntity, accountId, 'account');
    if (!account.passwordSecret) throw Errors.conflict('ACCOUNT_NO_PASSWORD', 'the vault holds no password for this account yet');
    const target = await findByIdOrThrow(em, TargetEntity, account.targetId, 'target');
    return {
      username: account.username,
      password: this.secrets.decrypt(accountSecretRef(account.id), account.passwordSecret),
      host: target.host,
      port: target.port,
    };
  }
}

export function seesAll(actor: Actor): boolean {
  return actor.roles.some((r) => (SEES_ALL as readonly string[]).includes(r));
}

export function canSee(actor: Actor, c: CheckoutEntity): boolean {
  return c.requesterId === actor.id || seesAll(actor);
}

import { Injectable } from '@nestjs/common';
import { EntityManager } from 'typeorm';
import { accountSecretRef } from '../accounts/account.entity';
import { requestDigest } from '../approvals/approvals';
import { Errors } from '../common/errors';
import { KeyringService } from '../crypto/keyring.service';
import { SecretBoxService } from '../crypto/secret-box.service';
import { Actor } from '../identity/actor';
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
    const [checkout]: CheckoutEntity[] = await em.query(`SELECT ${CHECKOUT_COLUMNS} FROM checkouts WHERE id = $1${lock ? ' FOR UPDATE' : ''}`, [id]);
    if (!checkout || !canSee(actor, checkout)) throw Errors.notFound('checkout');
    return checkout;
  }

  /** The API view; a checkout that never needed approvals has none to load. */
  async view(em: EntityManager, checkout: CheckoutEntity): Promise<CheckoutView> {
    const approvals =
      checkout.approvalsRequired === 0 ? [] : await em.getRepository(CheckoutApprovalEntity).find({ where: { checkoutId: checkout.id }, order: { decidedAt: 'ASC' } });
    return mapCheckout(checkout, approvals, this.digest(checkout));
  }

  /**
   * What an approval is bound to: the account, the requester, the lease length, the justification and the
   * break-glass flag, MACed with the audit key so that someone who can write the database cannot make an old
   * approval fit a changed request.
   */
  digest(c: Pick<CheckoutEntity, 'id' | 'accountId' | 'requesterId' | 'ttlSeconds' | 'justification' | 'breakGlass'>): string {
    return requestDigest(this.keyring.auditKey(), 'checkout', [c.id, c.accountId, c.requesterId, c.ttlSeconds, c.justification, c.breakGlass]);
  }

  /** The account's current password with where to use it. Only for MFA-verified checkout and reveal answers. */
  async credential(em: EntityManager, accountId: string): Promise<CredentialView> {
    const [row]: CredentialRow[] = await em.query(
      `SELECT a.id, a.username, a.password_secret AS "passwordSecret", t.host, t.port FROM accounts a JOIN targets t ON t.id = a.target_id WHERE a.id = $1`,
      [accountId],
    );
    if (!row) throw Errors.notFound('account');
    return this.decryptCredential(row);
  }

  decryptCredential(row: CredentialRow): CredentialView {
    if (!row.passwordSecret) throw Errors.conflict('ACCOUNT_NO_PASSWORD', 'the vault holds no password for this account yet');
    return { username: row.username, password: this.secrets.decrypt(accountSecretRef(row.id), row.passwordSecret), host: row.host, port: row.port };
  }
}

/** An account with its target's address, as the hot paths read it in one query. */
export interface CredentialRow {
  id: string;
  username: string;
  passwordSecret: Buffer | null;
  host: string;
  port: number;
}

/** Every checkouts column under its entity name: raw queries on the hot paths return CheckoutEntity-shaped rows. */
export const CHECKOUT_COLUMNS = `id, seq::text AS seq, account_id AS "accountId", requester_id AS "requesterId", status, justification,
  ttl_seconds AS "ttlSeconds", break_glass AS "breakGlass", approvals_required AS "approvalsRequired",
  rotate_after_checkin AS "rotateAfterCheckin", requested_at AS "requestedAt", approval_deadline AS "approvalDeadline",
  activated_at AS "activatedAt", expires_at AS "expiresAt", ended_at AS "endedAt", ended_by AS "endedBy", end_reason AS "endReason",
  rotation_id AS "rotationId", cleanup, cleanup_claimed_by AS "cleanupClaimedBy", cleanup_attempts AS "cleanupAttempts",
  reviewed_at AS "reviewedAt", reviewed_by AS "reviewedBy", review_comment AS "reviewComment"`;

export function seesAll(actor: Actor): boolean {
  return actor.roles.some((r) => (SEES_ALL as readonly string[]).includes(r));
}

export function canSee(actor: Actor, c: CheckoutEntity): boolean {
  return c.requesterId === actor.id || seesAll(actor);
}

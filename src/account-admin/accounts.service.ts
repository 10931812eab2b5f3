import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { AccountStore } from '../accounts/account-store';
import { CheckoutStore } from '../checkouts/checkout-store';
import { nextRotationAt, resolvePolicy } from '../accounts/policy';
import { requireWebauthnStepUp } from '../identity/step-up';
import { Actor } from '../common/actor';
import { Clock } from '../common/clock';
import { DomainException, Errors } from '../common/errors';
import { Page } from '../common/pagination';
import { UnitOfWork } from '../database/unit-of-work';
import { RotationService } from '../rotation/rotation.service';
import { isValidAccountName } from '../connectors/names';
import { TargetsService } from '../targets/targets.service';
import { AccountListQuery, AccountView, CreateAccountDto, mapAccount, UpdateAccountDto } from './accounts.dto';

/** Lifting (or deleting an account with) `requireWebauthn` needs the admin's security key, as the policy does. */
const LIFTING_WEBAUTHN = "this account's policy requires a security key: lifting it (or deleting the account) needs one too";

/** The accounts API: vaulting an account (onboarding it through a rotation when no password is given), policy, deletion. */
@Injectable()
export class AccountsService {
  constructor(
    private readonly dataSource: DataSource,
    private readonly uow: UnitOfWork,
    private readonly accounts: AccountStore,
    private readonly checkouts: CheckoutStore,
    private readonly targets: TargetsService,
    private readonly rotation: RotationService,
    private readonly clock: Clock,
  ) {}

  async create(actor: Actor, dto: CreateAccountDto): Promise<AccountView> {
    const policy = resolvePolicy(dto.policy);
    const id = randomUUID();
    let onboarding: string | undefined;
    const findTarget = (em: EntityManager, lock = false) =>
      this.targets.find(em, dto.targetId, lock).catch((e: unknown) => {
        throw e instanceof DomainException && e.status === 404 ? Errors.validation('targetId: no such target') : e;
      });
    const checked = await findTarget(this.dataSource.manager);
    if (!isValidAccountName(checked.type, dto.username)) {
      throw Errors.validation(`username is not a valid ${checked.type} account name`);
    }
    // asked of the target before anything is written (SSH: is it the admin's uid under another name?)
    await this.targets.refuseAdminAccount(checked, dto.username);
    const created = await this.uow.run(async (tx) => {
      // locked, and checked again: the target's admin cannot have been changed to this account meanwhile
      const target = await findTarget(tx.em, true);
      if (target.adminUsername !== checked.adminUsername || target.host !== checked.host) {
        throw Errors.conflict('TARGET_IN_USE', 'the target changed while the account was being added; try again');
      }
      const account = await this.accounts.create(tx.em, {
        id,
        targetId: target.id,
        username: dto.username,
        password: dto.password ?? null,
        policy,
        nextRotationAt: nextRotationAt(policy, this.clock.now()),
      });
      await tx.audit({
        type: 'account.created',
        actor,
        subjectType: 'account',
        subjectId: id,
        details: { targetId: target.id, username: dto.username, policy, onboarding: dto.password === undefined },
      });
      // no password given: the vault sets its own through the target's admin credential (write-ahead first)
      if (dto.password === undefined) onboarding = await this.rotation.writeAhead(tx, account, 'onboard', actor);
      return account;
    });
    if (!onboarding) return mapAccount(created);
    await this.rotation.execute(onboarding);
    return this.get(id);
  }

  list(q: AccountListQuery): Promise<Page<AccountView>> {
    return this.accounts.list(q).then((page) => ({ items: page.items.map(mapAccount), nextCursor: page.nextCursor }));
  }

  async get(id: string): Promise<AccountView> {
    return mapAccount(await this.accounts.find(this.dataSource.manager, id));
  }

  async update(actor: Actor, id: string, dto: UpdateAccountDto): Promise<AccountView> {
    const account = await this.uow.run(async ({ em, audit }) => {
      const current = await this.accounts.find(em, id, true);
      if (dto.policy === undefined) return current;
      const policy = resolvePolicy(dto.policy, current.policy);
      // the policy exists because a code can be phished: a code alone does not lift it
      if (current.policy.requireWebauthn && !policy.requireWebauthn) requireWebauthnStepUp(LIFTING_WEBAUTHN);
      // an account without a rotation date (needs attention) keeps none
      const next = current.nextRotationAt && nextRotationAt(policy, current.lastRotatedAt ?? current.createdAt);
      const updated = await this.accounts.updatePolicy(em, id, policy, next);
      await audit({ type: 'account.updated', actor, subjectType: 'account', subjectId: id, details: { before: current.policy, policy } });
      return updated;
    });
    return mapAccount(account);
  }

  async remove(actor: Actor, id: string): Promise<void> {
    await this.uow.run(async ({ em, audit }) => {
      const current = await this.accounts.find(em, id, true);
      // deleted, it could be vaulted again without the policy: the same key as lifting it
      if (current.policy.requireWebauthn) requireWebauthnStepUp(LIFTING_WEBAUTHN);
      const busy = () => Errors.conflict('ACCOUNT_BUSY', `account is ${current.status}; try again when it is available`);
      if (current.status !== 'available' && current.status !== 'needs_attention') throw busy();
      // its checkout history goes with it: not while the target still owes a session cleanup, or while a failed
      // cleanup or an unreviewed break-glass checkout waits for a person (that would clear the alarm unseen)
      const owed = await this.checkouts.whyAccountCannotBeDeleted(em, id);
      if (owed) throw Errors.conflict('ACCOUNT_BUSY', `the account cannot be deleted: ${owed}`);
      if (!(await this.accounts.remove(em, id))) throw busy();
      await audit({ type: 'account.deleted', actor, subjectType: 'account', subjectId: id, details: { targetId: current.targetId, username: current.username } });
    });
  }
}

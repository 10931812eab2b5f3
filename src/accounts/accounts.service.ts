import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { AuditService } from '../audit/audit.service';
import { DomainException, Errors } from '../common/errors';
import { Page } from '../common/pagination';
import { findByIdOrThrow, isUniqueViolation, keysetPage } from '../database/queries';
import { SecretBoxService } from '../crypto/secret-box.service';
import { Actor } from '../identity/actor';
import { isValidAccountName } from '../connectors/names';
import { TargetsService } from '../targets/targets.service';
import { RotationService } from '../rotation/rotation.service';
import { Clock } from '../common/clock';
import { AccountEntity, accountSecretRef } from './account.entity';
import { AccountListQuery, AccountView, CreateAccountDto, mapAccount, UpdateAccountDto } from './accounts.dto';
import { resolvePolicy } from './policy';


@Injectable()
export class AccountsService {
  constructor(
    private readonly dataSource: DataSource,
    private readonly audit: AuditService,
    private readonly secrets: SecretBoxService,
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
    const created = await this.audit.transaction(async (em, audit) => {
      // locked, and checked again: the target's admin cannot have been changed to this account meanwhile
      const target = await findTarget(em, true);
      if (target.adminUsername !== checked.adminUsername || target.host !== checked.host) {
        throw Errors.conflict('TARGET_IN_USE', 'the target changed while the account was being added; try again');
      }
      try {
        await em.getRepository(AccountEntity).insert({
          id,
          targetId: target.id,
          username: dto.username,
          status: 'available',
          passwordSecret: dto.password === undefined ? null : this.secrets.encrypt(accountSecretRef(id), dto.password),
          policy,
          lastRotatedAt: null,
          nextRotationAt: new Date(this.clock.now().getTime() + policy.rotationIntervalSeconds * 1000),
        });
      } catch (e) {
        if (isUniqueViolation(e)) {
          throw Errors.conflict('ACCOUNT_EXISTS', 'this target already has an account with this username');
        }
        throw e;
      }
      await audit({
        type: 'account.created',
        actor,
        subjectType: 'account',
        subjectId: id,
        details: { targetId: target.id, username: dto.username, policy, onboarding: dto.password === undefined },
      });
      const account = await em.getRepository(AccountEntity).findOneByOrFail({ id });
      // no password given: the vault sets its own through the target's admin credential (write-ahead first)
      if (dto.password === undefined) onboarding = await this.rotation.writeAhead(em, audit, account, 'onboard', actor);
      return account;
    });
    if (!onboarding) return mapAccount(created);
    await this.rotation.execute(onboarding);
    return mapAccount(await this.find(this.dataSource.manager, id));
  }

  async list(q: AccountListQuery): Promise<Page<AccountView>> {
    return keysetPage(this.dataSource.manager, AccountEntity, { column: 'id', kind: 'uuid' }, q, mapAccount, (qb) => {
      if (q.targetId) qb.andWhere('r.target_id = :targetId', { targetId: q.targetId });
      if (q.status) qb.andWhere('r.status = :status', { status: q.status });
    });
  }

  async get(id: string): Promise<AccountView> {
    return mapAccount(await this.find(this.dataSource.manager, id));
  }

  async update(actor: Actor, id: string, dto: UpdateAccountDto): Promise<AccountView> {
    const account = await this.audit.transaction(async (em, audit) => {
      const current = await this.find(em, id, true);
      if (dto.policy === undefined) return current;
      const policy = resolvePolicy(dto.policy, current.policy);
      const since = current.lastRotatedAt ?? current.createdAt;
      const nextRotationAt = current.nextRotationAt && new Date(since.getTime() + policy.rotationIntervalSeconds * 1000);
      await em.getRepository(AccountEntity).update({ id }, { policy, nextRotationAt });
      await audit({ type: 'account.updated', actor, subjectType: 'account', subjectId: id, details: { before: current.policy, policy } });
      return em.getRepository(AccountEntity).findOneByOrFail({ id });
    });
    return mapAccount(account);
  }

  async remove(actor: Actor, id: string): Promise<void> {
    await this.audit.transaction(async (em, audit) => {
      const current = await this.find(em, id, true);
      if (current.status !== 'available' && current.status !== 'needs_attention') {
        throw Errors.conflict('ACCOUNT_BUSY', `account is ${current.status}; try again when it is available`);
      }
      // its checkout history goes with it: not while the target still owes a session cleanup, or while a failed
      // cleanup or an unreviewed break-glass checkout waits for a person (that would clear the alarm unseen)
      const [owed]: Array<{ why: string }> = await em.query(
        `SELECT CASE WHEN cleanup IN ('pending', 'failed') THEN 'its last checkout''s session cleanup is ' || cleanup
                     ELSE 'a break-glass checkout of it is not reviewed yet' END AS why
           FROM checkouts WHERE account_id = $1 AND (cleanup IN ('pending', 'failed') OR (break_glass AND reviewed_at IS NULL)) LIMIT 1`,
        [id],
      );
      if (owed) throw Errors.conflict('ACCOUNT_BUSY', `the account cannot be deleted: ${owed.why}`);
      await em.getRepository(AccountEntity).delete({ id });
      await audit({ type: 'account.deleted', actor, subjectType: 'account', subjectId: id, details: { targetId: current.targetId, username: current.username } });
    });
  }

  find(em: EntityManager, id: string, lock = false): Promise<AccountEntity> {
    return findByIdOrThrow(em, AccountEntity, id, 'account', lock);
  }
}

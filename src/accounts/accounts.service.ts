import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { AuditService } from '../audit/audit.service';
import { DomainException, Errors } from '../common/errors';
import { Page } from '../common/pagination';
import { findByIdOrThrow, isUniqueViolation, keysetPage } from '../database/queries';
import { SecretBoxService } from '../crypto/secret-box.service';
import { Actor } from '../identity/actor';
import { isValidAccountName } from '../targets/names';
import { TargetsService } from '../targets/targets.service';
import { AccountEntity } from './account.entity';
import { AccountListQuery, AccountView, CreateAccountDto, mapAccount, UpdateAccountDto } from './accounts.dto';
import { resolvePolicy } from './policy';

export const accountSecretRef = (id: string) => ({ table: 'accounts', rowId: id, column: 'password_secret' });

@Injectable()
export class AccountsService {
  constructor(
    private readonly dataSource: DataSource,
    private readonly audit: AuditService,
    private readonly secrets: SecretBoxService,
    private readonly targets: TargetsService,
  ) {}

  async create(actor: Actor, dto: CreateAccountDto): Promise<AccountView> {
    const policy = resolvePolicy(dto.policy);
    // Onboarding with a vault-generated password needs connectors (a later issue); until then it is required.
    if (dto.password === undefined) throw Errors.validation('password is required (the vault cannot set passwords on targets yet)');
    const id = randomUUID();
    const account = await this.audit.transaction(async (em, audit) => {
      const target = await this.targets.find(em, dto.targetId).catch((e: unknown) => {
        throw e instanceof DomainException && e.status === 404 ? Errors.validation('targetId: no such target') : e;
      });
      if (!isValidAccountName(target.type, dto.username)) {
        throw Errors.validation(`username is not a valid ${target.type} account name`);
      }
      try {
        await em.getRepository(AccountEntity).insert({
          id,
          targetId: target.id,
          username: dto.username,
          status: 'available',
          passwordSecret: this.secrets.encrypt(accountSecretRef(id), dto.password as string),
          policy,
          lastRotatedAt: null,
        });
      } catch (e) {
        if (isUniqueViolation(e)) {
          throw Errors.conflict('ACCOUNT_EXISTS', 'this target already has an account with this username');
        }
        throw e;
      }
      await audit({ type: 'account.created', actor, subjectType: 'account', subjectId: id, details: { targetId: target.id, username: dto.username, policy } });
      return em.getRepository(AccountEntity).findOneByOrFail({ id });
    });
    return mapAccount(account);
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
      await em.getRepository(AccountEntity).update({ id }, { policy });
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
      await em.getRepository(AccountEntity).delete({ id });
      await audit({ type: 'account.deleted', actor, subjectType: 'account', subjectId: id, details: { targetId: current.targetId, username: current.username } });
    });
  }

  find(em: EntityManager, id: string, lock = false): Promise<AccountEntity> {
    return findByIdOrThrow(em, AccountEntity, id, 'account', lock);
  }
}

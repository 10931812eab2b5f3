import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { UnitOfWork } from '../database/unit-of-work';
import { DataSource } from 'typeorm';
import { Clock } from '../common/clock';
import { Errors } from '../common/errors';
import { Page, PageQuery } from '../common/pagination';
import { findByIdOrThrow, keysetPage } from '../database/queries';
import { Actor } from '../common/actor';
import { hashToken, newToken, SERVICE_TOKEN_PREFIX } from './identity.service';
import { ServiceTokenEntity } from './service-token.entity';
import { CreateServiceTokenDto, mapServiceToken, ServiceTokenView } from './users.dto';

/** Tokens for schedulers: shown once, stored as a SHA-256, revocable, optionally expiring. */
@Injectable()
export class ServiceTokensService {
  constructor(
    private readonly dataSource: DataSource,
    private readonly uow: UnitOfWork,
    private readonly clock: Clock,
  ) {}

  async create(actor: Actor, dto: CreateServiceTokenDto): Promise<{ id: string; token: string } & ServiceTokenView> {
    const expiresAt = dto.expiresAt !== undefined ? new Date(dto.expiresAt) : null;
    if (expiresAt && expiresAt.getTime() <= this.clock.now().getTime()) throw Errors.validation('expiresAt must be in the future');
    const id = randomUUID();
    const token = newToken(SERVICE_TOKEN_PREFIX);
    const row = await this.uow.run(async ({ em, audit }) => {
      await em.getRepository(ServiceTokenEntity).insert({
        id,
        name: dto.name,
        roles: dto.roles,
        tokenHash: hashToken(token),
        expiresAt,
        createdBy: actor.kind === 'user' ? actor.id : null,
        revokedAt: null,
      });
      await audit({
        type: 'service_token.created',
        actor,
        subjectType: 'service_token',
        subjectId: id,
        details: { name: dto.name, roles: dto.roles, expiresAt: expiresAt?.toISOString() ?? null },
      });
      return em.getRepository(ServiceTokenEntity).findOneByOrFail({ id });
    });
    return { ...mapServiceToken(row), id, token };
  }

  async list(q: PageQuery): Promise<Page<ServiceTokenView>> {
    return keysetPage(this.dataSource.manager, ServiceTokenEntity, { column: 'id', kind: 'uuid' }, q, mapServiceToken);
  }

  /** Revoking twice is fine. */
  async revoke(actor: Actor, id: string): Promise<void> {
    await this.uow.run(async ({ em, audit }) => {
      const current = await findByIdOrThrow(em, ServiceTokenEntity, id, 'service token', true);
      if (current.revokedAt) return;
      await em.getRepository(ServiceTokenEntity).update({ id }, { revokedAt: this.clock.now() });
      await audit({ type: 'service_token.revoked', actor, subjectType: 'service_token', subjectId: id, details: { name: current.name } });
    });
  }
}

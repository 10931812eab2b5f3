import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { Actor } from '../../common/actor';
import { DomainException, Errors } from '../../common/errors';
import { SecretBoxService } from '../../crypto/secret-box.service';
import { UnitOfWork } from '../../database/unit-of-work';
import { clientSecretRef, OidcClients } from './oidc-clients';
import { mapProvider, OidcProviderView, PutOidcProviderDto } from './oidc.dto';
import { providers } from './oidc-store';

const DEFAULT_SCOPES = ['openid', 'profile', 'email', 'groups'];

/** The admin API of identity providers. The client secret is write-only: encrypted when given, never answered nor audited. */
@Injectable()
export class OidcProvidersService {
  constructor(
    private readonly dataSource: DataSource,
    private readonly uow: UnitOfWork,
    private readonly secretBox: SecretBoxService,
    private readonly clients: OidcClients,
  ) {}

  async list(): Promise<OidcProviderView[]> {
    return (await providers.list(this.dataSource.manager)).map((p) => mapProvider(p, this.clients.redirectUri()));
  }

  /**
   * Creates or replaces the provider (a replace without `clientSecret` keeps the stored secret). Its users are bound to
   * subjects at its issuer: moving a provider that has users to another issuer is refused (409 OIDC_PROVIDER_IN_USE).
   * Disabling it ends, in the same transaction, every bearer token and browser session of its users.
   */
  async put(actor: Actor, name: string, dto: PutOidcProviderDto): Promise<OidcProviderView> {
    const saved = await this.uow.run(async ({ em, audit }) => {
      const before = await providers.get(em, name, true);
      if (before && before.issuer !== dto.issuer && (await providers.boundUsers(em, name)) > 0) {
        throw new DomainException('OIDC_PROVIDER_IN_USE', 'users are bound to subjects at this provider\'s issuer: create another provider for the new issuer');
      }
      const next = {
        name,
        displayName: dto.displayName,
        issuer: dto.issuer,
        clientId: dto.clientId,
        clientSecret: dto.clientSecret === undefined ? undefined : this.secretBox.encrypt(clientSecretRef(name), dto.clientSecret),
        scopes: dto.scopes ?? DEFAULT_SCOPES,
        groupsClaim: dto.groupsClaim ?? 'groups',
        groupRoles: dto.groupRoles,
        enabled: dto.enabled ?? true,
      };
      await providers.save(em, next);
      // disabled (a compromised or misconfigured provider): what it signed in ends with it
      const sessionsEnded = before?.enabled && !next.enabled ? await providers.endSessionsOfUsers(em, name) : 0;
      const { clientSecret, ...shown } = next;
      await audit({
        type: 'oidc.provider_saved',
        actor,
        subjectType: 'oidc_provider',
        subjectId: name,
        details: { ...shown, created: !before, clientSecretChanged: clientSecret !== undefined, sessionsEnded },
      });
      return providers.get(em, name);
    });
    return mapProvider(saved!, this.clients.redirectUri());
  }

  /** Removes the provider and its pending sign-ins; refused (409 OIDC_PROVIDER_IN_USE) while users are bound to it. */
  async remove(actor: Actor, name: string): Promise<void> {
    await this.uow.run(async ({ em, audit }) => {
      const p = await providers.get(em, name, true);
      if (!p) throw Errors.notFound('identity provider');
      if ((await providers.boundUsers(em, name)) > 0) {
        throw new DomainException('OIDC_PROVIDER_IN_USE', 'users are bound to this provider: disable it (enabled: false) instead');
      }
      await providers.remove(em, name);
      await audit({ type: 'oidc.provider_removed', actor, subjectType: 'oidc_provider', subjectId: name, details: { issuer: p.issuer, clientId: p.clientId } });
    });
    this.clients.forget(name);
  }
}

import { Inject, Injectable, Logger } from '@nestjs/common';
import { errors, TokenSet } from 'openid-client';
import { DataSource } from 'typeorm';
import { Clock } from '../../common/clock';
import { APP_CONFIG, AppConfig } from '../../config/config';
import { SecretBoxService } from '../../crypto/secret-box.service';
import { UnitOfWork } from '../../database/unit-of-work';
import { refreshRef, rolesOf, sameRoles, syncRoles } from './oidc-accounts';
import { OidcClients } from './oidc-clients';
import { oidcUsers, providers, RecheckRow, refreshTokens } from './oidc-store';

/** Sessions re-checked in one pass at most (the next tick takes the rest). */
const BATCH = 50;

/**
 * Between sign-ins (README "Single sign-on → Group → role mapping"): every `VAULT_OIDC_RECHECK_SECONDS` each live
 * session or token single sign-on made asks the provider again with its refresh token. The answer's ID token (or the
 * userinfo) gives the groups now: roles are synchronised; no mapped group left ends every session of the user; a
 * refused refresh (the person was disabled or signed out at the provider, the grant revoked) ends that session. A
 * provider that does not answer changes nothing (tried again next pass).
 */
@Injectable()
export class OidcRecheckService {
  private readonly logger = new Logger(OidcRecheckService.name);

  constructor(
    private readonly dataSource: DataSource,
    private readonly uow: UnitOfWork,
    private readonly clients: OidcClients,
    private readonly secretBox: SecretBoxService,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** One pass of the scheduler's sweep (nothing when VAULT_OIDC_RECHECK_SECONDS is 0). */
  async sweep(): Promise<number> {
    const every = this.config.signIn.oidcRecheckSeconds;
    return every === 0 ? 0 : this.recheckDue(every);
  }

  /** Re-checks the sessions last checked `everySeconds` ago or more; how many (tests call it with the sweep off). */
  async recheckDue(everySeconds: number): Promise<number> {
    const due = await refreshTokens.claimDue(this.dataSource.manager, this.clock.now(), everySeconds, BATCH);
    for (const row of due) {
      await this.recheck(row).catch((e: unknown) => {
        // never the error itself: openid-client's errors can carry the tokens of the answer
        this.logger.warn({ provider: row.provider, session: row.id, err: { type: (e as Error)?.name } }, 'single sign-on re-check failed; will retry');
      });
    }
    return due.length;
  }

  private async recheck(row: RecheckRow): Promise<void> {
    const p = await providers.get(this.dataSource.manager, row.provider);
    if (!p || !p.enabled) return; // a disabled provider's sessions run out on their own (or an admin disables the users)
    const client = await this.clients.client(p);
    let tokens: TokenSet;
    try {
      tokens = await client.refresh(this.secretBox.decrypt(refreshRef(row.id), row.refresh));
    } catch (e) {
      if (!(e instanceof errors.OPError)) throw e;
      await this.uow.run(async ({ em, audit }) => {
        await refreshTokens.end(em, row.id);
        await audit({ type: 'auth.session_ended', actor: null, subjectType: 'user', subjectId: row.userId, details: { provider: p.name, session: row.id, reason: `the provider refused the refresh (${(e.error ?? 'error').replace(/[^\w.-]/g, '').slice(0, 60)})` } });
      });
      return;
    }
    const claims: Record<string, unknown> = tokens.id_token ? tokens.claims() : await client.userinfo(tokens);
    const roles = rolesOf(p, claims);
    await this.uow.run(async ({ em, audit }) => {
      const user = row.subject !== null && claims.sub === row.subject ? await oidcUsers.bySubject(em, p.name, row.subject) : undefined;
      if (!user) {
        // the answer is about someone else (or the user is gone): this session ends
        await refreshTokens.end(em, row.id);
        await audit({ type: 'auth.session_ended', actor: null, subjectType: 'user', subjectId: row.userId, details: { provider: p.name, session: row.id, reason: 'the provider answered for another subject' } });
        return;
      }
      if (!sameRoles(user.roles, roles) && (await syncRoles({ em, audit }, p.name, user.id, roles, 'recheck')).removed) {
        await audit({ type: 'auth.access_removed', actor: null, subjectType: 'user', subjectId: user.id, details: { provider: p.name, reason: 'no_roles', sessionsEnded: true } });
        return;
      }
      if (tokens.refresh_token) await refreshTokens.replace(em, row.id, this.secretBox.encrypt(refreshRef(row.id), tokens.refresh_token));
    });
  }
}

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

/** Users claimed at a time (with all their due sessions). */
const BATCH = 50;
/** Users asked about at once (one slow provider answer does not hold the rest). */
const PARALLEL = 4;
/** A pass claims batch after batch until nothing is due, for at most this long (the next tick goes on). */
const PASS_BUDGET_MS = 45_000;

/**
 * Between sign-ins (README "Single sign-on → Group → role mapping"): every `VAULT_OIDC_RECHECK_SECONDS` each live
 * session or token single sign-on made is re-checked: the provider is asked once per user, with the newest session's
 * refresh token. The answer's ID token (or the userinfo) gives the groups now: roles are synchronised; no mapped group left ends every session of the user; a
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

  /**
   * Re-checks everyone whose sessions were last checked `everySeconds` ago or more: claims users (with all their due
   * sessions) in batches until none is due or the pass's time budget is spent, asking the provider once per user (a few
   * users at a time). How many sessions were checked. Tests call it with the background sweep off.
   */
  async recheckDue(everySeconds: number): Promise<number> {
    const until = Date.now() + PASS_BUDGET_MS;
    await refreshTokens.dropEnded(this.dataSource.manager, this.clock.now(), this.config.portal.idleSeconds);
    let checked = 0;
    while (Date.now() < until) {
      const due = await refreshTokens.claimDueUsers(this.dataSource.manager, this.clock.now(), everySeconds, BATCH);
      if (due.length === 0) break;
      checked += due.length;
      const byUser = new Map<string, RecheckRow[]>();
      for (const row of due) byUser.set(row.userId, [...(byUser.get(row.userId) ?? []), row]);
      const users = [...byUser.values()];
      for (let i = 0; i < users.length; i += PARALLEL) {
        await Promise.all(users.slice(i, i + PARALLEL).map((sessions) => this.recheckUser(sessions)));
      }
    }
    return checked;
  }

  /**
   * One user: their newest session's refresh token tells their groups now (for every session of theirs); a session
   * whose refresh the provider refuses ends, and the next newest is tried.
   */
  private async recheckUser(sessions: RecheckRow[]): Promise<void> {
    for (const row of [...sessions].sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime())) {
      const done = await this.recheck(row).catch((e: unknown) => {
        // never the error itself: openid-client's errors can carry the tokens of the answer
        this.logger.warn({ provider: row.provider, session: row.id, err: { type: (e as Error)?.name } }, 'single sign-on re-check failed; will retry');
        return 'answered' as const; // the provider did not answer: the others would fare no better this pass
      });
      if (done === 'answered') return;
    }
  }

  /** `refused`: this session ended (its refresh was refused); `answered`: the user's roles are up to date. */
  private async recheck(row: RecheckRow): Promise<'refused' | 'answered'> {
    const p = await providers.get(this.dataSource.manager, row.provider);
    if (!p || !p.enabled) return 'answered'; // disabling a provider ended its users' sessions already
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
      return 'refused';
    }
    const claims: Record<string, unknown> = tokens.id_token ? tokens.claims() : await client.userinfo(tokens);
    const roles = rolesOf(p, claims);
    return this.uow.run(async ({ em, audit }) => {
      const user = row.subject !== null && claims.sub === row.subject ? await oidcUsers.bySubject(em, p.name, row.subject) : undefined;
      if (!user) {
        // the answer is about someone else (or the user is gone): this session ends
        await refreshTokens.end(em, row.id);
        await audit({ type: 'auth.session_ended', actor: null, subjectType: 'user', subjectId: row.userId, details: { provider: p.name, session: row.id, reason: 'the provider answered for another subject' } });
        return 'refused' as const;
      }
      // disabled meanwhile: its users' sessions were ended by the disable (or are, once it commits)
      if (!(await providers.stillEnabled(em, p.name))) return 'answered' as const;
      if (!sameRoles(user.roles, roles) && (await syncRoles({ em, audit }, p.name, user.id, roles, 'recheck')).removed) {
        await audit({ type: 'auth.access_removed', actor: null, subjectType: 'user', subjectId: user.id, details: { provider: p.name, reason: 'no_roles', sessionsEnded: true } });
        return 'answered' as const;
      }
      if (tokens.refresh_token) await refreshTokens.replace(em, row.id, this.secretBox.encrypt(refreshRef(row.id), tokens.refresh_token));
      return 'answered' as const;
    });
  }
}

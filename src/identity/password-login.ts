import { Inject, Injectable } from '@nestjs/common';
import { AuditService } from '../audit/audit.service';
import { Errors } from '../common/errors';
import { APP_CONFIG, AppConfig } from '../config/config';
import { UnitOfWork } from '../database/unit-of-work';
import { UserEntity } from './user.entity';

/**
 * Whether a user whose password was just verified may sign in with it (README "Single sign-on → Turning password
 * sign-in off"). Off for the user (`password_login` false: OIDC-created users, or an admin's PATCH) or for everyone
 * (VAULT_PASSWORD_LOGIN=disabled): refused exactly like a wrong password (401 UNAUTHENTICATED, the attempt stays
 * counted by the throttle), audited with the reason. The break-glass user (the bootstrap admin) always may; while
 * password sign-in is off for everyone, each such sign-in is audited `auth.break_glass` and alerts the admins and
 * auditors, so a break-glass use is never quiet.
 */
@Injectable()
export class PasswordLoginPolicy {
  constructor(
    private readonly uow: UnitOfWork,
    private readonly audit: AuditService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** Called by the one sign-in path after the password matched (and before the second factor). */
  async admit(user: UserEntity, address: string | undefined): Promise<void> {
    const globallyOn = this.config.signIn.passwordLogin;
    if (user.breakGlass) {
      if (!globallyOn) await this.breakGlass(user, address);
      return;
    }
    if (globallyOn && user.passwordLogin) return;
    await this.audit.recordAlone({
      type: 'auth.login',
      actor: null,
      subjectType: 'user',
      subjectId: user.id,
      outcome: 'failure',
      details: { address: address ?? null, reason: 'password_login_disabled', scope: globallyOn ? 'user' : 'global' },
    });
    throw Errors.unauthenticated('invalid username or password');
  }

  /** Audited and alerted before the second factor is checked: the break-glass password itself was used. */
  private async breakGlass(user: UserEntity, address: string | undefined): Promise<void> {
    await this.uow.run(async (tx) => {
      await tx.audit({
        type: 'auth.break_glass',
        actor: null,
        subjectType: 'user',
        subjectId: user.id,
        details: { username: user.username, address: address ?? null, reason: 'password sign-in is disabled (VAULT_PASSWORD_LOGIN=disabled)' },
      });
      await tx.notify({
        type: 'alert.break_glass_login',
        subjectType: 'user',
        subjectId: user.id,
        to: { roles: ['admin', 'auditor'] },
        facts: {
          summary: `Break-glass password sign-in by ${user.username}${address ? ` from ${address}` : ''} while password sign-in is disabled`,
          reason: 'break-glass account used',
        },
      });
    });
  }
}

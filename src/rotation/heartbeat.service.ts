import { Inject, Injectable, Logger } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { Account, AccountStore } from '../accounts/account-store';
import { APP_CONFIG, AppConfig } from '../config/config';
import { ConnectorError } from '../connectors/connector.errors';
import { ClaimedWork } from '../database/claimed-work';
import { UnitOfWork } from '../database/unit-of-work';
import { TargetsService } from '../targets/targets.service';
import { RotationService } from './rotation.service';

/**
 * Drift detection: each stored password is tried on its target about once per VAULT_HEARTBEAT_SECONDS.
 * When the target refuses it (someone changed it behind the vault's back), the vault resets it through the
 * admin credential with a rotation (reason `drift`); if that keeps failing the account ends needs_attention.
 */
@Injectable()
export class HeartbeatService {
  private readonly logger = new Logger(HeartbeatService.name);

  constructor(
    private readonly dataSource: DataSource,
    private readonly uow: UnitOfWork,
    private readonly accounts: AccountStore,
    private readonly targets: TargetsService,
    private readonly rotation: RotationService,
    private readonly work: ClaimedWork,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /**
   * Takes accounts not verified recently (SKIP LOCKED, stamped verified in the taking statement), then checks them a
   * batch at a time. One account that cannot be checked (a credential that no longer decrypts) is logged and never
   * stops the rest.
   */
  async run(limit = this.config.rotation.concurrency): Promise<{ checked: number; drifted: number }> {
    let drifted = 0;
    const checked = await this.work.drain<Account>({
      name: 'heartbeat',
      take: async (skip) => (await this.accounts.takeForHeartbeat(this.dataSource.manager, 1, this.config.rotation.heartbeatSeconds, skip))[0] ?? null,
      key: (account) => account.id,
      run: async (account) => {
        if (await this.check(account)) drifted++;
      },
      batchSize: this.config.rotation.concurrency,
      limit,
    });
    return { checked, drifted };
  }

  /** True when the stored password no longer works and a reset was started. */
  private async check(account: Account): Promise<boolean> {
    const conn = await this.targets.connectById(this.dataSource.manager, account.targetId);
    try {
      await conn.login({ username: account.username, password: this.accounts.password(account) as string });
      return false;
    } catch (e) {
      if (!(e instanceof ConnectorError) || e.connectorCode !== 'TARGET_AUTH_FAILED') {
        this.logger.warn({ accountId: account.id, code: e instanceof ConnectorError ? e.connectorCode : 'ERROR' }, 'heartbeat could not check the account');
        return false;
      }
    }
    const rotationId = await this.uow.run(async (tx) => {
      const current = await this.accounts.find(tx.em, account.id, true);
      // only if nothing changed meanwhile (a checkout or a rotation would own the account now)
      if (current.status !== 'available' || !current.passwordSecret?.equals(account.passwordSecret as Buffer)) return null;
      await tx.audit({ type: 'account.drift_detected', actor: null, subjectType: 'account', subjectId: account.id, outcome: 'failure', details: { targetId: account.targetId } });
      return this.rotation.writeAhead(tx, current, 'drift', null);
    });
    if (rotationId) await this.rotation.execute(rotationId);
    return rotationId !== null;
  }
}

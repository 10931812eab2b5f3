import { Inject, Injectable, Logger } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { AccountEntity, accountSecretRef } from '../accounts/account.entity';
import { AuditService } from '../audit/audit.service';
import { DomainException } from '../common/errors';
import { APP_CONFIG, AppConfig } from '../config/config';
import { ConnectorError } from '../connectors/connector.errors';
import { ConnectorRegistry } from '../connectors/connector.registry';
import { SecretBoxService } from '../crypto/secret-box.service';
import { findByIdOrThrow } from '../database/queries';
import { TargetEntity } from '../targets/target.entity';
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
    private readonly audit: AuditService,
    private readonly secrets: SecretBoxService,
    private readonly targets: TargetsService,
    private readonly connectors: ConnectorRegistry,
    private readonly rotation: RotationService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** Claims accounts not verified recently (SKIP LOCKED, stamped in the claim), then checks each. */
  async run(limit = this.config.rotation.concurrency): Promise<{ checked: number; drifted: number }> {
    const claimed = await this.audit.transaction(async (em) => {
      const rows: AccountEntity[] = await em
        .getRepository(AccountEntity)
        .createQueryBuilder('a')
        .where("a.status = 'available' AND a.password_secret IS NOT NULL")
        .andWhere('(a.last_verified_at IS NULL OR a.last_verified_at < now() - make_interval(secs => :secs))', { secs: this.config.rotation.heartbeatSeconds })
        .orderBy('a.last_verified_at', 'ASC', 'NULLS FIRST')
        .limit(limit)
        .setLock('pessimistic_write')
        .setOnLocked('skip_locked')
        .getMany();
      if (rows.length) await em.query('UPDATE accounts SET last_verified_at = now() WHERE id = ANY($1)', [rows.map((r) => r.id)]);
      return rows;
    });
    let drifted = 0;
    for (const account of claimed) {
      // one account that cannot be checked (a credential that no longer decrypts) never stops the rest of the batch
      try {
        if (await this.check(account)) drifted++;
      } catch (e) {
        this.logger.warn({ accountId: account.id, code: e instanceof DomainException ? e.code : (e as Error)?.name }, 'heartbeat could not check the account');
      }
    }
    return { checked: claimed.length, drifted };
  }

  /** True when the stored password no longer works and a reset was started. */
  private async check(account: AccountEntity): Promise<boolean> {
    const target = await findByIdOrThrow(this.dataSource.manager, TargetEntity, account.targetId, 'target');
    const password = this.secrets.decrypt(accountSecretRef(account.id), account.passwordSecret as Buffer);
    try {
      await this.connectors.get(target.type).login(await this.targets.connectorTarget(target), { username: account.username, password });
      return false;
    } catch (e) {
      if (!(e instanceof ConnectorError) || e.connectorCode !== 'TARGET_AUTH_FAILED') {
        this.logger.warn({ accountId: account.id, code: e instanceof ConnectorError ? e.connectorCode : 'ERROR' }, 'heartbeat could not check the account');
        return false;
      }
    }
    const rotationId = await this.audit.transaction(async (em, audit) => {
      const current = await findByIdOrThrow(em, AccountEntity, account.id, 'account', true);
      // only if nothing changed meanwhile (a checkout or a rotation would own the account now)
      if (current.status !== 'available' || !current.passwordSecret?.equals(account.passwordSecret as Buffer)) return null;
      await audit({ type: 'account.drift_detected', actor: null, subjectType: 'account', subjectId: account.id, outcome: 'failure', details: { targetId: target.id } });
      return this.rotation.writeAhead(em, audit, current, 'drift', null);
    });
    if (rotationId) await this.rotation.execute(rotationId);
    return rotationId !== null;
  }
}

import { Inject, Injectable, OnApplicationShutdown, OnModuleDestroy, Optional } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '../config/config';
import type { TargetType } from '../crypto/password-generator';
import { DEFAULT_POOL_SETTINGS, PooledConnector, PoolSettings } from './admin-pool';
import { Connector } from './connector.interface';
import { MysqlConnector } from './mysql/mysql.connector';
import { PostgresConnector } from './postgres/postgres.connector';
import { SafeConnector } from './safe-connector';
import { SshConnector } from './ssh/ssh.connector';

/**
 * The connectors by target type, each behind the sanitising, deadline-keeping wrapper. Services never use it directly:
 * they reach a target through `TargetsService.connect()` (src/targets/target-connection.ts), which gets its connector here.
 *
 * The PostgreSQL and MySQL connectors pool their admin connections (src/connectors/admin-pool.ts), the SSH connector its
 * admin SSH connections (ssh/ssh-pool.ts), all with VAULT_TARGET_POOL_SIZE and VAULT_TARGET_POOL_IDLE_MS; the registry
 * closes every pooled connection when the application shuts down.
 */
@Injectable()
export class ConnectorRegistry implements OnModuleDestroy, OnApplicationShutdown {
  private readonly connectors: Map<TargetType, Connector>;
  /** Every connector that holds pooled connections, including ones replaced by register(). */
  private readonly pooled: PooledConnector[];

  constructor(@Optional() @Inject(APP_CONFIG) config?: AppConfig) {
    const pool: PoolSettings = config?.targetPool ?? DEFAULT_POOL_SETTINGS;
    const postgres = new PostgresConnector(pool);
    const mysql = new MysqlConnector(pool);
    const ssh = new SshConnector(pool);
    this.pooled = [postgres, mysql, ssh];
    this.connectors = new Map<TargetType, Connector>([ssh, postgres, mysql].map((c) => [c.type, new SafeConnector(c)]));
  }

  get(type: TargetType): Connector {
    const c = this.connectors.get(type);
    if (!c) throw new Error(`no connector for ${type}`);
    return c;
  }

  /** Tests replace a connector (a target that fails on purpose) through this; one holding a pool is closed at shutdown too. */
  register(connector: Connector): void {
    this.connectors.set(connector.type, new SafeConnector(connector));
    const closeAll = (connector as Partial<PooledConnector>).closeAll;
    if (typeof closeAll === 'function') this.pooled.push({ closeAll: () => closeAll.call(connector) });
  }

  /** Closes every pooled target connection (idle ones at once, busy ones after their work, within seconds). */
  async closeAll(): Promise<void> {
    await Promise.all(this.pooled.map((c) => c.closeAll()));
  }

  async onModuleDestroy(): Promise<void> {
    await this.closeAll();
  }

  async onApplicationShutdown(): Promise<void> {
    await this.closeAll();
  }
}

import { Injectable } from '@nestjs/common';
import type { TargetType } from '../crypto/password-generator';
import { Connector } from './connector.interface';
import { MysqlConnector } from './mysql/mysql.connector';
import { PostgresConnector } from './postgres/postgres.connector';
import { SafeConnector } from './safe-connector';
import { SshConnector } from './ssh/ssh.connector';

/**
 * The connectors by target type, each behind the sanitising, deadline-keeping wrapper. Services never use it directly:
 * they reach a target through `TargetsService.connect()` (src/targets/target-connection.ts), which gets its connector here.
 */
@Injectable()
export class ConnectorRegistry {
  private readonly connectors = new Map<TargetType, Connector>(
    [new SshConnector(), new PostgresConnector(), new MysqlConnector()].map((c) => [c.type, new SafeConnector(c)]),
  );

  get(type: TargetType): Connector {
    const c = this.connectors.get(type);
    if (!c) throw new Error(`no connector for ${type}`);
    return c;
  }

  /** Tests replace a connector (a target that fails on purpose) through this. */
  register(connector: Connector): void {
    this.connectors.set(connector.type, new SafeConnector(connector));
  }
}

import { connectMariaDb } from './mariadb';
import { startScramPostgres } from './postgres';
import { startSshd } from './sshd';

/** A real target server, with the body that registers it in the vault and a way to make accounts on it. */
export interface RealTarget {
  /** `POST /v1/targets` fields: type, host, port, admin, options (add a name). */
  body: Record<string, unknown>;
  /** Creates an account the way the target's own administrator would, outside the vault. */
  createAccount(name: string, password: string): Promise<void>;
  stop(): Promise<void>;
}

export type RealTargetType = 'postgres' | 'mysql' | 'ssh';

/** Starts (or connects to) a real server of each type; SSH without PAM so wrong passwords fail fast. */
export const REAL_TARGETS: Record<RealTargetType, () => Promise<RealTarget>> = {
  postgres: async () => {
    const pg = await startScramPostgres();
    return {
      body: { type: 'postgres', host: pg.host, port: pg.port, admin: { username: pg.adminUsername, password: pg.adminPassword }, options: { database: pg.database } },
      createAccount: (n, p) => pg.createRole(n, p),
      stop: () => pg.stop(),
    };
  },
  mysql: async () => {
    const my = await connectMariaDb();
    return {
      body: { type: 'mysql', host: my.host, port: my.port, admin: { username: my.adminUsername, password: my.adminPassword } },
      createAccount: (n, p) => my.createUser(n, p),
      stop: () => my.stop(),
    };
  },
  ssh: async () => {
    const sshd = await startSshd({ usePam: false });
    return {
      body: { type: 'ssh', host: sshd.host, port: sshd.port, admin: { username: 'root', privateKey: sshd.adminPrivateKey }, options: { hostKeySha256: sshd.hostKeySha256 } },
      createAccount: (n, p) => sshd.createUser(n, p),
      stop: () => sshd.stop(),
    };
  },
};

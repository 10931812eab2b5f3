import { connectMariaDb } from './mariadb';
import { startScramPostgres } from './postgres';
import { canLoginMysql, canLoginPg, canLoginSsh, LiveSession, openMysqlSession, openPgSession, openSshSession } from './sessions';
import { startSshd } from './sshd';

/** A real target server, with the body that registers it in the vault and a way to make accounts on it. */
export interface RealTarget {
  /** `POST /v1/targets` fields: type, host, port, admin, options (add a name). */
  body: Record<string, unknown>;
  /** Creates an account the way the target's own administrator would, outside the vault. */
  createAccount(name: string, password: string): Promise<void>;
  /** Opens a live session as the account through an independent driver (ssh2, pg, mysql2), not the vault's connector. */
  openSession(name: string, password: string): Promise<LiveSession>;
  /**
   * Logs in as the account through an independent driver: true when the password is accepted, false only when
   * the server refuses it; throws on anything else (unreachable, timeout, host key), never mistaken for a refusal.
   */
  canLogin(name: string, password: string): Promise<boolean>;
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
      openSession: (n, p) => openPgSession(pg.host, pg.port, n, p, pg.database),
      canLogin: (n, p) => canLoginPg(pg.host, pg.port, n, p, pg.database),
      stop: () => pg.stop(),
    };
  },
  mysql: async () => {
    const my = await connectMariaDb();
    return {
      body: { type: 'mysql', host: my.host, port: my.port, admin: { username: my.adminUsername, password: my.adminPassword } },
      createAccount: (n, p) => my.createUser(n, p),
      openSession: (n, p) => openMysqlSession(my.host, my.port, n, p),
      canLogin: (n, p) => canLoginMysql(my.host, my.port, n, p),
      stop: () => my.stop(),
    };
  },
  ssh: async () => {
    const sshd = await startSshd({ usePam: false });
    const pin = { hostKeySha256: sshd.hostKeySha256 };
    return {
      body: { type: 'ssh', host: sshd.host, port: sshd.port, admin: { username: 'root', privateKey: sshd.adminPrivateKey }, options: { hostKeySha256: sshd.hostKeySha256 } },
      createAccount: (n, p) => sshd.createUser(n, p),
      openSession: (n, p) => openSshSession(sshd.host, sshd.port, n, p, pin),
      canLogin: (n, p) => canLoginSsh(sshd.host, sshd.port, n, p, pin),
      stop: () => sshd.stop(),
    };
  },
};

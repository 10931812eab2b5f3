import { createHash } from 'node:crypto';
import { Client as PgClient } from 'pg';
import { createConnection } from 'mysql2/promise';
import { Client as SshClient } from 'ssh2';

/**
 * Logins and live sessions on the real target servers through independent drivers (ssh2, pg, mysql2), never
 * through the vault's connectors: what proves that a credential the vault hands out works, and that it stops
 * working (and its sessions end) when the vault says so.
 *
 * `canLogin*` resolves true when the server accepts the password and false ONLY when it refuses it as an
 * authentication failure; anything else (refused connection, timeout, wrong host key, …) is thrown, so a broken
 * target is never mistaken for a rotated password.
 */

/** A session held open on a target, as an operator's terminal or client would hold it. */
export interface LiveSession {
  /** Whether the server still serves the session (a terminated one answers no more). */
  alive(): Promise<boolean>;
  close(): Promise<void>;
}

export interface SshLoginOptions {
  /** Pins the server's host key (OpenSSH SHA-256 fingerprint without `SHA256:`); any key is accepted when unset. */
  hostKeySha256?: string;
}

const LOGIN_TIMEOUT_MS = 10_000;

/** PostgreSQL: invalid_password (also what a scram server answers for a role that does not exist). */
const PG_AUTH_FAILED = new Set(['28P01']);
/**
 * MySQL / MariaDB: "Access denied for user" (1045); MariaDB refuses a user that does not exist (any more) with 1698
 * ER_ACCESS_DENIED_NO_PASSWORD_ERROR about half the time, whatever password is sent: a refused login too.
 */
const MYSQL_AUTH_FAILED = new Set(['ER_ACCESS_DENIED_ERROR', 'ER_ACCESS_DENIED_NO_PASSWORD_ERROR']);

function hostVerifier(opts: SshLoginOptions): (key: Buffer) => boolean {
  const pinned = opts.hostKeySha256;
  if (!pinned) return () => true;
  return (key) => createHash('sha256').update(key).digest('base64').replace(/=+$/, '') === pinned;
}

function notAnAuthFailure(what: string, e: unknown): Error {
  const err = e as { code?: unknown; level?: unknown; message?: unknown };
  const detail = [err?.code, err?.level].filter((x) => typeof x === 'string').join('/');
  return new Error(`${what}: the login failed for a reason other than a refused password${detail ? ` (${detail})` : ''}: ${String(err?.message ?? e)}`, { cause: e });
}

/**
 * An SSH session as the user with a long-running process of theirs (`sleep 600`): what ending the user's
 * sessions on the target (pkill -u) must kill. `alive()` waits briefly for the server to close the connection.
 */
export async function openSshSession(host: string, port: number, user: string, password: string, opts: SshLoginOptions = {}): Promise<LiveSession> {
  const conn = new SshClient();
  let closed = false;
  await new Promise<void>((resolve, reject) => {
    conn.on('ready', () => resolve()).on('error', reject).on('close', () => (closed = true));
    conn.connect({ host, port, username: user, password, hostVerifier: hostVerifier(opts) });
  });
  // a long-running process owned by the user: what pkill -u must end
  await new Promise<void>((resolve, reject) => conn.exec('sleep 600', (err) => (err ? reject(err) : resolve())));
  return {
    alive: async () => {
      await new Promise((r) => setTimeout(r, 300));
      return !closed;
    },
    close: async () => void conn.end(),
  };
}

/** A PostgreSQL session as the role; alive while it still answers `SELECT 1`. */
export async function openPgSession(host: string, port: number, user: string, password: string, database = 'postgres'): Promise<LiveSession> {
  const c = new PgClient({ host, port, user, password, database });
  c.on('error', () => undefined);
  await c.connect();
  return {
    alive: () => c.query('SELECT 1').then(() => true, () => false),
    close: () => c.end().catch(() => undefined),
  };
}

/** A MySQL / MariaDB session as the user; alive while it still answers `SELECT 1`. */
export async function openMysqlSession(host: string, port: number, user: string, password: string): Promise<LiveSession> {
  const c = await createConnection({ host, port, user, password });
  c.on('error', () => undefined);
  return {
    alive: () => c.query('SELECT 1').then(() => true, () => false),
    close: () => c.end().catch(() => undefined),
  };
}

/** Password login over SSH (ssh2): true when accepted, false when the server refuses the password, throws otherwise. */
export function canLoginSsh(host: string, port: number, user: string, password: string, opts: SshLoginOptions = {}): Promise<boolean> {
  return new Promise<boolean>((resolve, reject) => {
    const conn = new SshClient();
    conn
      .on('ready', () => {
        conn.end();
        resolve(true);
      })
      .on('error', (e: Error & { level?: string }) => {
        conn.end();
        // ssh2: every offered authentication method was refused
        if (e.level === 'client-authentication') resolve(false);
        else reject(notAnAuthFailure(`SSH login of ${user} at ${host}:${port}`, e));
      })
      .connect({ host, port, username: user, password, hostVerifier: hostVerifier(opts), readyTimeout: LOGIN_TIMEOUT_MS, tryKeyboard: false });
  });
}

/** Password login to PostgreSQL (pg): true when accepted, false when the server refuses the password, throws otherwise. */
export async function canLoginPg(host: string, port: number, user: string, password: string, database = 'postgres'): Promise<boolean> {
  const c = new PgClient({ host, port, user, password, database, connectionTimeoutMillis: LOGIN_TIMEOUT_MS });
  c.on('error', () => undefined);
  try {
    await c.connect();
  } catch (e) {
    await c.end().catch(() => undefined);
    if (PG_AUTH_FAILED.has((e as { code?: string })?.code ?? '')) return false;
    throw notAnAuthFailure(`PostgreSQL login of ${user} at ${host}:${port}`, e);
  }
  await c.end().catch(() => undefined);
  return true;
}

/** Password login to MySQL / MariaDB (mysql2): true when accepted, false when the server refuses the password, throws otherwise. */
export async function canLoginMysql(host: string, port: number, user: string, password: string): Promise<boolean> {
  let c: Awaited<ReturnType<typeof createConnection>>;
  try {
    c = await createConnection({ host, port, user, password, connectTimeout: LOGIN_TIMEOUT_MS });
  } catch (e) {
    if (MYSQL_AUTH_FAILED.has((e as { code?: string })?.code ?? '')) return false;
    throw notAnAuthFailure(`MySQL login of ${user} at ${host}:${port}`, e);
  }
  c.on('error', () => undefined);
  await c.end().catch(() => undefined);
  return true;
}

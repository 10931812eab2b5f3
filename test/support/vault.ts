import { randomBytes } from 'node:crypto';
import { INestApplication } from '@nestjs/common';
import type { DestinationStream } from 'pino';
import request from 'supertest';
import { createVaultApp, openDatabase } from '../../src/bootstrap';
import { logDestination, redirectLogs } from '../../src/common/logging';
import { loadConfig } from '../../src/config/config';
import { KeyringService } from '../../src/crypto/keyring.service';
import { SecretBoxService } from '../../src/crypto/secret-box.service';
import { SshGatewayServer } from '../../src/gateway/ssh-gateway.server';
import type { Role } from '../../src/common/actor';
import { TestClock } from './clock';
import { createTestDatabase, TestDatabase } from './db';
import { checkedRequest, responseCheckOf } from './openapi-check';
import { SECRET_SCAN_DIR, secretSentinel } from './secret-sentinel';
import { totpAt } from './totp';

export const ADMIN_PASSWORD = 'correct-horse-battery-staple';

/** A logged-in, MFA-enrolled user of the test vault. */
export interface TestUser {
  id: string;
  username: string;
  password: string;
  /** TOTP seed (base32), as the user's authenticator app holds it. */
  secret: string;
  /** `Bearer …` */
  auth: string;
  /** A fresh code: moves the test clock past the last step this user burned, since each step is accepted once. */
  code(): Promise<string>;
}

export interface TestVault {
  app: INestApplication;
  db: TestDatabase;
  masterKey: Buffer;
  clock: TestClock;
  http: () => ReturnType<typeof request>;
  /** Logs in as admin (enrolling TOTP the first time) and returns the `Authorization` header value. */
  adminAuth(): Promise<string>;
  admin(): Promise<TestUser>;
  /** Creates a user with these roles, enrolls TOTP and logs in. */
  createUser(roles: Role[], opts?: { enroll?: boolean }): Promise<TestUser>;
  get<T>(token: { new (...args: never[]): T } | string | symbol): T;
  /** With `startTestVault({ gateway: true })`: where its SSH gateway listens (127.0.0.1, a free port) and its host key. */
  gateway?: TestGateway;
  close(): Promise<void>;
}

/** The test vault's SSH gateway, as GET /v1/gateway answers it. */
export interface TestGateway {
  host: string;
  port: number;
  /** OpenSSH SHA256 fingerprint, without the `SHA256:` prefix. */
  hostKeySha256: string;
  /** `[127.0.0.1]:port ssh-ed25519 AAAA…` */
  knownHostsLine: string;
}

/** Fast argon2 parameters: the tests check behaviour, not hashing cost. */
export const TEST_ENV = {
  VAULT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD,
  VAULT_ARGON2_MEMORY_KIB: '8192',
  VAULT_ARGON2_TIME_COST: '1',
  VAULT_AUDIT_VERIFY_LOCK_WAIT_MS: '1000',
  // each TOTP code moves the test clock to a new 30 s step, and admin actions need the admin's own code: a suite
  // with a few hundred of them would outlive an hour's token
  VAULT_TOKEN_TTL_SECONDS: '86400',
  // the test receivers (webhooks, Slack, Teams) listen on loopback, which the egress rule refuses unless listed
  VAULT_NOTIFY_ALLOWED_HOSTS: '127.0.0.1,localhost',
  // silent, unless the secret scan keeps every line for inspection (see secret-sentinel.ts)
  LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? (SECRET_SCAN_DIR ? 'trace' : 'silent'),
};

/** The real application on a fresh database of the real PostgreSQL (no HTTP port: supertest drives it). */
export async function startTestVault(
  opts: { db?: TestDatabase; masterKey?: Buffer; env?: Record<string, string>; adminSecret?: string; logLines?: string[]; gateway?: boolean } = {},
): Promise<TestVault> {
  const db = opts.db ?? (await createTestDatabase());
  const masterKey = opts.masterKey ?? randomBytes(32);
  // logLines: the test reads the vault's log lines (at info at least), which still go where they went (the secret scan)
  const level = opts.logLines && TEST_ENV.LOG_LEVEL === 'silent' ? { LOG_LEVEL: 'info' } : {};
  // the SSH gateway on a free loopback port
  const gatewayEnv = opts.gateway ? { VAULT_SSH_GATEWAY_PORT: '0', VAULT_SSH_GATEWAY_BIND: '127.0.0.1' } : {};
  const config = loadConfig({ ...TEST_ENV, ...level, ...gatewayEnv, DATABASE_URL: db.url, VAULT_MASTER_KEY: masterKey.toString('base64'), ...opts.env });
  const clock = new TestClock();
  const sentinel = secretSentinel(); // before the app: it redirects the logs
  const before = logDestination();
  if (opts.logLines) redirectLogs(teeLines(opts.logLines, before));
  const app = await createVaultApp(config, masterKey, await openDatabase(db.url), clock).finally(() => redirectLogs(before));
  app.flushLogs(); // Nest buffers its log lines until listen(), which supertest never calls
  sentinel?.watch(app.getHttpServer());
  sentinel?.secret(masterKey.toString('base64'), 'master key');
  sentinel?.secret(config.bootstrapAdminPassword, 'bootstrap admin password');
  sentinel?.watchSecretBox(app.get(SecretBoxService));
  sentinel?.keys([app.get(KeyringService).active().key, app.get(KeyringService).auditKey()]);
  // every 2xx answer a test receives is checked against the vault's own OpenAPI document
  const openapi = await responseCheckOf(app.getHttpServer());
  const http = () => checkedRequest(request(app.getHttpServer()), openapi);
  /** The code of the first time step after the last one this user burned (moving the test clock there). */
  const nextCode = async (username: string, secret: string) => {
    const [row] = await db.query<{ last: string }>('SELECT mfa_last_step::text AS last FROM users WHERE username = $1', [username]);
    const nextStepStart = (Number(row?.last ?? 0) + 1) * 30_000;
    const now = clock.now().getTime();
    if (now < nextStepStart) clock.advance(nextStepStart - now + 1_000);
    return totpAt(secret, clock.now().getTime());
  };

  /**
   * Requests that carry a code, one at a time (the admin's step-ups of concurrent createUser calls, and the logins and
   * enrollments of the users they make): each needs a code of its own time step, burned in order (two taken at once
   * would be the same code, or a newer one burned first makes the older a replay), and no other request may move the
   * test clock between a code being made and its check (the code would be two steps old: MFA_INVALID).
   */
  let adminQueue: Promise<unknown> = Promise.resolve();
  const adminInTurn = <T>(work: () => Promise<T>): Promise<T> => {
    const run = adminQueue.then(work, work);
    adminQueue = run.catch(() => undefined);
    return run;
  };
  /** Logs in, enrolling TOTP on the way when the user has none yet. */
  const signIn = async (username: string, password: string, known?: { id: string; secret: string }): Promise<TestUser> => {
    let secret = known?.secret;
    const body: Record<string, string> = { username, password };
    const login = await adminInTurn(async () => {
      if (secret) body.code = await nextCode(username, secret);
      return http().post('/v1/auth/login').send(body).expect(200);
    });
    let auth = `Bearer ${login.body.accessToken}`;
    if (login.body.mfaEnrollmentRequired) {
      secret = (await http().post('/v1/me/mfa/totp').set('Authorization', auth).expect(200)).body.secret as string;
      // enrollment ends every earlier token (this one too) and answers with a fresh one
      const enrolling = secret;
      const confirmed = await adminInTurn(async () => http().post('/v1/me/mfa/totp/confirm').set('Authorization', auth).send({ code: await nextCode(username, enrolling) }).expect(200));
      auth = `Bearer ${confirmed.body.accessToken}`;
    }
    const me = (await http().get('/v1/me').set('Authorization', auth).expect(200)).body;
    const s = secret as string;
    return { id: me.id, username, password, secret: s, auth, code: () => nextCode(username, s) };
  };

  const endpoint = opts.gateway ? app.get(SshGatewayServer).endpoint() : null;
  const gateway = endpoint
    ? { host: endpoint.host, port: endpoint.port, hostKeySha256: endpoint.hostKey.sha256, knownHostsLine: endpoint.hostKey.knownHostsLine(endpoint.host, endpoint.port) }
    : undefined;

  let admin: TestUser | undefined;
  // a vault restarted on an existing database: the admin's authenticator already holds `adminSecret`
  const getAdmin = async () => (admin ??= await signIn('admin', ADMIN_PASSWORD, opts.adminSecret ? { id: '', secret: opts.adminSecret } : undefined));
  return {
    app,
    db,
    masterKey,
    clock,
    http,
    get: (token) => app.get(token as never),
    gateway,
    admin: getAdmin,
    adminAuth: async () => (await getAdmin()).auth,
    createUser: async (roles, o = {}) => {
      const a = await getAdmin();
      const username = `u${randomBytes(5).toString('hex')}`;
      const password = `pw-${randomBytes(12).toString('hex')}`;
      const created = await adminInTurn(async () =>
        http().post('/v1/users').set('Authorization', a.auth).set('X-MFA-Code', await a.code()).send({ username, password, roles }).expect(201),
      );
      if (o.enroll === false) {
        const login = await http().post('/v1/auth/login').send({ username, password }).expect(200);
        return { id: created.body.id, username, password, secret: '', auth: `Bearer ${login.body.accessToken}`, code: async () => '' };
      }
      return signIn(username, password);
    },
    close: async () => {
      await app.close();
      await sentinel?.flush(db);
      if (!opts.db) await db.drop();
    },
  };
}

/** A log destination that keeps every line in `lines` and passes it on to `next` (or drops it). */
function teeLines(lines: string[], next: DestinationStream | undefined): DestinationStream {
  return {
    write(chunk: string) {
      for (const line of chunk.split('\n')) if (line) lines.push(line);
      next?.write(chunk);
    },
  } as DestinationStream;
}

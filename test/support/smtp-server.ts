/**
 * A real SMTP server for the notification tests, run as its own process (test/support/smtp-server-child.ts: the
 * `smtp-server` package) on 127.0.0.1 and a free port, with STARTTLS (a CA and a server certificate for 127.0.0.1
 * made with openssl for each server), AUTH PLAIN/LOGIN for one test user, MAIL refused before STARTTLS.
 *
 *     const smtp = await startSmtpServer();
 *     const h = await buildModule({ env: { ...smtp.env, VAULT_PUBLIC_URL: 'https://vault.test' } });
 *     …
 *     const [mail] = await smtp.waitFor(1);              // or waitFor((m) => m.deliveryId === id)
 *     mail.secure; mail.user; mail.text; mail.html; mail.messageId; mail.deliveryId; mail.envelope.to; mail.raw
 *     await smtp.failNext(2, { code: 451 });             // the end of DATA answered 451 twice (stage: connect|mail|rcpt|data)
 *     await smtp.hangNext(1);                            // the end of DATA never answered once (the client times out)
 *     await smtp.stop();
 *
 * `messages` are the accepted messages, `attempts` every message whose DATA arrived (rejected and hung ones too,
 * `outcome` says which), `counters` the sessions (connections, TLS upgrades, logins, MAIL commands). Everything
 * received is recorded for the secret scan (test/support/receivers.ts). A server that cannot start is an error
 * naming what is missing, never a skipped test.
 */
import { ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { simpleParser } from 'mailparser';
import type { ParsedMail } from 'mailparser';
import { recordReceived, recordTestSecret, waitUntil, WaitOptions } from './receivers';
import type { ChildEvent, ParentCommand, SmtpFailureRule, SmtpStage } from './smtp-server-child';
import { makeCertificates } from './targets/mariadb-tls';

export type { SmtpStage } from './smtp-server-child';

export interface ReceivedMail {
  seq: number;
  /** When the end of DATA arrived at the server (ms since the epoch, the server process's clock). */
  receivedAt: number;
  /** Empty with {@link SmtpServerOptions.headersOnly}. */
  raw: Buffer;
  /** Null with {@link SmtpServerOptions.headersOnly}. */
  parsed: ParsedMail | null;
  envelope: { from: string | null; to: string[] };
  /** The session was TLS (after STARTTLS, or implicit) when the message came. */
  secure: boolean;
  tlsProtocol: string | null;
  /** The authenticated user, if any. */
  user: string | null;
  subject: string;
  text: string;
  /** The HTML part ('' when there is none). */
  html: string;
  /** `Message-ID` without the angle brackets. */
  messageId: string | undefined;
  /** `X-Vault-Delivery`. */
  deliveryId: string | undefined;
  /** `accepted`, `rejected <code>` or `hung`. */
  outcome: string;
}

export interface SmtpServerOptions {
  /** `starttls` (default): plain, upgraded with STARTTLS; `tls`: TLS from the first byte. */
  tls?: 'starttls' | 'tls';
  /** Refuse AUTH and MAIL FROM before TLS (default true). */
  requireTls?: boolean;
  /** Offer STARTTLS (default true; false: a server that speaks only in clear, which the vault must refuse). */
  offerStartTls?: boolean;
  username?: string;
  password?: string;
  /** VAULT_SMTP_FROM in `env`. */
  from?: string;
  /**
   * This process neither reads nor parses the messages (a bench, whose process is the vault's: a real SMTP server's
   * work is not the vault's): each ReceivedMail has the envelope, the times, and Message-ID and X-Vault-Delivery as
   * the server process read them from the header; raw empty, parsed null, subject/text/html ''.
   */
  headersOnly?: boolean;
}

export interface SmtpCounters {
  connections: number;
  /** Connections that ended (closed by either side). */
  closed: number;
  secured: number;
  authOk: number;
  authFailed: number;
  mailFrom: number;
}

export interface SmtpServer {
  host: string;
  port: number;
  /** The CA the server certificate chains to (VAULT_SMTP_CA_FILE), and its PEM. */
  caFile: string;
  caPem: string;
  username: string;
  password: string;
  from: string;
  /** VAULT_SMTP_HOST, _PORT, _TLS, _USERNAME, _PASSWORD, _FROM, _CA_FILE for this server. */
  env: Record<string, string>;
  pid: number;
  /** The temp dir (certificates, mail/<seq>.eml); deleted by stop(). */
  dir: string;
  readonly messages: ReceivedMail[];
  readonly attempts: ReceivedMail[];
  readonly counters: SmtpCounters;
  /**
   * Resolves with the accepted messages once there are `n` of them (`match`: `n` that match, and then those), or, given
   * a predicate, once one matches (then: those that match). Rejects after `timeoutMs` (default 15 s) saying what came.
   */
  waitFor(what: number | ((m: ReceivedMail) => boolean), o?: number | WaitOptions<ReceivedMail>): Promise<ReceivedMail[]>;
  /** The next `count` times this stage is reached (default the end of DATA), answer `code` (4xx or 5xx). */
  failNext(count: number, o: { code: number; stage?: SmtpStage }): Promise<void>;
  /** The next `count` times this stage is reached (default the end of DATA), never answer (until stop). */
  hangNext(count: number, o?: { stage?: SmtpStage }): Promise<void>;
  /** Drops the failures programmed and not used yet. */
  clearFailures(): Promise<void>;
  /**
   * Resolves once every event the server process sent before now has been counted and every message it received
   * parsed (its events come over IPC, so a client can see the server's answer before the counter or the list moves).
   */
  settled(): Promise<void>;
  /** Forgets the messages and counters received so far. */
  reset(): void;
  /** Stops the server process (idempotent) and deletes its dir. */
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';
const CHILD = join(__dirname, 'smtp-server-child.ts');

export async function startSmtpServer(o: SmtpServerOptions = {}): Promise<SmtpServer> {
  if (!existsSync('/usr/bin/openssl')) throw new Error('the SMTP test server makes its certificates with openssl: install the openssl package');
  const dir = mkdtempSync(join(tmpdir(), 'vault-smtp-'));
  const username = o.username ?? 'vault-mailer';
  const password = o.password ?? `smtp-${randomBytes(12).toString('base64url')}`;
  const from = o.from ?? 'vault@vault.test';
  const tls = o.tls ?? 'starttls';
  recordTestSecret(password, 'SMTP test server password');
  let child: ChildProcess | undefined;
  const removeDir = () => rmSync(dir, { recursive: true, force: true });
  const exitHook = () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    removeDir();
  };
  process.once('exit', exitHook);

  const messages: ReceivedMail[] = [];
  const attempts: ReceivedMail[] = [];
  const counters: SmtpCounters = { connections: 0, closed: 0, secured: 0, authOk: 0, authFailed: 0, mailFrom: 0 };
  const waiters = new Set<() => void>();
  const acks = new Map<number, () => void>();
  let parsing: Promise<void> = Promise.resolve();
  let nextId = 1;
  let stderr = '';

  const received = async (e: Extract<ChildEvent, { type: 'message' }>) => {
    if (o.headersOnly) {
      const light: ReceivedMail = { seq: e.seq, receivedAt: e.at, raw: Buffer.alloc(0), parsed: null, envelope: { from: e.from, to: e.to }, secure: e.secure, tlsProtocol: e.tlsProtocol, user: e.user, subject: '', text: '', html: '', messageId: e.messageId, deliveryId: e.deliveryId, outcome: e.outcome };
      attempts.push(light);
      if (light.outcome === 'accepted') messages.push(light);
      for (const w of waiters) w();
      return;
    }
    const raw = readFileSync(e.file);
    const parsed = await simpleParser(raw);
    const header = (name: string) => {
      const v = parsed.headers.get(name);
      return typeof v === 'string' ? v : undefined;
    };
    const mail: ReceivedMail = {
      seq: e.seq,
      receivedAt: e.at,
      raw,
      parsed,
      envelope: { from: e.from, to: e.to },
      secure: e.secure,
      tlsProtocol: e.tlsProtocol,
      user: e.user,
      subject: parsed.subject ?? '',
      text: parsed.text ?? '',
      html: typeof parsed.html === 'string' ? parsed.html : '',
      messageId: parsed.messageId?.replace(/^<|>$/g, ''),
      deliveryId: header('x-vault-delivery'),
      outcome: e.outcome,
    };
    recordReceived('smtp', { seq: mail.seq, outcome: mail.outcome, subject: mail.subject, text: mail.text, html: mail.html, raw: raw.toString('utf8') });
    attempts.push(mail);
    if (mail.outcome === 'accepted') messages.push(mail);
    for (const w of waiters) w();
  };

  try {
    await makeCertificates(dir);
    child = fork(CHILD, [], {
      execArgv: ['-r', require.resolve('ts-node/register/transpile-only')],
      env: { PATH: process.env.PATH ?? '', SMTP_CHILD_CONFIG: JSON.stringify({ dir, key: join(dir, 'server.key'), cert: join(dir, 'server.pem'), tls, offerStartTls: o.offerStartTls ?? true, requireTls: o.requireTls ?? true, username, password }) },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    child.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
    const proc = child;
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the SMTP test server did not start within 30 s: ${stderr}`)), 30_000);
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`the SMTP test server exited (${code}) before listening: ${stderr}`));
      });
      proc.on('message', (e: ChildEvent) => {
        switch (e.type) {
          case 'listening':
            clearTimeout(timer);
            return resolve(e.port);
          case 'ack':
            acks.get(e.id)?.();
            acks.delete(e.id);
            return;
          case 'connect':
            counters.connections++;
            return;
          case 'secure':
            counters.secured++;
            return;
          case 'close':
            counters.closed++;
            return;
          case 'auth':
            if (e.ok) counters.authOk++;
            else counters.authFailed++;
            return;
          case 'mail':
            counters.mailFrom++;
            return;
          case 'message':
            parsing = parsing.then(() => received(e)).catch((err: Error) => void (stderr += `\nparsing a received message failed: ${err.message}`));
            return;
        }
      });
    });
    const pid = child.pid!;

    const command = (c: { type: 'fail'; rule: SmtpFailureRule } | { type: 'clear' } | { type: 'sync' }) =>
      new Promise<void>((resolve, reject) => {
        if (!proc.connected) return reject(new Error('the SMTP test server is not running'));
        const id = nextId++;
        acks.set(id, resolve);
        proc.send({ ...c, id } as ParentCommand);
      });

    let stopped: Promise<void> | undefined;
    return {
      host: HOST,
      port,
      caFile: join(dir, 'ca.pem'),
      caPem: readFileSync(join(dir, 'ca.pem'), 'utf8'),
      username,
      password,
      from,
      env: {
        VAULT_SMTP_HOST: HOST,
        VAULT_SMTP_PORT: String(port),
        VAULT_SMTP_TLS: tls,
        VAULT_SMTP_USERNAME: username,
        VAULT_SMTP_PASSWORD: password,
        VAULT_SMTP_FROM: from,
        VAULT_SMTP_CA_FILE: join(dir, 'ca.pem'),
      },
      pid,
      dir,
      messages,
      attempts,
      counters,
      waitFor: (what, o) =>
        waitUntil(messages, waiters, what, o, (want, ms) =>
          `the SMTP test server did not receive ${want} within ${ms} ms (accepted ${messages.length}, attempts ${attempts.length}, ${JSON.stringify(counters)})${stderr ? `; server said: ${stderr}` : ''}`,
        ),
      failNext: (count, f) => command({ type: 'fail', rule: { stage: f.stage ?? 'data', count, code: f.code } }),
      hangNext: (count, f = {}) => command({ type: 'fail', rule: { stage: f.stage ?? 'data', count, hang: true } }),
      clearFailures: () => command({ type: 'clear' }),
      settled: async () => {
        await command({ type: 'sync' });
        await parsing;
      },
      reset: () => {
        messages.length = 0;
        attempts.length = 0;
        Object.assign(counters, { connections: 0, closed: 0, secured: 0, authOk: 0, authFailed: 0, mailFrom: 0 });
      },
      stop: () =>
        (stopped ??= (async () => {
          if (proc.exitCode === null && proc.signalCode === null) {
            const exited = new Promise<void>((r) => proc.once('exit', () => r()));
            if (proc.connected) proc.send({ type: 'stop' } as ParentCommand);
            else proc.kill('SIGTERM');
            const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
            await exited;
            clearTimeout(timer);
          }
          await parsing;
          process.off('exit', exitHook);
          removeDir();
        })()),
    };
  } catch (e) {
    exitHook();
    process.off('exit', exitHook);
    throw e;
  }
}

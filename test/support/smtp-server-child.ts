/**
 * The SMTP server process behind test/support/smtp-server.ts: the `smtp-server` package (a real implementation of
 * the protocol: EHLO, STARTTLS, AUTH PLAIN/LOGIN, pipelining, dot-stuffing) on 127.0.0.1, run as its own process by
 * the test (`fork`, with ts-node). It writes each message it receives (raw RFC 822) into `<dir>/mail/<seq>.eml` and
 * tells the parent over IPC; the parent programs failures (a 4xx/5xx answer or no answer at all, at the connection,
 * MAIL FROM, RCPT TO or the end of DATA) the same way. It ends when the parent says stop or goes away.
 *
 * Config (JSON in SMTP_CHILD_CONFIG): { dir, key, cert, tls: 'starttls' | 'tls', offerStartTls, requireTls, username, password }.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SMTPServer } from 'smtp-server';
import type { SMTPServerSession } from 'smtp-server';

export type SmtpStage = 'connect' | 'mail' | 'rcpt' | 'data';
/** What the server does at a stage for the next `count` times: answer `code` (4xx/5xx), or never answer. */
export interface SmtpFailureRule {
  stage: SmtpStage;
  count: number;
  code?: number;
  hang?: boolean;
}

export type ParentCommand = { type: 'fail'; id: number; rule: SmtpFailureRule } | { type: 'clear'; id: number } | { type: 'sync'; id: number } | { type: 'stop' };

export type ChildEvent =
  | { type: 'listening'; port: number }
  | { type: 'ack'; id: number }
  | { type: 'connect' }
  | { type: 'secure' }
  | { type: 'close' }
  | { type: 'auth'; ok: boolean }
  | { type: 'mail'; secure: boolean }
  | {
      type: 'message';
      seq: number;
      at: number;
      file: string;
      from: string | null;
      to: string[];
      secure: boolean;
      tlsProtocol: string | null;
      user: string | null;
      outcome: string;
      /** Read here from the header: what a parent that does not parse (headersOnly) needs. */
      messageId: string | undefined;
      deliveryId: string | undefined;
    };

interface ChildConfig {
  dir: string;
  key: string;
  cert: string;
  tls: 'starttls' | 'tls';
  offerStartTls: boolean;
  requireTls: boolean;
  username: string;
  password: string;
}

const config = JSON.parse(process.env.SMTP_CHILD_CONFIG ?? '{}') as ChildConfig;
const send = (e: ChildEvent) => process.send?.(e);
const rules: SmtpFailureRule[] = [];
const hung: Array<() => void> = [];
let seq = 0;

/** The programmed failure for this stage, if one is left (each use counts down). */
function takeRule(stage: SmtpStage): SmtpFailureRule | undefined {
  const rule = rules.find((r) => r.stage === stage && r.count > 0);
  if (rule) rule.count--;
  return rule;
}

function smtpError(code: number): Error {
  const err = new Error(code >= 500 ? 'Test server: permanent failure' : 'Test server: try again later') as Error & { responseCode: number };
  err.responseCode = code;
  return err;
}

/** Runs the callback now, with the programmed answer, or never (kept until stop). */
function answer(stage: SmtpStage, callback: (err?: Error | null) => void, ok: () => void = () => callback()): string {
  const rule = takeRule(stage);
  if (rule?.hang) {
    hung.push(() => callback(smtpError(421)));
    return 'hung';
  }
  if (rule?.code) {
    callback(smtpError(rule.code));
    return `rejected ${rule.code}`;
  }
  ok();
  return 'accepted';
}

const tlsProtocol = (session: SMTPServerSession) => (session.tlsOptions ? (session.tlsOptions as { version?: string }).version ?? null : null);

mkdirSync(join(config.dir, 'mail'), { recursive: true });

const server = new SMTPServer({
  secure: config.tls === 'tls',
  disabledCommands: config.offerStartTls ? [] : ['STARTTLS'],
  key: readFileSync(config.key),
  cert: readFileSync(config.cert),
  name: 'smtp.vault.test',
  banner: 'vault test SMTP server',
  authMethods: ['PLAIN', 'LOGIN'],
  authOptional: false,
  allowInsecureAuth: !config.requireTls, // AUTH only after STARTTLS, unless the test wants a server that takes it in clear
  disableReverseLookup: true,
  logger: false,
  size: 10 * 1024 * 1024,
  socketTimeout: 60_000,
  closeTimeout: 500,
  onConnect(_session, callback) {
    send({ type: 'connect' });
    answer('connect', callback);
  },
  onSecure(_socket, _session, callback) {
    send({ type: 'secure' });
    callback();
  },
  onClose() {
    send({ type: 'close' });
  },
  onAuth(auth, _session, callback) {
    const ok = (auth.method === 'PLAIN' || auth.method === 'LOGIN') && auth.username === config.username && auth.password === config.password;
    send({ type: 'auth', ok });
    if (!ok) {
      const err = new Error('Invalid username or password') as Error & { responseCode: number };
      err.responseCode = 535;
      return callback(err);
    }
    callback(null, { user: auth.username });
  },
  onMailFrom(_address, session, callback) {
    send({ type: 'mail', secure: session.secure });
    if (config.requireTls && !session.secure) {
      const err = new Error('Must issue a STARTTLS command first') as Error & { responseCode: number };
      err.responseCode = 530;
      return callback(err);
    }
    answer('mail', callback);
  },
  onRcptTo(_address, _session, callback) {
    answer('rcpt', callback);
  },
  onData(stream, session, callback) {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const n = ++seq;
      const file = join(config.dir, 'mail', `${String(n).padStart(6, '0')}.eml`);
      const raw = Buffer.concat(chunks);
      writeFileSync(file, raw);
      const end = raw.indexOf('\r\n\r\n');
      const head = raw.subarray(0, end < 0 ? raw.length : end).toString('latin1');
      const env = session.envelope; // before the answer: it ends the transaction (a new envelope)
      const message = { from: env.mailFrom ? env.mailFrom.address : null, to: env.rcptTo.map((r) => r.address), secure: session.secure, tlsProtocol: tlsProtocol(session) };
      const user = typeof session.user === 'string' ? session.user : null;
      const outcome = answer('data', callback);
      send({
        type: 'message',
        seq: n,
        at: Date.now(),
        file,
        ...message,
        user,
        outcome,
        messageId: /^Message-ID:\s*<([^>\r\n]+)>/im.exec(head)?.[1],
        deliveryId: /^X-Vault-Delivery:\s*(\S+)/im.exec(head)?.[1],
      });
    });
  },
});

let stopping = false;
function stop(): void {
  if (stopping) return;
  stopping = true;
  for (const release of hung.splice(0)) release();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}

server.on('error', (e: Error & { code?: string }) => {
  process.stderr.write(`smtp test server error: ${e.code ?? e.name}\n`);
});
process.on('message', (m: ParentCommand) => {
  if (m.type === 'stop') return stop();
  if (m.type === 'fail') rules.push({ ...m.rule });
  if (m.type === 'clear') rules.length = 0;
  send({ type: 'ack', id: m.id });
});
process.on('disconnect', stop); // the test process went away
process.on('SIGTERM', stop);

server.listen(0, '127.0.0.1', () => {
  const address = server.server.address() as { port: number };
  send({ type: 'listening', port: address.port });
});

import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, openSync } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { join } from 'node:path';
import pino from 'pino';
import { redirectLogs } from '../../src/common/logging';
import type { SecretRef } from '../../src/crypto/secret-box.service';
import type { TestDatabase } from './db';

/**
 * The secret sentinel of the e2e suite (on when TEST_SECRET_SCAN_DIR is set; scripts/test.sh sets it). Every
 * in-process test vault then
 * - logs at trace level into `log-<tag>.log` in that directory instead of discarding its logs;
 * - records, at its HTTP server, every secret-looking value a test sent or received (request and response
 *   bodies: password, privateKey, passphrase, secret, token, accessToken; bearer tokens) into
 *   `secrets-<tag>.jsonl`, and every error answer (4xx/5xx body) into `errors-<tag>.jsonl`;
 * - records every plaintext its SecretBoxService encrypts or decrypts (account passwords, rotated ones included,
 *   target admin credentials, TOTP seeds, rotation write-ahead passwords) and its keyring keys;
 * - at close, dumps the audit events of its database into `audit-<tag>.jsonl`.
 * After jest, test/support/secret-scan.ts looks for every recorded secret in every log line, audit event and
 * error body. `<tag>` is `<pid>-<random>`: one set of files per test file.
 */
export const SECRET_SCAN_DIR = process.env.TEST_SECRET_SCAN_DIR || undefined;

/** Body fields that carry a secret, in a request or an answer. */
export const SECRET_FIELDS = new Set(['password', 'newPassword', 'currentPassword', 'privateKey', 'passphrase', 'secret', 'token', 'accessToken', 'refreshToken', 'ticket', 'clientSecret', 'deviceCode']);

/** Kept small: a body beyond this is not examined (no test sends or receives one with a secret in it). */
const MAX_BODY_BYTES = 1024 * 1024;

export interface SecretSentinel {
  /** Watches every request of this server (a listener ahead of the application's). */
  watch(server: Server): void;
  /** A secret known outside HTTP (the master key, the bootstrap admin password). */
  secret(value: string | undefined, origin: string): void;
  /** Records every plaintext this SecretBoxService encrypts or decrypts (wraps the instance's methods). */
  watchSecretBox(box: SecretBox): void;
  /** The keyring's keys (base64 and hex): binary secrets that would show in one of those forms. */
  keys(keys: Uint8Array[]): void;
  /** Writes what was recorded, the database's audit events, and the pending log lines. */
  flush(db: TestDatabase): Promise<void>;
  /** Writes the secrets and error bodies recorded so far (for files whose vaults run as separate processes). */
  persist(): void;
  /** Keeps the whole output of a vault run as a separate process, to be scanned like the in-process logs. */
  processOutput(output: string): void;
}

interface SecretBox {
  encrypt(ref: SecretRef, plaintext: string): Buffer;
  decrypt(ref: SecretRef, blob: Buffer): string;
}

let sentinel: SecretSentinel | undefined;

/** The sentinel of this test file (one per module registry), or undefined when the scan is off. */
export function secretSentinel(): SecretSentinel | undefined {
  if (!SECRET_SCAN_DIR) return undefined;
  return (sentinel ??= createSentinel(SECRET_SCAN_DIR));
}

function createSentinel(dir: string): SecretSentinel {
  mkdirSync(dir, { recursive: true });
  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const file = (kind: string, ext = 'jsonl') => join(dir, `${kind}-${tag}.${ext}`);
  // opened here (synchronously), written asynchronously in 4 KiB pieces, drained at close
  const logs = pino.destination({ dest: openSync(file('log', 'log'), 'a'), sync: false, minLength: 4096 });
  redirectLogs(logs);

  const secrets = new Map<string, string>();
  let secretLines: string[] = [];
  let errorLines: string[] = [];
  const secret = (value: unknown, origin: string) => {
    if (typeof value !== 'string' || value === '' || secrets.has(value)) return;
    secrets.set(value, origin);
    secretLines.push(JSON.stringify({ value, origin }));
  };
  /** Every string under a secret field name, however deep (`admin.password`, `credential.password`). */
  const walk = (node: unknown, origin: string, path: string, depth = 0): void => {
    if (depth > 20 || node === null || typeof node !== 'object') return;
    for (const [k, v] of Object.entries(node as Record<string, unknown>)) {
      const at = path ? `${path}.${k}` : k;
      if (SECRET_FIELDS.has(k) && typeof v === 'string') secret(v, `${origin} ${at}`);
      else walk(v, origin, at, depth + 1);
    }
  };

  const track = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const keep = (chunk: unknown, encoding: unknown) => {
      if (chunk === undefined || chunk === null || typeof chunk === 'function' || size > MAX_BODY_BYTES) return;
      const buf = Buffer.isBuffer(chunk) ? chunk : typeof chunk === 'string' ? Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8') : undefined;
      if (buf) {
        chunks.push(buf);
        size += buf.length;
      }
    };
    const write = res.write.bind(res) as (...args: unknown[]) => boolean;
    const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
    res.write = ((...args: unknown[]) => {
      keep(args[0], args[1]);
      return write(...args);
    }) as ServerResponse['write'];
    res.end = ((...args: unknown[]) => {
      keep(args[0], args[1]);
      return end(...args);
    }) as ServerResponse['end'];
    res.once('finish', () => {
      const r = req as IncomingMessage & { body?: unknown; route?: { path?: unknown } };
      // the route pattern, not the path: a path may hold an id or a value a test put there
      const route = typeof r.route?.path === 'string' && !r.route.path.includes('*') ? r.route.path : 'unmatched';
      const where = `${req.method} ${route}`;
      const auth = req.headers.authorization;
      if (typeof auth === 'string') secret(auth.replace(/^Bearer\s+/i, ''), `request ${where} Authorization`);
      walk(r.body, `request ${where}`, '');
      const text = Buffer.concat(chunks).toString('utf8');
      let body: unknown;
      try {
        body = text === '' ? undefined : JSON.parse(text);
      } catch {
        body = undefined;
      }
      walk(body, `response ${where} ${res.statusCode}`, '');
      if (res.statusCode >= 400) errorLines.push(JSON.stringify({ where, status: res.statusCode, body: text }));
    });
  };

  function persist(): void {
    if (secretLines.length) appendFileSync(file('secrets'), secretLines.join('\n') + '\n');
    if (errorLines.length) appendFileSync(file('errors'), errorLines.join('\n') + '\n');
    secretLines = [];
    errorLines = [];
  }

  return {
    watch: (server) => {
      server.prependListener('request', track);
    },
    secret,
    watchSecretBox: (box) => {
      const stored = (plaintext: string, ref: SecretRef, how: string) => {
        // a session recording is encrypted at rest but is what auditors download and play: not a secret to look for
        // (a secret typed or shown in a session is the session's own; the gateway's credentials are never recorded)
        if (ref.table === 'session_recording_chunks') return;
        const origin = `${how} ${ref.table}.${ref.column}`;
        secret(plaintext, origin);
        // a target's admin credential is stored as JSON ({"password": …} or {"privateKey": …, "passphrase": …})
        if (plaintext.startsWith('{')) {
          try {
            walk(JSON.parse(plaintext), origin, '');
          } catch {
            /* not JSON: the whole value is recorded */
          }
        }
      };
      const encrypt = box.encrypt.bind(box);
      const decrypt = box.decrypt.bind(box);
      box.encrypt = (ref, plaintext) => {
        stored(plaintext, ref, 'encrypted');
        return encrypt(ref, plaintext);
      };
      box.decrypt = (ref, blob) => {
        const plaintext = decrypt(ref, blob);
        stored(plaintext, ref, 'decrypted');
        return plaintext;
      };
    },
    keys: (keys) => {
      for (const k of keys) {
        secret(Buffer.from(k).toString('base64'), 'keyring key (base64)');
        secret(Buffer.from(k).toString('hex'), 'keyring key (hex)');
      }
    },
    persist,
    processOutput: (output) => {
      if (output) appendFileSync(file('log-process', 'log'), output.endsWith('\n') ? output : `${output}\n`);
    },
    flush: async (db) => {
      persist();
      let audit: string;
      try {
        const rows = await db.query('SELECT * FROM audit_events ORDER BY id');
        audit = rows.map((event) => JSON.stringify({ db: db.name, event })).join('\n');
      } catch (e) {
        const message = (e as Error).message;
        // closed: a second vault on a database its first vault already dumped and dropped. Anything else (a
        // database a test broke on purpose?) the scanner reports.
        audit = /Client was closed/.test(message) ? '' : JSON.stringify({ db: db.name, dumpFailed: message });
      }
      if (audit) appendFileSync(file('audit'), audit + '\n');
      await new Promise<void>((resolve) => logs.flush(() => resolve()));
    },
  };
}

import { randomBytes } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { SECRET_SCAN_DIR, secretSentinel } from './secret-sentinel';

/**
 * Shared by the test receivers (test/support/smtp-server.ts, test/support/webhook-receiver.ts).
 *
 * What they received is kept for the secret scan (when TEST_SECRET_SCAN_DIR is set): every e-mail (raw, and its
 * decoded text and HTML) and every webhook body is a line of `log-received-<tag>.log`, which
 * test/support/secret-scan.ts reads with the vault's logs, so a password, TOTP code or token in any message or
 * payload fails the run. Request URLs are not kept (a Slack or Teams URL is itself a secret the scan looks for).
 */
let file: string | undefined;

export function recordReceived(source: string, fields: Record<string, unknown>): void {
  if (!SECRET_SCAN_DIR) return;
  file ??= join(SECRET_SCAN_DIR, `log-received-${process.pid}-${randomBytes(4).toString('hex')}.log`);
  appendFileSync(file, JSON.stringify({ received: source, ...fields }) + '\n');
}

/** A secret the receivers know (the SMTP test password, a webhook secret, a secret URL): the scan looks for it. */
export function recordTestSecret(value: string, origin: string): void {
  const sentinel = secretSentinel();
  sentinel?.secret(value, origin);
  sentinel?.persist();
}

export interface WaitOptions<T> {
  timeoutMs?: number;
  match?: (item: T) => boolean;
}

/** The wait of both receivers: `n` items (that `match`), or one that matches `what`; `waiters` run on each new item. */
export function waitUntil<T>(
  items: T[],
  waiters: Set<() => void>,
  what: number | ((item: T) => boolean),
  o: number | WaitOptions<T> | undefined,
  failure: (want: string, timeoutMs: number) => string,
): Promise<T[]> {
  const { timeoutMs = 15_000, match } = typeof o === 'number' ? { timeoutMs: o } : (o ?? {});
  const pred = typeof what === 'function' ? what : match;
  const count = typeof what === 'number' ? what : 1;
  return new Promise<T[]>((resolve, reject) => {
    const check = () => {
      const found = pred ? items.filter(pred) : items.slice();
      if (found.length < count) return;
      waiters.delete(check);
      clearTimeout(timer);
      resolve(found);
    };
    const timer = setTimeout(() => {
      waiters.delete(check);
      reject(new Error(failure(`${count}${pred ? ' matching' : ''} item(s)`, timeoutMs)));
    }, timeoutMs);
    waiters.add(check);
    check();
  });
}

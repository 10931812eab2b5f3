import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The secret scan (scripts/test.sh runs it after jest): every secret the e2e tests sent or received, recorded by
 * test/support/secret-sentinel.ts, is looked for in every log line, every audit event and every error body the
 * test vaults produced, as written and in its JSON-escaped, URL-encoded and base64 forms. A hit names the file,
 * the line, the form and where the secret came from; never the secret itself (a hash prefix stands for it).
 *
 *   npx ts-node --transpile-only test/support/secret-scan.ts <dir>
 */

/** Shorter values are too likely to occur by chance (TOTP codes, test placeholders). */
export const MIN_SECRET_LENGTH = 8;
/** Values that appear in secret fields and are not secrets. */
const PUBLIC_VALUES = new Set(['[REDACTED]', 'password', 'privateKey', 'passphrase', 'undefined', 'null']);

export interface Secret {
  value: string;
  origin: string;
}
export interface Hit {
  file: string;
  line: number;
  form: string;
  secret: Secret;
  context: string;
}
export interface ScanResult {
  secrets: number;
  skipped: number;
  logLines: number;
  auditEvents: number;
  errorBodies: number;
  auditDumpsFailed: string[];
  hits: Hit[];
}

export const fingerprint = (value: string) => createHash('sha256').update(value).digest('hex').slice(0, 12);

/** Whether a recorded value is worth looking for: long enough, not a known public word, not one repeated character. */
export function isScannable(value: string): boolean {
  return value.length >= MIN_SECRET_LENGTH && !PUBLIC_VALUES.has(value) && !/^(.)\1*$/s.test(value);
}

/** The shapes a secret can take in a log line, a JSON document or a URL. */
export function formsOf(value: string): Array<{ form: string; text: string }> {
  const forms = [
    { form: 'raw', text: value },
    { form: 'json-escaped', text: JSON.stringify(value).slice(1, -1) },
    { form: 'url-encoded', text: encodeURIComponent(value) },
  ];
  // base64 of the secret at each of the three byte offsets it can have inside a longer encoded value: the
  // characters that depend on the secret's bytes alone (the first and last group may mix with its neighbours)
  const bytes = Buffer.from(value, 'utf8');
  for (const offset of [0, 1, 2]) {
    const full = Buffer.concat([Buffer.alloc(offset), bytes]).toString('base64');
    const text = full.slice(offset === 0 ? 0 : 4, (offset + bytes.length) % 3 === 0 ? full.length : full.length - 4);
    const at = offset === 0 ? '' : `+${offset}`;
    forms.push({ form: `base64${at}`, text }, { form: `base64url${at}`, text: text.replaceAll('+', '-').replaceAll('/', '_') });
  }
  const seen = new Set<string>();
  return forms.filter((f) => f.text.length >= MIN_SECRET_LENGTH && !seen.has(f.text) && seen.add(f.text));
}

const KEY = MIN_SECRET_LENGTH;

/** Finds every form of every secret in lines of text: an index on each form's first characters, one pass per line. */
export class SecretIndex {
  private readonly byPrefix = new Map<string, Array<{ form: string; text: string; secret: Secret }>>();

  constructor(secrets: Secret[]) {
    for (const secret of secrets) {
      for (const f of formsOf(secret.value)) {
        const key = f.text.slice(0, KEY);
        const list = this.byPrefix.get(key) ?? [];
        list.push({ ...f, secret });
        this.byPrefix.set(key, list);
      }
    }
  }

  find(line: string): Array<{ form: string; secret: Secret; at: number; length: number }> {
    const found: Array<{ form: string; secret: Secret; at: number; length: number }> = [];
    for (let i = 0; i + KEY <= line.length; i++) {
      const candidates = this.byPrefix.get(line.slice(i, i + KEY));
      if (!candidates) continue;
      for (const c of candidates) if (line.startsWith(c.text, i)) found.push({ form: c.form, secret: c.secret, at: i, length: c.text.length });
    }
    return found;
  }
}

function lines(path: string): string[] {
  return readFileSync(path, 'utf8').split('\n').filter((l) => l !== '');
}

export function scan(dir: string): ScanResult {
  const files = readdirSync(dir).sort();
  const of = (prefix: string) => files.filter((f) => f.startsWith(prefix)).map((f) => join(dir, f));

  const all = new Map<string, Secret>();
  for (const file of of('secrets-')) {
    for (const l of lines(file)) {
      const s = JSON.parse(l) as Secret;
      if (!all.has(s.value)) all.set(s.value, s);
    }
  }
  const secrets = [...all.values()].filter((s) => isScannable(s.value));
  const index = new SecretIndex(secrets);
  const hits: Hit[] = [];
  const examine = (file: string, lineNo: number, text: string) => {
    const found = index.find(text);
    if (found.length === 0) return;
    // the line with every secret found in it masked, so no context printed shows one
    let masked = '';
    let pos = 0;
    for (const h of [...found].sort((a, b) => a.at - b.at)) {
      if (h.at < pos) continue;
      masked += text.slice(pos, h.at) + `<secret ${fingerprint(h.secret.value)}>`;
      pos = h.at + h.length;
    }
    masked += text.slice(pos);
    for (const h of found) {
      const at = masked.indexOf(`<secret ${fingerprint(h.secret.value)}>`);
      const context = masked.slice(Math.max(0, at - 100), at + 140);
      hits.push({ file, line: lineNo, form: h.form, secret: h.secret, context });
    }
  };

  let logLines = 0;
  for (const file of of('log-')) {
    lines(file).forEach((l, i) => {
      logLines++;
      examine(file, i + 1, l);
    });
  }
  // the same database may be dumped by each vault that ran on it: each event is examined once
  const auditSeen = new Set<string>();
  const auditDumpsFailed: string[] = [];
  for (const file of of('audit-')) {
    lines(file).forEach((l, i) => {
      const row = JSON.parse(l) as { db: string; event?: { id?: unknown }; dumpFailed?: string };
      if (row.dumpFailed !== undefined) {
        auditDumpsFailed.push(`${row.db}: ${row.dumpFailed}`);
        return;
      }
      const key = `${row.db}/${String(row.event?.id)}/${fingerprint(l)}`;
      if (auditSeen.has(key)) return;
      auditSeen.add(key);
      examine(file, i + 1, l);
    });
  }
  let errorBodies = 0;
  for (const file of of('errors-')) {
    lines(file).forEach((l, i) => {
      errorBodies++;
      examine(file, i + 1, l);
    });
  }
  return { secrets: secrets.length, skipped: all.size - secrets.length, logLines, auditEvents: auditSeen.size, errorBodies, auditDumpsFailed, hits };
}

function main(): void {
  const dir = process.argv[2];
  if (!dir) {
    process.stderr.write('usage: secret-scan.ts <dir written by the tests with TEST_SECRET_SCAN_DIR>\n');
    process.exit(2);
  }
  const r = scan(dir);
  const out = (s: string) => process.stdout.write(s + '\n');
  if (r.secrets === 0 || r.logLines === 0) {
    out(`secret scan: nothing recorded in ${dir} (${r.secrets} secrets, ${r.logLines} log lines): was TEST_SECRET_SCAN_DIR set for jest?`);
    process.exit(1);
  }
  for (const d of r.auditDumpsFailed) out(`secret scan: warning: audit events not dumped (${d})`);
  const summary = `secret scan: ${r.secrets} secrets (${r.skipped} too short or public skipped), ${r.logLines} log lines, ${r.auditEvents} audit events, ${r.errorBodies} error bodies`;
  if (r.hits.length === 0) {
    out(`${summary}: clean`);
    return;
  }
  out(`${summary}: ${r.hits.length} LEAKS`);
  for (const h of r.hits.slice(0, 100)) {
    out(`  ${h.file}:${h.line} [${h.form}] secret ${fingerprint(h.secret.value)} (${h.secret.origin})\n      ${h.context}`);
  }
  if (r.hits.length > 100) out(`  … and ${r.hits.length - 100} more`);
  process.exit(1);
}

if (require.main === module) main();

import { clean } from './errors';

/** Results go to stdout; progress, notes and errors to stderr (so `--json` output stays parseable). */
export const out = (line = '') => process.stdout.write(line + '\n');
export const note = (line = '') => process.stderr.write(line + '\n');
export const printJson = (value: unknown) => out(JSON.stringify(value ?? null, null, 2));

const cell = (v: unknown): string => {
  if (v === null || v === undefined || v === '') return '-';
  if (Array.isArray(v)) return v.length ? v.map(cell).join(',') : '-';
  if (typeof v === 'object') return clean(JSON.stringify(v));
  return clean(v);
};

/** Truncates free text (justifications) so a table stays one line per row. */
export const short = (v: unknown, max = 40): string => {
  const s = cell(v);
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
};

/** A plain table: header, then one line per row, columns padded to the widest cell. */
export function table(headers: string[], rows: unknown[][]): void {
  const text = rows.map((r) => r.map(cell));
  const widths = headers.map((h, i) => Math.max(h.length, ...text.map((r) => r[i]?.length ?? 0)));
  const line = (cols: string[]) => cols.map((c, i) => (i === cols.length - 1 ? c : c.padEnd(widths[i]))).join('  ');
  out(line(headers));
  for (const r of text) out(line(r));
  if (rows.length === 0) note('(none)');
}

/** `key: value` lines, aligned. */
export function fields(pairs: Array<[string, unknown]>): void {
  const w = Math.max(...pairs.map(([k]) => k.length));
  for (const [k, v] of pairs) out(`${`${k}:`.padEnd(w + 1)} ${cell(v)}`);
}

/** A list answer's continuation, when there is more. */
export function morePages(nextCursor: string | null | undefined): void {
  if (nextCursor) note(`more: repeat with --cursor ${nextCursor}`);
}

/** A UTF-16 surrogate without its partner: not valid Unicode, and PostgreSQL stores it as U+FFFD. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const LONE_SURROGATES = new RegExp(LONE_SURROGATE.source, 'g');

/** Text PostgreSQL stores exactly as given: well-formed Unicode without NUL. */
export function isStorableText(s: string): boolean {
  return !s.includes('\u0000') && !LONE_SURROGATE.test(s);
}

/**
 * Makes every string in a JSON-like value storable (lone surrogates and NUL become U+FFFD), keys included,
 * so what is MACed is exactly what PostgreSQL gives back.
 */
export function toStorable<T>(value: T): T {
  if (typeof value === 'string') return value.replace(LONE_SURROGATES, '\uFFFD').replace(/\u0000/g, '\uFFFD') as T;
  if (Array.isArray(value)) return value.map(toStorable) as T;
  if (value !== null && typeof value === 'object' && !(value instanceof Date)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [toStorable(k), toStorable(v)])) as T;
  }
  return value;
}

/**
 * Free text that approvers and auditors read (justifications, comments, reasons): printable, newlines and tabs
 * allowed; refused are the other C0 and C1 control characters, DEL, and the invisible marks that change how text is
 * shown — bidirectional overrides, embeddings, isolates and marks (U+061C, U+200E-U+200F, U+202A-U+202E,
 * U+2066-U+2069), line/paragraph separators (U+2028-U+2029), zero-width space, word joiner and BOM — so what an approver
 * sees is what was stored. (Zero-width joiners, which scripts and emoji need, are allowed.)
 */
export const READABLE_TEXT = /^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200b\u200e\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff]*$/;
export const READABLE_TEXT_MESSAGE = 'must not contain control characters or invisible formatting (bidirectional overrides, zero-width spaces)';

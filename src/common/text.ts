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
 * Free text that approvers and auditors read (justifications, comments, reasons): printable text, newlines and tabs
 * allowed. Refused: every other control character (C0, DEL, C1), every format character (Unicode category Cf —
 * bidirectional overrides, embeddings, isolates and marks, zero-width spaces, the word joiner, the soft hyphen, BOM,
 * interlinear annotations, tag characters that hide text from people), private-use characters, line and paragraph
 * separators, and the Hangul fillers that render as nothing — so what an approver sees is what was stored. The
 * zero-width joiner and non-joiner (which scripts and emoji need) are allowed.
 */
export const READABLE_TEXT = /^(?:[\t\n\u200c\u200d]|(?![\p{Cc}\p{Cf}\p{Co}\p{Zl}\p{Zp}\u115f\u1160\u3164\uffa0])[\s\S])*$/u;
export const READABLE_TEXT_MESSAGE = 'must not contain control characters or invisible formatting (bidirectional overrides, zero-width or tag characters)';

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

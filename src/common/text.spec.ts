import { isStorableText, READABLE_TEXT, toStorable } from './text';

describe('storable text', () => {
  it.each([
    ['plain', true],
    ['emoji 😀 pair', true],
    ['nul \u0000', false],
    ['lone high \ud800 x', false],
    ['lone low \udc00', false],
    ['reversed \udc00\ud800', false],
  ])('%j storable: %s', (s, ok) => expect(isStorableText(s)).toBe(ok));

  it('normalises strings in values and keys, leaving other values alone', () => {
    const at = new Date(0);
    expect(toStorable({ 'k\u0000': ['a\ud800', 1, null, true], at, n: { x: '😀' } })).toEqual({ 'k\uFFFD': ['a\uFFFD', 1, null, true], at, n: { x: '😀' } });
  });
});

describe('READABLE_TEXT', () => {
  it('takes what people write, refuses what changes how text is shown', () => {
    for (const ok of ['CHG-1234 add an index', 'line one\nline two\ttabbed', 'Grüße, 日本語, עברית, عربي', 'family 👨‍👩‍👧 emoji (ZWJ)']) expect([ok, READABLE_TEXT.test(ok)]).toEqual([ok, true]);
    for (const bad of ['pay \u202Eecived', 'a\u2066b\u2069', 'x\u200Fy', 'x\u061Cy', 'zero\u200Bwidth', 'bom\uFEFF', 'c1\u0085', 'bell\u0007', 'cr\r', 'del\u007F', 'sep\u2028',
      'tag\u{E0041}\u{E0042}', 'soft\u00ADhyphen', 'filler\u3164', 'annot\uFFF9x\uFFFAy\uFFFB', 'private\uE000', 'joiner\u2060']) {
      expect([bad, READABLE_TEXT.test(bad)]).toEqual([bad, false]);
    }
  });
});

import { isStorableText, toStorable } from './text';

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

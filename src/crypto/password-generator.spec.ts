import { alphabetFor, PasswordGenerator, TargetType } from './password-generator';

describe('PasswordGenerator', () => {
  const gen = new PasswordGenerator();
  const types: TargetType[] = ['ssh', 'postgres', 'mysql'];

  it.each(types)('%s: right length, every class present, only safe characters', (type) => {
    for (let i = 0; i < 200; i++) {
      const p = gen.generate(type, { length: 20, classes: ['lower', 'upper', 'digit', 'symbol'] });
      expect(p).toHaveLength(20);
      for (const cls of ['lower', 'upper', 'digit', 'symbol'] as const) {
        expect([...p].some((c) => alphabetFor(cls, type).includes(c))).toBe(true);
      }
      expect(p).not.toMatch(/['"`\\$\s;]/);
    }
  });

  it('respects the classes asked for', () => {
    const p = gen.generate('postgres', { length: 64, classes: ['digit'] });
    expect(p).toMatch(/^[2-9]{64}$/);
  });

  it('does not repeat itself', () => {
    const seen = new Set(Array.from({ length: 1000 }, () => gen.generate('ssh')));
    expect(seen.size).toBe(1000);
  });

  it('spreads characters roughly evenly (no modulo bias)', () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 2000; i++) for (const c of gen.generate('postgres', { length: 32, classes: ['digit'] })) counts.set(c, (counts.get(c) ?? 0) + 1);
    const values = [...counts.values()];
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    for (const v of values) expect(Math.abs(v - mean) / mean).toBeLessThan(0.1);
  });

  it.each([
    [{ length: 8, classes: ['lower'] }],
    [{ length: 500, classes: ['lower'] }],
    [{ length: 32, classes: [] }],
  ])('refuses a bad policy %j', (policy) => {
    expect(() => gen.generate('ssh', policy as never)).toThrow(RangeError);
  });
});

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { MIGRATIONS } from '../../migrations';

describe('migrations', () => {
  it('lists every migration file, in timestamp order, each reversible', () => {
    const files = readdirSync(join(__dirname, '../../migrations')).filter((f) => /^\d{13}-.+\.ts$/.test(f)).sort();
    expect(MIGRATIONS.map((m) => m.name.match(/(\d{13})$/)?.[1])).toEqual(files.map((f) => f.slice(0, 13)));
    for (const M of MIGRATIONS) {
      expect(typeof M.prototype.up).toBe('function');
      expect(typeof M.prototype.down).toBe('function');
    }
  });
});

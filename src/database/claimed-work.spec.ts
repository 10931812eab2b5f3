import { Logger } from '@nestjs/common';
import { loadConfig } from '../config/config';
import { backoffSeconds, ClaimedWork, DrainOptions, SkipItem } from './claimed-work';

describe('backoffSeconds', () => {
  const o = { baseSeconds: 15, capSeconds: 3600 };

  it.each([
    [1, 15],
    [2, 30],
    [3, 60],
    [8, 1920],
    [9, 3600],
    [40, 3600],
  ])('attempt %i waits between half and all of %i s', (attempt, full) => {
    for (let i = 0; i < 200; i++) {
      const s = backoffSeconds(attempt, o);
      expect(s).toBeGreaterThanOrEqual(full / 2);
      expect(s).toBeLessThanOrEqual(full);
    }
  });

  it('is jittered', () => {
    const seen = new Set(Array.from({ length: 50 }, () => backoffSeconds(3, o)));
    expect(seen.size).toBeGreaterThan(1);
  });

  it('treats attempt 0 as the first', () => {
    expect(backoffSeconds(0, o)).toBeLessThanOrEqual(15);
  });
});

describe('crash points in config', () => {
  it.each([
    ['after-pending-write', 'rotation-after-pending-write'],
    ['after-target-change', 'rotation-after-target-change'],
    ['after-login-check', 'rotation-after-login-check'],
    ['before-commit', 'rotation-before-commit'],
    ['rotation-before-commit', 'rotation-before-commit'],
    ['ephemeral-after-create', 'ephemeral-after-create'],
  ])('%s is read as %s', (given, name) => {
    expect(loadConfig({ VAULT_CRASH_POINT: given }).crashPoint).toBe(name);
  });

  it.each(['nowhere', 'toString', 'constructor'])('refuses %s', (given) => {
    expect(() => loadConfig({ VAULT_CRASH_POINT: given })).toThrow(/^invalid configuration: VAULT_CRASH_POINT: must be one of/);
  });

  it('crash() kills only at the named point', () => {
    const kill = jest.spyOn(process, 'kill').mockImplementation(() => true);
    try {
      const work = new ClaimedWork(loadConfig({ VAULT_CRASH_POINT: 'after-target-change' }));
      work.crash('rotation-after-pending-write');
      work.crash('ephemeral-after-create');
      expect(kill).not.toHaveBeenCalled();
      work.crash('rotation-after-target-change');
      expect(kill).toHaveBeenCalledWith(process.pid, 'SIGKILL');
      new ClaimedWork(loadConfig({})).crash('rotation-before-commit');
      expect(kill).toHaveBeenCalledTimes(1);
    } finally {
      kill.mockRestore();
    }
  });
});

describe('ClaimedWork.drain', () => {
  let warn: jest.SpyInstance;
  beforeEach(() => {
    warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
  });
  afterEach(() => warn.mockRestore());

  const work = () => new ClaimedWork(loadConfig({}));

  /** An in-memory queue: take() hands out the first item not in skip and not taken yet; the log records the order of events. */
  function queue(items: string[], opts: { poisonTake?: string[]; poisonRun?: string[]; failTakeAt?: number } = {}) {
    const taken = new Set<string>();
    const log: string[] = [];
    const skips: string[][] = [];
    let takes = 0;
    let running = 0;
    let maxRunning = 0;
    const o: DrainOptions<string> = {
      name: 'test',
      key: (item) => item,
      batchSize: 2,
      limit: 100,
      take: async (skip) => {
        skips.push([...skip]);
        takes++;
        if (opts.failTakeAt === takes) throw new Error('connection terminated');
        const next = items.find((i) => !taken.has(i) && !skip.includes(i));
        if (next === undefined) return null;
        if (opts.poisonTake?.includes(next)) throw new SkipItem(next, new Error('cannot lock'));
        taken.add(next);
        log.push(`take ${next}`);
        return next;
      },
      run: async (item) => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        log.push(`start ${item}`);
        await new Promise((r) => setTimeout(r, 5));
        running--;
        log.push(`end ${item}`);
        if (opts.poisonRun?.includes(item)) throw new Error('secret in message: hunter2');
      },
    };
    return { o, log, skips, maxRunning: () => maxRunning };
  }

  it('takes a batch, runs it together, then takes the next batch', async () => {
    const q = queue(['a', 'b', 'c']);
    expect(await work().drain(q.o)).toBe(3);
    expect(q.log).toEqual(['take a', 'take b', 'start a', 'start b', 'end a', 'end b', 'take c', 'start c', 'end c']);
    expect(q.maxRunning()).toBe(2);
  });

  it('stops at the limit', async () => {
    const q = queue(['a', 'b', 'c', 'd', 'e']);
    expect(await work().drain({ ...q.o, limit: 3 })).toBe(3);
    expect(q.log.filter((l) => l.startsWith('take'))).toEqual(['take a', 'take b', 'take c']);
  });

  it('returns 0 when there is nothing to take', async () => {
    const q = queue([]);
    expect(await work().drain(q.o)).toBe(0);
  });

  it('a run that throws is logged by key and type (never its message) and the batch and the sweep go on', async () => {
    const q = queue(['a', 'b', 'c', 'd'], { poisonRun: ['a'] });
    expect(await work().drain(q.o)).toBe(4);
    expect(q.log.filter((l) => l.startsWith('end'))).toEqual(['end a', 'end b', 'end c', 'end d']);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0][0]).toEqual({ work: 'test', key: 'a', err: { type: 'Error' } });
    expect(JSON.stringify(warn.mock.calls)).not.toContain('hunter2');
    // the failed item is not offered again in this drain
    expect(q.skips.at(-1)).toEqual(['a']);
  });

  it('a take that throws SkipItem skips that key and goes on', async () => {
    const q = queue(['a', 'b', 'c'], { poisonTake: ['a'] });
    expect(await work().drain(q.o)).toBe(2);
    expect(q.log).toEqual(['take b', 'take c', 'start b', 'start c', 'end b', 'end c']);
    expect(q.skips[1]).toEqual(['a']);
    expect(warn.mock.calls[0][0]).toEqual({ work: 'test', key: 'a', err: { type: 'Error' } });
  });

  it('any other take error ends the drain, after what was taken has run', async () => {
    const q = queue(['a', 'b', 'c'], { failTakeAt: 2 });
    await expect(work().drain(q.o)).rejects.toThrow('connection terminated');
    expect(q.log).toEqual(['take a', 'start a', 'end a']);
  });

  it('settle() waits for a drain that is running', async () => {
    const w = work();
    const q = queue(['a', 'b']);
    const drained = w.drain(q.o);
    await new Promise((r) => setImmediate(r));
    await w.settle();
    expect(q.log).toContain('end b');
    await drained;
  });
});

import { SchedulerService } from './scheduler.service';

/** The scheduler's sweeps with stand-ins for the services they call (the logic of draining a storm, not the services). */
function scheduler(expireDue: (limit: number) => Promise<number>, reap: (limit: number) => Promise<{ lapsed: number; removed: number }>) {
  const noop = async () => 0;
  const svc = new SchedulerService(
    { getIntervals: () => [], deleteInterval: () => undefined, addInterval: () => undefined } as never,
    {} as never,
    {} as never,
    {} as never,
    { expireDue, finishStale: noop } as never,
    { reap } as never,
    { remindExpiring: noop } as never,
    { remindExpiring: noop } as never,
    {} as never,
    {} as never,
    {} as never,
    {} as never,
  );
  return svc;
}

describe('SchedulerService: a storm of due leases is worked off in one sweep', () => {
  it('checkout expiry takes batch after batch while they come back full, and stops at the first short one', async () => {
    let due = 175;
    const limits: number[] = [];
    const svc = scheduler(async (limit) => {
      limits.push(limit);
      const n = Math.min(limit, due);
      due -= n;
      return n;
    }, async () => ({ lapsed: 0, removed: 0 }));
    await svc.checkoutSweep();
    expect(due).toBe(0);
    expect(limits).toEqual([50, 50, 50, 50]);
  });

  it('the reaper too (lapsed requests or removals); and nothing more starts once shutdown began', async () => {
    let due = 120;
    let calls = 0;
    const svc = scheduler(async () => 0, async (limit) => {
      calls++;
      const n = Math.min(limit, due);
      due -= n;
      return { lapsed: 0, removed: n };
    });
    await svc.reaper();
    expect(due).toBe(0);
    expect(calls).toBe(3);
    due = 500;
    calls = 0;
    svc.beforeApplicationShutdown();
    await svc.reaper();
    expect(calls).toBe(1);
  });
});

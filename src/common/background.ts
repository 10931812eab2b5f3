/**
 * Target work a service runs after its transaction committed (rotations, session cleanup, account removal): tracked
 * so that shutdown waits for it instead of closing the database under it.
 */
export class BackgroundWork {
  private readonly running = new Set<Promise<unknown>>();

  async track<T>(p: Promise<T>): Promise<T> {
    this.running.add(p);
    try {
      return await p;
    } finally {
      this.running.delete(p);
    }
  }

  async settle(): Promise<void> {
    while (this.running.size) await Promise.allSettled([...this.running]);
  }
}

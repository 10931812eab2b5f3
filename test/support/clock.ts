import { Clock } from '../../src/common/clock';

/** Real time plus an offset the test moves forward (each TOTP code needs a new 30 s step). */
export class TestClock extends Clock {
  offsetMs = 0;

  override now(): Date {
    return new Date(Date.now() + this.offsetMs);
  }

  advance(ms: number): void {
    this.offsetMs += ms;
  }
}

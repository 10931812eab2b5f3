import { readFileSync } from 'node:fs';

/**
 * The whole machine's busy CPU seconds so far (every core and process, the kernel's softirq work among them), from
 * /proc/stat: the difference over a round, beside the round's seconds × cores, tells how busy the machine was.
 */
export function machineBusySeconds(): number {
  const [, ...fields] = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/);
  const [user, nice, system, _idle, _iowait, irq, softirq, steal] = fields.map(Number);
  return (user + nice + system + irq + softirq + steal) / 100; // USER_HZ; idle and iowait left out
}

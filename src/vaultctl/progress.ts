/**
 * Progress of a batch on stderr: a bar redrawn in place on a terminal, one plain line per finished item
 * otherwise (logs, CI), nothing with --json.
 */
export class Progress {
  private done = 0;
  private readonly counts: Record<string, number> = {};

  constructor(
    private readonly total: number,
    private readonly mode: 'bar' | 'lines' | 'off',
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {
    if (mode === 'bar') this.draw();
  }

  static for(total: number, json: boolean, stream: NodeJS.WriteStream = process.stderr): Progress {
    return new Progress(total, json ? 'off' : stream.isTTY ? 'bar' : 'lines', stream);
  }

  /** One item finished, with its outcome (counted) and a line (shown in lines mode). */
  item(outcome: string, line: string): void {
    this.done += 1;
    this.counts[outcome] = (this.counts[outcome] ?? 0) + 1;
    if (this.mode === 'lines') this.stream.write(`[${this.done}/${this.total}] ${line}\n`);
    if (this.mode === 'bar') this.draw();
  }

  /** A note that must not be mixed into the bar. */
  log(line: string): void {
    if (this.mode === 'off') return;
    if (this.mode === 'bar') this.stream.write('\r\x1b[2K');
    this.stream.write(line + '\n');
    if (this.mode === 'bar') this.draw();
  }

  finish(): void {
    if (this.mode === 'bar') this.stream.write('\n');
  }

  private draw(): void {
    const width = 30;
    const filled = this.total ? Math.round((this.done / this.total) * width) : width;
    const counts = Object.entries(this.counts)
      .map(([k, v]) => `${k} ${v}`)
      .join('  ');
    this.stream.write(`\r\x1b[2K[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${this.done}/${this.total}  ${counts}`);
  }
}

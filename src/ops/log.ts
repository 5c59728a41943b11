// Log lines for the long-running loops of `paychan work` and `settle-now`: a line that repeats what
// its topic said last is not printed again. A loop that fails every poll for an hour prints its error
// once, and when it recovers, how many times it failed; a claim waiting for confirmations says so once.
export type Log = (line: string) => void;

export class QuietLog {
  private readonly last = new Map<string, { line: string; repeats: number }>();

  constructor(private readonly write: Log) {}

  /** Prints `line` unless it is what `topic` printed last. */
  say(topic: string, line: string): void {
    const last = this.last.get(topic);
    if (last?.line === line) {
      last.repeats++;
      return;
    }
    this.last.set(topic, { line, repeats: 0 });
    this.write(line);
  }

  /** The topic's condition is over: prints `line` (with how often the topic's last line repeated), if
   * the topic had said anything, and forgets the topic. */
  end(topic: string, line?: string): void {
    const last = this.last.get(topic);
    if (!last) return;
    this.last.delete(topic);
    if (line) this.write(last.repeats > 0 ? `${line} (after ${last.repeats + 1} rounds of the same)` : line);
  }
}

// Group commit: requests that arrive while a database statement is in flight are decided together in
// the next one. At low load each request commits alone (no added latency); under load one statement
// carries many, which is what lets a paid request cost about as much as an unpaid one.
//
// A batch holds at most one request per key (per channel): each voucher builds on the total the
// previous one left, so a second request on the same channel waits for the next batch, in order.

type Pending<Req, Res> = { request: Req; key: string; resolve: (r: Res) => void; reject: (e: unknown) => void };

/** Told about each committed batch: how many requests it carried and how long its statement took. */
export type CommitObserver = (batch: { size: number; seconds: number; failed: boolean }) => void;

export class GroupCommit<Req, Res> {
  private queue: Pending<Req, Res>[] = [];
  private flushing = false;

  constructor(
    private readonly commit: (requests: Req[]) => Promise<Res[]>,
    private readonly keyOf: (request: Req) => string,
    private readonly maxBatch = 256,
    private readonly observe?: CommitObserver,
  ) {}

  submit(request: Req): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      this.queue.push({ request, key: this.keyOf(request), resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    while (this.queue.length > 0) {
      // Let the event loop read the requests that arrived meanwhile first, so that they join this batch.
      // With an in-process database (PGlite) the statement holds the thread, nothing is read while it
      // runs, and without this turn every statement would carry a single voucher.
      await new Promise((resolve) => setImmediate(resolve));
      const batch = this.take();
      const started = performance.now();
      let failed = false;
      try {
        const results = await this.commit(batch.map((b) => b.request));
        batch.forEach((b, i) => b.resolve(results[i]!));
      } catch (error) {
        failed = true;
        for (const b of batch) b.reject(error);
      }
      this.observe?.({ size: batch.length, seconds: (performance.now() - started) / 1000, failed });
    }
    this.flushing = false;
  }

  /** The oldest requests with distinct keys, up to maxBatch; the rest keep their order in the queue. */
  private take(): Pending<Req, Res>[] {
    const batch: Pending<Req, Res>[] = [];
    const keys = new Set<string>();
    const rest: Pending<Req, Res>[] = [];
    for (const pending of this.queue) {
      if (batch.length < this.maxBatch && !keys.has(pending.key)) {
        keys.add(pending.key);
        batch.push(pending);
      } else {
        rest.push(pending);
      }
    }
    this.queue = rest;
    return batch;
  }
}

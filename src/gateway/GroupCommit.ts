// Group commit: requests that arrive while a database transaction is in flight are committed together
// in the next one. At low load each request commits alone (no added latency); under load one commit
// carries many, which is what lets a paid request cost about as much as an unpaid one.

export class GroupCommit<Req, Res> {
  private queue: { request: Req; resolve: (r: Res) => void; reject: (e: unknown) => void }[] = [];
  private flushing = false;

  constructor(
    private readonly commit: (requests: Req[]) => Promise<Res[]>,
    private readonly maxBatch = 256,
  ) {}

  submit(request: Req): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      this.queue.push({ request, resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      try {
        const results = await this.commit(batch.map((b) => b.request));
        batch.forEach((b, i) => b.resolve(results[i]!));
      } catch (error) {
        for (const b of batch) b.reject(error);
      }
    }
    this.flushing = false;
  }
}

// Books into the journal, in the background, what a store accepted: the keys it charged (channels,
// credit accounts) are collected and booked every `intervalMs` and on close, one booking at a time;
// a key whose booking failed stays for the next one.
export class BackgroundBooking {
  private dirty = new Set<string>();
  private readonly timer: NodeJS.Timeout;
  private booking: Promise<void> = Promise.resolve();

  /** `bookKeys` books the keys and returns those it could not book, each with why. */
  constructor(
    private readonly bookKeys: (keys: string[]) => Promise<{ key: string; error: unknown }[]>,
    private readonly onError: ((error: unknown) => void) | undefined,
    intervalMs = 1_000,
  ) {
    this.timer = setInterval(() => void this.book(), intervalMs);
    this.timer.unref();
  }

  /** Marks a key charged since the last booking. */
  add(key: string): void {
    this.dirty.add(key);
  }

  /** Books the keys charged since the last booking. */
  book(): Promise<void> {
    this.booking = this.booking.then(async () => {
      if (this.dirty.size === 0) return;
      const keys = [...this.dirty];
      this.dirty = new Set();
      try {
        for (const { key, error } of await this.bookKeys(keys)) {
          this.dirty.add(key);
          this.onError?.(error);
        }
      } catch (error) {
        for (const key of keys) this.dirty.add(key);
        this.onError?.(error);
      }
    });
    return this.booking;
  }

  /** Stops the timer after booking what is left. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.book();
  }
}

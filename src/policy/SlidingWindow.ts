// Counts requests and value per key over a sliding window (the last minute, the last hour), in a ring
// of fixed slots: memory per key is constant however fast the key is used, and the window slides one
// slot at a time. Each ring keeps its window's totals, taking out the slots that leave as time moves,
// so reading a key costs the same however many slots the window has (the paid path reads several a
// request). Time comes from the caller, so a test drives it with a fake clock.
//
// The counts live in this process only. The risk policy uses them only to refuse, never to accept:
// with several gateway replicas each counts its own share of the traffic.

/** `count` and `value` are the totals of the slots live at epoch `last`. */
type Ring = { epochs: number[]; counts: number[]; values: bigint[]; last: number; count: number; value: bigint };

export type Usage = { count: number; value: bigint };

export class SlidingWindow {
  private readonly rings = new Map<string, Ring>();
  private adds = 0;

  constructor(
    /** The window's length, in milliseconds. */
    readonly windowMs: number,
    /** Slots the window is cut into: its resolution (a slot's requests leave the window together). */
    readonly slots = 60,
  ) {
    if (!(windowMs > 0) || !Number.isInteger(slots) || slots < 1) throw new RangeError("SlidingWindow: give a positive window and a whole number of slots");
  }

  private get slotMs(): number {
    return this.windowMs / this.slots;
  }

  /** What `key` did within the window ending at `now`. */
  usage(key: string, now: number): Usage {
    const ring = this.rings.get(key);
    if (!ring) return { count: 0, value: 0n };
    const epoch = this.epochOf(now);
    if (epoch >= ring.last) {
      this.advance(ring, epoch);
      return { count: ring.count, value: ring.value };
    }
    // A clock that went back (another thread of time in a test, a skewed host): count slot by slot.
    const oldest = epoch - this.slots + 1;
    let count = 0;
    let value = 0n;
    for (let i = 0; i < this.slots; i++) {
      if (ring.epochs[i]! >= oldest) {
        count += ring.counts[i]!;
        value += ring.values[i]!;
      }
    }
    return { count, value };
  }

  add(key: string, now: number, value = 0n): void {
    const epoch = this.epochOf(now);
    let ring = this.rings.get(key);
    if (!ring) {
      ring = { epochs: new Array<number>(this.slots).fill(-Infinity), counts: new Array<number>(this.slots).fill(0), values: new Array<bigint>(this.slots).fill(0n), last: epoch, count: 0, value: 0n };
      this.rings.set(key, ring);
    }
    this.advance(ring, epoch);
    // Older than the window (a clock that went far back): nothing to count.
    if (epoch <= ring.last - this.slots) return;
    const i = epoch % this.slots;
    // The slot's previous epoch left the window already (advance took it out of the totals).
    if (ring.epochs[i] !== epoch) {
      ring.epochs[i] = epoch;
      ring.counts[i] = 0;
      ring.values[i] = 0n;
    }
    ring.counts[i]!++;
    ring.values[i]! += value;
    ring.count++;
    ring.value += value;
    if (++this.adds % 10_000 === 0) this.sweep(epoch);
  }

  /** Takes back an `add` (a request refused after it was counted), if its slot is still in the window. */
  remove(key: string, at: number, value = 0n): void {
    const ring = this.rings.get(key);
    const epoch = this.epochOf(at);
    const i = epoch % this.slots;
    if (!ring || ring.epochs[i] !== epoch || ring.counts[i]! === 0) return;
    ring.counts[i]!--;
    ring.values[i]! -= value;
    if (epoch > ring.last - this.slots) {
      ring.count--;
      ring.value -= value;
    }
  }

  /**
   * Milliseconds from `now` until `fits` holds for `key`'s usage, as its oldest slots leave the
   * window; 0 if it holds now, undefined if it holds only once the window is empty and not even then.
   */
  waitUntil(key: string, now: number, fits: (usage: Usage) => boolean): number | undefined {
    const usage = this.usage(key, now);
    if (fits(usage)) return 0;
    const ring = this.rings.get(key)!;
    const current = this.epochOf(now);
    const live = [...ring.epochs.keys()].filter((i) => ring.epochs[i]! > current - this.slots).sort((a, b) => ring.epochs[a]! - ring.epochs[b]!);
    let { count, value } = usage;
    for (const i of live) {
      count -= ring.counts[i]!;
      value -= ring.values[i]!;
      if (fits({ count, value })) return (ring.epochs[i]! + this.slots) * this.slotMs - now;
    }
    return undefined;
  }

  /** Keys remembered (each holds one ring). */
  get size(): number {
    return this.rings.size;
  }

  /** Moves the ring's totals to `epoch`, taking out the slots that left the window on the way. */
  private advance(ring: Ring, epoch: number): void {
    if (epoch <= ring.last) return;
    const leaving = Math.min(epoch - ring.last, this.slots);
    for (let x = ring.last - this.slots + 1, end = x + leaving; x < end; x++) {
      const i = ((x % this.slots) + this.slots) % this.slots;
      if (ring.epochs[i] === x) {
        ring.count -= ring.counts[i]!;
        ring.value -= ring.values[i]!;
      }
    }
    ring.last = epoch;
  }

  private epochOf(now: number): number {
    return Math.floor(now / this.slotMs);
  }

  /** Forgets keys with nothing left in the window. */
  private sweep(epoch: number): void {
    for (const [key, ring] of this.rings) if (ring.last <= epoch - this.slots) this.rings.delete(key);
  }
}

// What a gateway process remembers about channels, bounded (least recently used goes first). It never
// makes an acceptance possible — the accept statement decides against the database — it only saves
// work: a channel's terms (immutable: they hash to its id), whether its payer is a contract, refusals
// that can never be undone (closed; a withdrawal inside the margin only gets closer), and the last
// state seen, which a 402 shows so a client that is behind can resync.
import type { Address, Hex } from "viem";
import type { ChannelConfig } from "../protocol/Channel.js";
import type { PaymentError } from "../protocol/Errors.js";

/** A channel's state as the gateway last saw it. */
export type Seen = { acceptedCumulative: bigint; deposit: bigint; owed: bigint };

export type CachedChannel = {
  config: ChannelConfig;
  /** A refusal that stands forever (a closed channel, a withdrawal within the margin). */
  final?: PaymentError;
  /** The accepted total, deposit and metered usage owed last seen, for the 402's `extra.channel`. */
  seen?: Seen;
};

export class LruMap<K, V> {
  private readonly entries = new Map<K, V>();

  constructor(readonly capacity: number) {
    if (!(capacity >= 1)) throw new RangeError("an LRU cache needs a capacity of at least 1");
  }

  get size(): number {
    return this.entries.size;
  }

  get(key: K): V | undefined {
    const value = this.entries.get(key);
    if (value === undefined) return undefined;
    // Map keeps insertion order: re-inserting marks the entry as the most recently used.
    this.entries.delete(key);
    this.entries.set(key, value);
    return value;
  }

  /** Reads without changing the order (for hints on refusals). */
  peek(key: K): V | undefined {
    return this.entries.get(key);
  }

  set(key: K, value: V): void {
    this.entries.delete(key);
    this.entries.set(key, value);
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value as K);
  }
}

export type ChannelCache = LruMap<Hex, CachedChannel>;
export type CodeCache = LruMap<Address, boolean>;

// Pricing policies a seller can put on a route instead of a fixed price, both off unless configured:
//
// - demand pricing: the price sits between a floor and a ceiling, at a level set by the route's recent
//   demand (requests per second, requests in flight) and the time of day, recomputed at most every
//   `recomputeSeconds`. Each computed price is honoured until its `validUntil` (stated in the 402), so
//   a buyer who read a price pays it even if the price moved meanwhile; after that a payment at an
//   old price is refused with `price_expired` and the 402 states the new one.
// - volume tiers: a payer who has paid for `from` requests this month (UTC) or more gets `percentOff`.
//   The count comes from the database (the single source of truth) through a VolumeCounter. A tier is
//   granted only on a count the database returned: this process remembers that count for
//   `volumeRefreshSeconds`, and the count only grows within a month, so a remembered count is never
//   above the database's — it can place a payer in a lower tier (a higher price), never a higher one.
//   Payments this process accepts since are not added to it; they only make it read the database
//   again as soon as they would reach the next tier, so a payer crossing a threshold pays the cheaper
//   price from its next request on.
//
// Demand is measured in this process's memory (DemandMeter): each replica prices by its own load.
// Every figure is exact: the level is a whole number of millionths, and the price table interpolates
// and discounts in rationals and rounds up once (PriceTable.quoteBetween).
import { PriceError, parseDecimal, type Fraction, type PriceSpec, type PriceTable, type Quote } from "./prices.js";

/** The recent demand on one route. */
export type DemandSample = { requestsPerSecond: number; concurrency: number };

/** Where a route's demand is read; the paywall tells it of every request's start and end. */
export interface DemandSource {
  started(nowMs: number): void;
  finished(): void;
  sample(nowMs: number): DemandSample;
}

/** Requests per second over the last `windowSeconds` (whole seconds), and requests in flight. */
export class DemandMeter implements DemandSource {
  private readonly counts: number[];
  private readonly seconds: number[];
  private inFlight = 0;

  constructor(private readonly windowSeconds = 10) {
    if (!Number.isInteger(windowSeconds) || windowSeconds < 1) throw new PriceError(`The demand window must be a whole number of seconds ≥ 1, not ${windowSeconds}.`);
    this.counts = new Array<number>(windowSeconds).fill(0);
    this.seconds = new Array<number>(windowSeconds).fill(-1);
  }

  started(nowMs: number): void {
    const second = Math.floor(nowMs / 1000);
    const slot = second % this.windowSeconds;
    if (this.seconds[slot] !== second) {
      this.seconds[slot] = second;
      this.counts[slot] = 0;
    }
    this.counts[slot]!++;
    this.inFlight++;
  }

  finished(): void {
    this.inFlight = Math.max(0, this.inFlight - 1);
  }

  sample(nowMs: number): DemandSample {
    const now = Math.floor(nowMs / 1000);
    let total = 0;
    for (let slot = 0; slot < this.windowSeconds; slot++) {
      if (now - this.seconds[slot]! < this.windowSeconds) total += this.counts[slot]!;
    }
    return { requestsPerSecond: total / this.windowSeconds, concurrency: this.inFlight };
  }
}

/** How many requests a payer paid for since `monthStart` (any status: a count that only grows). */
export interface VolumeCounter {
  paidSince(payer: string, monthStart: Date): Promise<number>;
}

export type VolumeTier = {
  /** Paid requests this month (UTC) before this one from which the tier applies. */
  from: number;
  /** Whole or decimal percent off the price, below 100 (e.g. 20 for 20 %). */
  percentOff: number;
};

export type DemandPricing = {
  /** The price with no demand. */
  floor: PriceSpec;
  /** The most the route costs, reached at either demand target. */
  ceiling: PriceSpec;
  /** Requests per second (over the meter's window) at which the price reaches the ceiling. */
  ceilingAtRequestsPerSecond?: number;
  /** Requests in flight at which the price reaches the ceiling. */
  ceilingAtConcurrency?: number;
  /** UTC hours [fromHour, toHour) in which the level is at least `level` (0–1): a peak-time price. */
  peak?: { fromHour: number; toHour: number; level: number };
  /** A computed price stands this long before demand is read again (default 10). */
  recomputeSeconds?: number;
  /** How long after it stops being current a price is still honoured, so that a buyer who read it in
   * a 402 has time to pay it (default 30). */
  graceSeconds?: number;
};

export type PricingOptions = {
  /** A fixed price (with tiers only); or give `demand`. */
  price?: PriceSpec;
  demand?: DemandPricing;
  tiers?: VolumeTier[];
  /** Reads paid-request counts from the database; required with tiers. */
  volume?: VolumeCounter;
  /** A remembered count is read again from the database after this long (default 60). */
  volumeRefreshSeconds?: number;
  /** Milliseconds since the epoch (default Date.now); tests inject one. */
  clock?: () => number;
  /** Where demand is read (default: a DemandMeter over 10 s). */
  meter?: DemandSource;
};

/** One computed price: the level and why, until when it is current and until when it is honoured, and
 * its quotes per price table and tier, computed once. */
type Period = { level: Fraction; why: string; currentUntil: number; validUntil: number; quotes: WeakMap<PriceTable, Map<number, Quote>> };

const MILLIONTHS = 1_000_000;
const MAX_PERIODS = 64;
/** Payers whose count one policy remembers; past it the longest-remembered is forgotten (and read
 * again from the database when it pays next), so forged payer addresses cannot grow memory. */
const MAX_PAYERS = 100_000;

/** A route's pricing policy: use it as the route's price in `paywall()`. */
export class RoutePricing {
  private readonly floor: PriceSpec;
  private readonly ceiling: PriceSpec;
  private readonly demand: DemandPricing | undefined;
  private readonly tiers: VolumeTier[];
  private readonly volume: VolumeCounter | undefined;
  private readonly volumeRefreshMs: number;
  private readonly clock: () => number;
  readonly meter: DemandSource;
  /** The current period first, then older ones still honoured. */
  private periods: Period[] = [];
  /** payer → its paid requests since monthStart as the database last counted them, and how many this
   * process accepted since (which only trigger the next read). */
  private readonly counts = new Map<string, { monthStart: number; count: number; readAt: number; since: number }>();

  constructor(options: PricingOptions) {
    if (!options.demand && options.price === undefined) throw new PriceError("A pricing policy needs a price or demand pricing.");
    if (options.demand && options.price !== undefined) throw new PriceError("Give either a fixed price or demand pricing, not both.");
    this.demand = options.demand;
    this.floor = options.demand?.floor ?? options.price!;
    this.ceiling = options.demand?.ceiling ?? options.price!;
    this.tiers = [...(options.tiers ?? [])].sort((a, b) => b.from - a.from);
    this.volume = options.volume;
    this.volumeRefreshMs = 1000 * (options.volumeRefreshSeconds ?? 60);
    this.clock = options.clock ?? Date.now;
    this.meter = options.meter ?? new DemandMeter();
    checkOptions(this.demand, this.tiers, this.volume);
  }

  /** Fails with a PriceError naming the problem when the floor or ceiling cannot be quoted. */
  check(table: PriceTable): void {
    const floor = table.quote(this.floor);
    const ceiling = table.quote(this.ceiling);
    for (const [asset, low] of floor) {
      const high = ceiling.get(asset);
      if (high !== undefined && high < low) throw new PriceError(`The ceiling (${high}) is below the floor (${low}) in ${asset}.`);
    }
  }

  /** Whether a payer's count matters: tiers are configured. */
  get tiered(): boolean {
    return this.tiers.length > 0;
  }

  now(): number {
    return this.clock();
  }

  /** The price now for `payer` (undefined: not known, no tier), recomputed if the current one stood long enough. */
  async quote(table: PriceTable, payer?: string): Promise<Quote> {
    const now = this.clock();
    return this.quoteIn(table, this.current(now), await this.tierOf(payer, now));
  }

  /**
   * The quote a payment stating `amount` (as a scheme's requirements show it: `amountOf`) was made
   * against: the current price or one still honoured, for this payer's tier now. Undefined when the
   * amount matches none (the price expired, or the payer reached a cheaper tier).
   */
  async honoured(table: PriceTable, payer: string | undefined, amountOf: (quote: Quote) => bigint | undefined, amount: bigint): Promise<Quote | undefined> {
    const now = this.clock();
    this.current(now);
    const tier = await this.tierOf(payer, now);
    for (const period of this.periods) {
      if (period.validUntil * 1000 <= now) continue;
      const quote = this.quoteIn(table, period, tier);
      if (amountOf(quote) === amount) return quote;
    }
    return undefined;
  }

  /** A payment by `payer` was accepted by this process: once such payments would reach the next tier,
   * the payer's count is read from the database again. */
  paid(payer: string | undefined): void {
    if (payer === undefined || !this.tiered) return;
    const known = this.counts.get(payer);
    if (known) known.since++;
  }

  /** The current period, computing a new one once the current has stood `recomputeSeconds`. */
  private current(now: number): Period {
    const head = this.periods[0];
    if (head && now < head.currentUntil) return head;
    const { level, why } = this.levelAt(now);
    const recompute = 1000 * (this.demand?.recomputeSeconds ?? 10);
    const grace = 1000 * (this.demand?.graceSeconds ?? 30);
    const period: Period = {
      level,
      why,
      currentUntil: now + recompute,
      validUntil: Math.ceil((now + recompute + grace) / 1000),
      quotes: new WeakMap(),
    };
    // Older periods stay honoured until they expire; the list is short (a period lasts recomputeSeconds).
    this.periods = [period, ...this.periods.filter((p) => p.validUntil * 1000 > now)].slice(0, MAX_PERIODS);
    return period;
  }

  private levelAt(now: number): { level: Fraction; why: string } {
    if (!this.demand) return { level: { numerator: 0n, denominator: 1n }, why: "fixed price" };
    const d = this.demand;
    const { requestsPerSecond, concurrency } = this.meter.sample(now);
    const parts: string[] = [];
    let level = 0;
    if (d.ceilingAtRequestsPerSecond) {
      level = Math.max(level, requestsPerSecond / d.ceilingAtRequestsPerSecond);
      parts.push(`${round(requestsPerSecond)} req/s of ${d.ceilingAtRequestsPerSecond}`);
    }
    if (d.ceilingAtConcurrency) {
      level = Math.max(level, concurrency / d.ceilingAtConcurrency);
      parts.push(`${concurrency} in flight of ${d.ceilingAtConcurrency}`);
    }
    if (d.peak) {
      const hour = new Date(now).getUTCHours();
      const inPeak = d.peak.fromHour <= d.peak.toHour ? hour >= d.peak.fromHour && hour < d.peak.toHour : hour >= d.peak.fromHour || hour < d.peak.toHour;
      if (inPeak) {
        level = Math.max(level, d.peak.level);
        parts.push(`peak hours ${d.peak.fromHour}-${d.peak.toHour} UTC at least ${d.peak.level}`);
      }
    }
    const millionths = Math.min(MILLIONTHS, Math.max(0, Math.round(level * MILLIONTHS)));
    return { level: { numerator: BigInt(millionths), denominator: BigInt(MILLIONTHS) }, why: `demand level ${millionths / MILLIONTHS} (${parts.join(", ") || "no demand targets"})` };
  }

  private quoteIn(table: PriceTable, period: Period, tier: VolumeTier | undefined): Quote {
    const key = tier ? this.tiers.indexOf(tier) : -1;
    let quotes = period.quotes.get(table);
    if (!quotes) period.quotes.set(table, (quotes = new Map()));
    let quote = quotes.get(key);
    if (!quote) {
      const off = tier ? percent(tier.percentOff) : { numerator: 0n, denominator: 1n };
      const why = `${period.why}${tier ? `; volume tier ${tier.from}+ requests this month: ${tier.percentOff}% off` : ""}`;
      quote = table.quoteBetween(this.floor, this.ceiling, period.level, off, this.demand ? { reason: why, validUntil: period.validUntil } : { reason: why });
      quotes.set(key, quote);
    }
    return quote;
  }

  /** The tier `payer` is in now, from its remembered count or the database's. */
  private async tierOf(payer: string | undefined, now: number): Promise<VolumeTier | undefined> {
    if (payer === undefined || !this.tiered) return undefined;
    const monthStart = monthStartOf(now);
    let known = this.counts.get(payer);
    if (!known || known.monthStart !== monthStart || now - known.readAt >= this.volumeRefreshMs || this.mayCross(known)) {
      const count = await this.volume!.paidSince(payer, new Date(monthStart));
      // Counts read concurrently may finish out of order: keep the larger, both the database's.
      const latest = this.counts.get(payer);
      const kept = latest && latest.monthStart === monthStart ? Math.max(latest.count, count) : count;
      known = { monthStart, count: kept, readAt: now, since: 0 };
      this.counts.delete(payer);
      if (this.counts.size >= MAX_PAYERS) this.counts.delete(this.counts.keys().next().value!);
      this.counts.set(payer, known);
    }
    return this.tiers.find((t) => known!.count >= t.from);
  }

  /** Whether the payments this process accepted since the last read may have reached the next tier. */
  private mayCross(known: { count: number; since: number }): boolean {
    if (known.since === 0) return false;
    const next = this.tiers.findLast((t) => t.from > known.count);
    return next !== undefined && known.count + known.since >= next.from;
  }
}

function checkOptions(demand: DemandPricing | undefined, tiers: VolumeTier[], volume: VolumeCounter | undefined): void {
  if (demand) {
    const targets = [demand.ceilingAtRequestsPerSecond, demand.ceilingAtConcurrency];
    for (const target of targets) {
      if (target !== undefined && !(Number.isFinite(target) && target > 0)) throw new PriceError(`A demand target must be a positive number, not ${target}.`);
    }
    if (targets.every((t) => t === undefined) && !demand.peak) throw new PriceError("Demand pricing needs ceilingAtRequestsPerSecond, ceilingAtConcurrency or peak.");
    if (demand.peak) {
      const { fromHour, toHour, level } = demand.peak;
      if (![fromHour, toHour].every((h) => Number.isInteger(h) && h >= 0 && h <= 23)) throw new PriceError(`Peak hours must be whole UTC hours 0–23, not ${fromHour}-${toHour}.`);
      if (!(level >= 0 && level <= 1)) throw new PriceError(`The peak level must be from 0 to 1, not ${level}.`);
    }
    for (const [name, value] of [["recomputeSeconds", demand.recomputeSeconds], ["graceSeconds", demand.graceSeconds]] as const) {
      if (value !== undefined && !(Number.isInteger(value) && value >= (name === "recomputeSeconds" ? 1 : 0))) throw new PriceError(`${name} must be a whole number of seconds, not ${value}.`);
    }
  }
  for (const tier of tiers) {
    if (!Number.isInteger(tier.from) || tier.from < 1) throw new PriceError(`A volume tier's "from" must be a whole number of requests ≥ 1, not ${tier.from}.`);
    if (!(tier.percentOff > 0 && tier.percentOff < 100) || !/^\d+(\.\d{1,4})?$/.test(String(tier.percentOff))) {
      throw new PriceError(`A volume tier's percentOff must be above 0 and below 100 (at most 4 decimals), not ${tier.percentOff}.`);
    }
  }
  if (tiers.length > 0 && !volume) throw new PriceError("Volume tiers need a VolumeCounter (the database's count of a payer's requests).");
}

/** 12.5 → 125/1000, exactly. */
function percent(value: number): Fraction {
  const { numerator, denominator } = parseDecimal(String(value), "A volume tier's percentOff");
  return { numerator, denominator: 100n * denominator };
}

/** The start of the UTC month `ms` falls in, in milliseconds. */
export function monthStartOf(ms: number): number {
  const d = new Date(ms);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}

import { expect } from "chai";
import fc from "fast-check";
import { ConfigError, loadConfig } from "../../src/config.js";
import { PriceError, PriceTable, multiplyPrice } from "../../src/policy/prices.js";
import { DemandMeter, RoutePricing, monthStartOf, type DemandSample, type VolumeCounter } from "../../src/policy/pricing.js";

const ETH = "eip155:31337/native" as const;
const USD = "fiat:USD" as const;

/** A demand source the test sets by hand. */
function fixedDemand(sample: DemandSample = { requestsPerSecond: 0, concurrency: 0 }) {
  return { sample: () => sample, started() {}, finished() {}, set: (next: DemandSample) => Object.assign(sample, next) };
}

describe("route pricing", () => {
  const table = new PriceTable(ETH, { [USD]: { usd: "1", decimals: 6 } });

  it("interpolates between floor and ceiling and discounts exactly, rounding up by less than one unit, never outside the bounds", () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 1n, max: 10n ** 20n }),
        fc.bigInt({ min: 0n, max: 10n ** 20n }),
        fc.integer({ min: 0, max: 1_000_000 }),
        fc.integer({ min: 0, max: 9_999 }),
        (floor, spread, millionths, basisPoints) => {
          const ceiling = floor + spread;
          const level = { numerator: BigInt(millionths), denominator: 1_000_000n };
          const discount = { numerator: BigInt(basisPoints), denominator: 10_000n };
          const amount = table.quoteBetween(floor, ceiling, level, discount, { reason: "test" }).get(ETH)!;
          // exact = (floor + spread·level)·(1 − discount), over the denominator 10^6 · 10^4.
          const denominator = 1_000_000n * 10_000n;
          const numerator = (floor * 1_000_000n + spread * BigInt(millionths)) * (10_000n - BigInt(basisPoints));
          expect(amount * denominator >= numerator, "never below the exact price").to.equal(true);
          expect((amount - 1n) * denominator < numerator, "at most one unit above").to.equal(true);
          if (basisPoints === 0) expect(amount >= floor && amount <= ceiling, "between floor and ceiling").to.equal(true);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("rounds a USD floor and ceiling once, not once per bound", () => {
    // $0.0000005 and $0.0000015 are half a unit and one and a half units of fiat:USD millionths: the
    // midpoint is exactly one unit, which rounding each bound first (1 and 2) would make 2.
    const mid = table.quoteBetween({ usd: "0.0000005" }, { usd: "0.0000015" }, { numerator: 1n, denominator: 2n }, { numerator: 0n, denominator: 1n }, { reason: "" });
    expect(mid.get(USD)).to.equal(1n);
  });

  it("recomputes the price at most every recomputeSeconds and honours a price until its validUntil", async () => {
    let now = Date.UTC(2026, 10, 30, 12, 0, 0);
    const demand = fixedDemand();
    const pricing = new RoutePricing({
      demand: { floor: 100n, ceiling: 200n, ceilingAtRequestsPerSecond: 10, recomputeSeconds: 5, graceSeconds: 10 },
      clock: () => now,
      meter: demand,
    });
    const low = await pricing.quote(table);
    expect(low.get(ETH)).to.equal(100n);
    expect(low.pricing!.validUntil).to.equal(now / 1000 + 15);
    demand.set({ requestsPerSecond: 5, concurrency: 0 });
    now += 4_999;
    expect((await pricing.quote(table)).get(ETH), "not recomputed yet").to.equal(100n);
    now += 1;
    const high = await pricing.quote(table);
    expect(high.get(ETH)).to.equal(150n);
    expect(high.pricing!.reason).to.include("demand level 0.5").and.include("5 req/s of 10");
    const amountOf = (quote: typeof low) => quote.get(ETH);
    expect(await pricing.honoured(table, undefined, amountOf, 100n), "the old price, within its validity").to.equal(low);
    now = low.pricing!.validUntil! * 1000;
    expect(await pricing.honoured(table, undefined, amountOf, 100n), "the old price, expired").to.equal(undefined);
    expect(await pricing.honoured(table, undefined, amountOf, 120n), "a price never quoted").to.equal(undefined);
  });

  it("takes the highest of the demand targets and the peak hours, capped at the ceiling", async () => {
    const now = Date.UTC(2026, 10, 30, 9, 30);
    const demand = fixedDemand({ requestsPerSecond: 1, concurrency: 3 });
    const pricing = new RoutePricing({
      demand: { floor: 1000n, ceiling: 2000n, ceilingAtRequestsPerSecond: 10, ceilingAtConcurrency: 4, peak: { fromHour: 9, toHour: 17, level: 0.5 } },
      clock: () => now,
      meter: demand,
    });
    expect((await pricing.quote(table)).get(ETH)).to.equal(1750n);
    const overloaded = new RoutePricing({ demand: { floor: 1000n, ceiling: 2000n, ceilingAtConcurrency: 4 }, clock: () => now, meter: fixedDemand({ requestsPerSecond: 0, concurrency: 40 }) });
    expect((await overloaded.quote(table)).get(ETH)).to.equal(2000n);
  });

  it("measures requests per second over its window and requests in flight", () => {
    const meter = new DemandMeter(2);
    for (let i = 0; i < 4; i++) meter.started(10_000 + i * 100);
    meter.started(11_500);
    meter.finished();
    expect(meter.sample(11_900)).to.deep.equal({ requestsPerSecond: 2.5, concurrency: 4 });
    expect(meter.sample(12_000).requestsPerSecond, "second 10 left the window").to.equal(0.5);
    expect(meter.sample(20_000).requestsPerSecond).to.equal(0);
  });

  it("grants a tier only on the database's count; a remembered count can only make the price higher", async () => {
    let now = Date.UTC(2026, 10, 30, 23, 57, 0);
    const database = new Map<string, number>();
    const reads: string[] = [];
    const volume: VolumeCounter = {
      async paidSince(payer, monthStart) {
        reads.push(`${payer}@${monthStart.toISOString()}`);
        return monthStart.getTime() === monthStartOf(now) ? (database.get(payer) ?? 0) : 0;
      },
    };
    const pricing = new RoutePricing({ price: 1000n, tiers: [{ from: 2, percentOff: 10 }, { from: 4, percentOff: 12.5 }], volume, volumeRefreshSeconds: 60, clock: () => now });
    const price = async (payer: string) => (await pricing.quote(table, payer)).get(ETH);

    expect(await price("A")).to.equal(1000n);
    database.set("A", 1);
    pricing.paid("A");
    expect(await price("A"), "one paid request: no tier yet, and no reason to read again").to.equal(1000n);
    expect(reads).to.have.length(1);
    database.set("A", 2);
    pricing.paid("A");
    expect(await price("A"), "this process's payments reach the tier: the database confirms it at once").to.equal(900n);
    expect(reads).to.have.length(2);

    // Payments this process believes in but the database does not hold grant nothing.
    expect(await price("B")).to.equal(1000n);
    pricing.paid("B");
    pricing.paid("B");
    expect(await price("B")).to.equal(1000n);

    // Another replica's payments reach this one at the next read: until then the price is higher, never lower.
    database.set("A", 5);
    expect(await price("A")).to.equal(900n);
    now += 60_000;
    expect(await price("A")).to.equal(875n);
    expect((await pricing.quote(table, "A")).pricing!.reason).to.include("volume tier 4+ requests this month: 12.5% off");

    // A new month starts from the database's count for it, not the remembered one.
    database.set("A", 0);
    now += 180_000;
    expect(await price("A"), "a new month").to.equal(1000n);
    expect(reads.at(-1)).to.equal("A@2026-12-01T00:00:00.000Z");
  });

  it("reads `paychan serve`'s sample-route policy from the environment, naming the variable of a bad value", () => {
    expect(loadConfig({}).PRICE_CEILING_MULTIPLE, "off by default").to.equal(undefined);
    expect(loadConfig({}).VOLUME_TIERS, "off by default").to.equal(undefined);
    expect(loadConfig({ VOLUME_TIERS: "10000:20,100000:12.5" }).VOLUME_TIERS).to.deep.equal([
      { from: 10_000, percentOff: 20 },
      { from: 100_000, percentOff: 12.5 },
    ]);
    expect(() => loadConfig({ VOLUME_TIERS: "10000:100" })).to.throw(ConfigError, /VOLUME_TIERS: each tier needs/);
    expect(() => loadConfig({ VOLUME_TIERS: "ten thousand" })).to.throw(ConfigError, /VOLUME_TIERS: must be from:percentOff pairs/);
    expect(() => loadConfig({ PRICE_CEILING_MULTIPLE: "1" })).to.throw(ConfigError, /PRICE_CEILING_MULTIPLE/);
    // The ceiling is the floor times the multiple, exactly, in the floor's own form.
    expect(multiplyPrice(7n, 3n)).to.equal(21n);
    expect(multiplyPrice({ usd: "0.0015", amounts: { [ETH]: 5n } }, 3n)).to.deep.equal({ usd: "0.0045", amounts: { [ETH]: 15n } });
    expect(multiplyPrice({ usd: "0.5" }, 4n)).to.deep.equal({ usd: "2.0" });
  });

  it("refuses a malformed policy with a sentence naming what is wrong", () => {
    const volume: VolumeCounter = { paidSince: async () => 0 };
    expect(() => new RoutePricing({})).to.throw(PriceError, /a price or demand pricing/);
    expect(() => new RoutePricing({ price: 1n, tiers: [{ from: 10, percentOff: 20 }] })).to.throw(PriceError, /VolumeCounter/);
    expect(() => new RoutePricing({ price: 1n, tiers: [{ from: 10, percentOff: 100 }], volume })).to.throw(PriceError, /below 100/);
    expect(() => new RoutePricing({ demand: { floor: 1n, ceiling: 2n } })).to.throw(PriceError, /ceilingAtRequestsPerSecond/);
    expect(() => new RoutePricing({ demand: { floor: 1n, ceiling: 2n, ceilingAtConcurrency: 0 } })).to.throw(PriceError, /positive/);
    expect(() => new RoutePricing({ demand: { floor: 5n, ceiling: 2n, ceilingAtConcurrency: 1 } }).check(table)).to.throw(PriceError, /below the floor/);
  });
});

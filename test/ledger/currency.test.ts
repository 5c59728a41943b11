// Fiat units: the ledger counts millionths so $0.001 prices are exact; a processor counts cents.
import { expect } from "chai";
import fc from "fast-check";
import { baseToMinor, minorToBase, parseMajor } from "../../src/ledger/currency.js";
import { PriceTable } from "../../src/policy/prices.js";

describe("fiat units", () => {
  it("represents a $0.001 price exactly in fiat:USD base units", () => {
    const quote = new PriceTable("fiat:USD", { "fiat:USD": { usd: "1", decimals: 6 } }).quote({ usd: "0.001" });
    expect(quote.get("fiat:USD")).to.equal(1_000n);
  });

  it("converts cents in exactly, and rounds payouts down to whole cents leaving the remainder", () => {
    expect(minorToBase("USD", 500n)).to.equal(5_000_000n);
    expect(minorToBase("JPY", 500n)).to.equal(500_000_000n);
    expect(baseToMinor("USD", 12_345n)).to.deep.equal({ minor: 1n, remainder: 2_345n });
    expect(baseToMinor("USD", 9_999n)).to.deep.equal({ minor: 0n, remainder: 9_999n });
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 10n ** 15n }), fc.constantFrom("USD", "JPY", "KWD"), (base, currency) => {
        const { minor, remainder } = baseToMinor(currency, base);
        expect(minorToBase(currency, minor) + remainder).to.equal(base);
        expect(remainder < minorToBase(currency, 1n)).to.equal(true);
      }),
    );
  });

  it("parses top-up amounts in the currency's unit, refusing more decimals than it has", () => {
    expect(parseMajor("USD", "5.00")).to.equal(500n);
    expect(parseMajor("USD", "5")).to.equal(500n);
    expect(parseMajor("JPY", "500")).to.equal(500n);
    expect(() => parseMajor("USD", "0.001")).to.throw(RangeError, /at most 2 decimals/);
    expect(() => parseMajor("JPY", "5.5")).to.throw(RangeError);
    expect(() => parseMajor("USD", "-1")).to.throw(RangeError);
  });
});

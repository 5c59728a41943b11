import { expect } from "chai";
import fc from "fast-check";
import { PriceError, PriceTable } from "../../src/policy/prices.js";

const ETH = "eip155:31337/native" as const;
const USDC = "eip155:31337/erc20:0x5FbDB2315678afecb367f032d93F642f64180aa3" as const;
const USD = "fiat:USD" as const;

describe("the price table", () => {
  const table = new PriceTable(ETH, { [ETH]: { usd: "3000", decimals: 18 }, [USDC]: { usd: "1", decimals: 6 }, [USD]: { usd: "1", decimals: 2 } });

  it("quotes a bare bigint in the default asset only", () => {
    expect([...table.quote(5n)]).to.deep.equal([[ETH, 5n]]);
  });

  it("converts a USD price to every asset with a rate, exactly where it divides", () => {
    const quote = table.quote({ usd: "0.003" });
    expect(quote.get(ETH)).to.equal(10n ** 12n); // 0.003 / 3000 ETH = 1e-6 ETH
    expect(quote.get(USDC)).to.equal(3_000n);
    expect(quote.get(USD)).to.equal(1n); // 0.3 cent rounds up to a cent
  });

  it("rounds in the seller's favour by less than one base unit, whatever the price and rate", () => {
    const decimal = fc.tuple(fc.bigInt({ min: 0n, max: 10n ** 9n }), fc.nat(12)).map(([n, places]) => ({ n, places }));
    fc.assert(
      fc.property(decimal, decimal, fc.nat(24), (price, rate, decimals) => {
        fc.pre(price.n > 0n && rate.n > 0n);
        const text = ({ n, places }: { n: bigint; places: number }) => {
          const digits = n.toString().padStart(places + 1, "0");
          return places === 0 ? digits : `${digits.slice(0, -places)}.${digits.slice(-places)}`;
        };
        const amount = new PriceTable(USD, { [USD]: { usd: text(rate), decimals } }).quote({ usd: text(price) }).get(USD)!;
        // exact = price × 10^decimals / rate; in integers over the common denominator:
        const exactNumerator = price.n * 10n ** BigInt(decimals) * 10n ** BigInt(rate.places);
        const exactDenominator = 10n ** BigInt(price.places) * rate.n;
        expect(amount * exactDenominator >= exactNumerator, "never below the stated price").to.equal(true);
        expect((amount - 1n) * exactDenominator < exactNumerator, "at most one unit above").to.equal(true);
      }),
      { numRuns: 500 },
    );
  });

  it("lets explicit amounts override the conversion, and offers only named assets without a USD price", () => {
    expect(table.quote({ usd: "1", amounts: { [USD]: 99n } }).get(USD)).to.equal(99n);
    expect([...table.quote({ amounts: { [USDC]: 7n } })]).to.deep.equal([[USDC, 7n]]);
  });

  it("refuses malformed prices and rates with a sentence naming them", () => {
    expect(() => table.quote(0n)).to.throw(PriceError, /positive/);
    expect(() => table.quote({ usd: "-1" })).to.throw(PriceError, /decimal number/);
    expect(() => table.quote({ usd: "1e-3" })).to.throw(PriceError, /decimal number/);
    expect(() => table.quote({ usd: "0" })).to.throw(PriceError, /positive/);
    expect(() => new PriceTable(ETH).quote({ usd: "1" })).to.throw(PriceError, /no asset/);
    expect(() => new PriceTable(ETH, { [ETH]: { usd: "0", decimals: 18 } })).to.throw(PriceError, /rate of/);
    expect(() => new PriceTable(ETH, { [ETH]: { usd: "1", decimals: 1.5 } })).to.throw(PriceError, /decimals/);
  });
});

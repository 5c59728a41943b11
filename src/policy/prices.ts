// One price table: a route's price is stated once — in an asset's base units, in US dollars converted
// per asset with configured rates, or per asset explicitly — and quoted in every asset a payment
// scheme offers. Conversion is exact rational arithmetic on bigints and rounds up: the seller never
// receives less than the stated price, and the buyer pays at most one base unit more.
//
// Assets are named as the ledger names them (src/ledger/asset.ts): `eip155:<chain>/native`,
// `eip155:<chain>/erc20:<address>`, `fiat:<ISO code>`.
import type { Asset } from "../ledger/asset.js";

/** How a route states its price. */
export type PriceSpec =
  /** Base units of the table's default asset (the paychan channel's token). */
  | bigint
  /** US dollars as a decimal string ("0.001"), converted to every asset the table has a rate for;
   * `amounts` overrides the conversion for the assets it names. */
  | { usd: string; amounts?: Partial<Record<Asset, bigint>> }
  /** Base units per asset, stated explicitly; assets not named are not offered. */
  | { amounts: Partial<Record<Asset, bigint>> };

/** What one whole unit of an asset is worth: `usd` dollars (decimal string) for 10^decimals base units. */
export type Rate = { usd: string; decimals: number };

/** A route's price in every asset it can be paid in, in base units. */
export type Quote = ReadonlyMap<Asset, bigint>;

export class PriceError extends Error {
  override readonly name = "PriceError";
}

export class PriceTable {
  private readonly rates: Map<Asset, { numerator: bigint; denominator: bigint; scale: bigint }>;

  constructor(
    /** The asset a bare bigint price is in. */
    readonly defaultAsset: Asset,
    rates: Partial<Record<Asset, Rate>> = {},
  ) {
    this.rates = new Map(
      Object.entries(rates).map(([asset, rate]) => {
        const usd = parseDecimal(rate!.usd, `the USD rate of ${asset}`);
        if (usd.numerator <= 0n) throw new PriceError(`The USD rate of ${asset} must be positive, not ${rate!.usd}.`);
        if (!Number.isInteger(rate!.decimals) || rate!.decimals < 0 || rate!.decimals > 36) {
          throw new PriceError(`The decimals of ${asset} must be a whole number from 0 to 36, not ${rate!.decimals}.`);
        }
        return [asset as Asset, { ...usd, scale: 10n ** BigInt(rate!.decimals) }];
      }),
    );
  }

  /** The price in every asset it can be paid in. Throws a PriceError for a malformed price. */
  quote(spec: PriceSpec): Quote {
    if (typeof spec === "bigint") return new Map([[this.defaultAsset, positive(spec, this.defaultAsset)]]);
    const quote = new Map<Asset, bigint>();
    if ("usd" in spec) {
      const usd = parseDecimal(spec.usd, "a USD price");
      if (usd.numerator <= 0n) throw new PriceError(`A USD price must be positive, not ${spec.usd}.`);
      for (const [asset, rate] of this.rates) {
        // amount = usd × 10^decimals / usdPerUnit, rounded up.
        const numerator = usd.numerator * rate.scale * rate.denominator;
        const denominator = usd.denominator * rate.numerator;
        quote.set(asset, (numerator + denominator - 1n) / denominator);
      }
    }
    for (const [asset, amount] of Object.entries(spec.amounts ?? {})) quote.set(asset as Asset, positive(amount!, asset));
    if (quote.size === 0) throw new PriceError("The price names no asset this gateway has a rate for.");
    return quote;
  }
}

function positive(amount: bigint, asset: string): bigint {
  if (typeof amount !== "bigint" || amount <= 0n) throw new PriceError(`A price in ${asset} must be a positive bigint of base units, not ${String(amount)}.`);
  return amount;
}

/** "12.345" → 12345 / 1000, exactly. */
function parseDecimal(text: string, what: string): { numerator: bigint; denominator: bigint } {
  const match = /^(\d+)(?:\.(\d+))?$/.exec(typeof text === "string" ? text.trim() : "");
  if (!match) throw new PriceError(`${what} must be a decimal number such as "0.001", not ${JSON.stringify(text)}.`);
  const fraction = match[2] ?? "";
  return { numerator: BigInt(match[1]! + fraction), denominator: 10n ** BigInt(fraction.length) };
}

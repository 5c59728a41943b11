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

/** A route's price in every asset it can be paid in, in base units; a price that changes (see
 * pricing.ts) says why it is what it is and until when a payment at it is honoured. */
export type Quote = ReadonlyMap<Asset, bigint> & { readonly pricing?: PriceNote };

/** Why a quote is what it is (stored with the payment, logged) and, for a price that moves with
 * demand, the Unix second until which a payment at it is honoured. */
export type PriceNote = { reason: string; validUntil?: number };

/** An exact non-negative rational: `numerator / denominator`, denominator positive. */
export type Fraction = { numerator: bigint; denominator: bigint };

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
    return new Map([...this.exact(spec)].map(([asset, amount]) => [asset, roundUp(amount)]));
  }

  /**
   * A price `level` of the way from `floor` to `ceiling` (level in [0, 1]), less `discount` (a
   * fraction in [0, 1)), in every asset both name. The whole computation is exact and rounds up once,
   * so the seller never receives less than that price and the buyer pays at most one base unit more —
   * the same promise as `quote`. `note` says why (see PriceNote).
   */
  quoteBetween(floor: PriceSpec, ceiling: PriceSpec, level: Fraction, discount: Fraction, note: PriceNote): Quote {
    const low = this.exact(floor);
    const high = this.exact(ceiling);
    const quote = new Map<Asset, bigint>();
    for (const [asset, f] of low) {
      const c = high.get(asset);
      if (!c) continue;
      // (f + (c − f)·level)·(1 − discount), over one common denominator.
      const between = add(f, multiply(add(c, { numerator: -f.numerator, denominator: f.denominator }), level));
      const kept = multiply(between, { numerator: discount.denominator - discount.numerator, denominator: discount.denominator });
      quote.set(asset, roundUp(kept));
    }
    if (quote.size === 0) throw new PriceError("The floor and the ceiling name no asset in common.");
    return Object.assign(quote, { pricing: note });
  }

  /** The price in every asset, before rounding. */
  private exact(spec: PriceSpec): Map<Asset, Fraction> {
    if (typeof spec === "bigint") return new Map([[this.defaultAsset, whole(positive(spec, this.defaultAsset))]]);
    const exact = new Map<Asset, Fraction>();
    if ("usd" in spec) {
      const usd = parseDecimal(spec.usd, "a USD price");
      if (usd.numerator <= 0n) throw new PriceError(`A USD price must be positive, not ${spec.usd}.`);
      for (const [asset, rate] of this.rates) {
        // amount = usd × 10^decimals / usdPerUnit.
        exact.set(asset, { numerator: usd.numerator * rate.scale * rate.denominator, denominator: usd.denominator * rate.numerator });
      }
    }
    for (const [asset, amount] of Object.entries(spec.amounts ?? {})) exact.set(asset as Asset, whole(positive(amount!, asset)));
    if (exact.size === 0) throw new PriceError("The price names no asset this gateway has a rate for.");
    return exact;
  }
}

/** `spec` times a whole `factor`, exactly, in the same form (dollars stay dollars). */
export function multiplyPrice(spec: PriceSpec, factor: bigint): PriceSpec {
  const amounts = (a: Partial<Record<Asset, bigint>> | undefined) => a && Object.fromEntries(Object.entries(a).map(([asset, amount]) => [asset, amount! * factor]));
  if (typeof spec === "bigint") return spec * factor;
  if (!("usd" in spec)) return { amounts: amounts(spec.amounts)! };
  const usd = parseDecimal(spec.usd, "a USD price");
  const places = usd.denominator.toString().length - 1;
  const digits = (usd.numerator * factor).toString().padStart(places + 1, "0");
  return { usd: places === 0 ? digits : `${digits.slice(0, -places)}.${digits.slice(-places)}`, ...(spec.amounts && { amounts: amounts(spec.amounts) }) };
}

function whole(amount: bigint): Fraction {
  return { numerator: amount, denominator: 1n };
}

function add(a: Fraction, b: Fraction): Fraction {
  return { numerator: a.numerator * b.denominator + b.numerator * a.denominator, denominator: a.denominator * b.denominator };
}

function multiply(a: Fraction, b: Fraction): Fraction {
  return { numerator: a.numerator * b.numerator, denominator: a.denominator * b.denominator };
}

/** The smallest whole number of base units not below `a` (a is non-negative). */
function roundUp(a: Fraction): bigint {
  return (a.numerator + a.denominator - 1n) / a.denominator;
}

function positive(amount: bigint, asset: string): bigint {
  if (typeof amount !== "bigint" || amount <= 0n) throw new PriceError(`A price in ${asset} must be a positive bigint of base units, not ${String(amount)}.`);
  return amount;
}

/** "12.345" → 12345 / 1000, exactly. */
export function parseDecimal(text: string, what: string): Fraction {
  const match = /^(\d+)(?:\.(\d+))?$/.exec(typeof text === "string" ? text.trim() : "");
  if (!match) throw new PriceError(`${what} must be a decimal number such as "0.001", not ${JSON.stringify(text)}.`);
  const fraction = match[2] ?? "";
  return { numerator: BigInt(match[1]! + fraction), denominator: 10n ** BigInt(fraction.length) };
}

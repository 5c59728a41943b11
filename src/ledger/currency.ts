// Fiat amounts in two units: the ledger's base units of `fiat:<currency>`, millionths of the
// currency's unit (so a price of $0.001 is 1,000 and every price table rate is { usd, decimals: 6 }),
// and a card processor's minor units (cents for USD, whole yen for JPY: ISO 4217's exponent). Both
// are bigints; conversion into the ledger is exact, and out of it rounds down to whole minor units,
// leaving the remainder where it was.
import { fiatAsset, type Asset } from "./asset.js";

/** Decimals of every fiat asset in the ledger. */
export const FIAT_DECIMALS = 6;

// ISO 4217 currencies whose minor unit is not the cent (the card networks' list).
const ZERO_DECIMAL = new Set(["BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"]);
const THREE_DECIMAL = new Set(["BHD", "JOD", "KWD", "OMR", "TND"]);

/** An ISO 4217 code, upper case, or a RangeError that names it. */
export function currencyCode(currency: string): string {
  const code = currency.toUpperCase();
  if (!/^[A-Z]{3}$/.test(code)) throw new RangeError(`${JSON.stringify(currency)} is not an ISO 4217 currency code (like USD).`);
  return code;
}

export function creditAsset(currency: string): Asset {
  return fiatAsset(currencyCode(currency));
}

/** Digits of the currency's minor unit: 2 for USD, 0 for JPY, 3 for KWD. */
export function minorExponent(currency: string): number {
  const code = currencyCode(currency);
  return ZERO_DECIMAL.has(code) ? 0 : THREE_DECIMAL.has(code) ? 3 : 2;
}

function scale(currency: string): bigint {
  return 10n ** BigInt(FIAT_DECIMALS - minorExponent(currency));
}

/** Minor units (cents) → ledger base units (millionths), exactly. */
export function minorToBase(currency: string, minor: bigint): bigint {
  return minor * scale(currency);
}

/** Ledger base units → whole minor units, rounded down; `remainder` base units are left over. */
export function baseToMinor(currency: string, base: bigint): { minor: bigint; remainder: bigint } {
  if (base < 0n) throw new RangeError(`cannot pay out a negative amount (${base})`);
  const unit = scale(currency);
  return { minor: base / unit, remainder: base % unit };
}

/** "12.50" in the currency's unit → minor units (1250 cents); refuses more decimals than it has. */
export function parseMajor(currency: string, text: string): bigint {
  const exponent = minorExponent(currency);
  const match = /^(\d{1,15})(?:\.(\d+))?$/.exec(text.trim());
  if (!match || (match[2] ?? "").length > exponent) {
    throw new RangeError(`${JSON.stringify(text)} is not an amount of ${currencyCode(currency)} (at most ${exponent} decimals, like ${exponent ? `5.${"0".repeat(exponent)}` : "500"}).`);
  }
  return BigInt(match[1]! + (match[2] ?? "").padEnd(exponent, "0"));
}

/** Base units as a decimal in the currency's unit, e.g. 1500n → "0.0015" (for people, never for math). */
export function formatBase(base: bigint): string {
  const negative = base < 0n;
  const digits = (negative ? -base : base).toString().padStart(FIAT_DECIMALS + 1, "0");
  const whole = digits.slice(0, -FIAT_DECIMALS);
  const fraction = digits.slice(-FIAT_DECIMALS).replace(/0+$/, "");
  return `${negative ? "-" : ""}${whole}${fraction ? `.${fraction.padEnd(2, "0")}` : ".00"}`;
}

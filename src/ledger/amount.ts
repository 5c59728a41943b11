// Amounts are `bigint` base units everywhere in TypeScript; the database stores them as NUMERIC(78,0),
// which holds every uint256. These convert exactly between bigint and Prisma's Decimal, by way of
// decimal strings, never through a float.
import { Prisma } from "../generated/prisma/client.js";

export type Decimal = Prisma.Decimal;

/** The largest amount a column holds: 78 decimal digits, more than any uint256. */
export const MAX_AMOUNT = 10n ** 78n - 1n;

export function toDecimal(amount: bigint): Decimal {
  if (amount < -MAX_AMOUNT || amount > MAX_AMOUNT) throw new RangeError(`${amount} does not fit NUMERIC(78,0)`);
  return new Prisma.Decimal(amount.toString());
}

/** Accepts what the database hands back for a NUMERIC: a Decimal, or its decimal text. */
export function toBigInt(value: Decimal | string): bigint {
  const text = typeof value === "string" ? value : value.toFixed();
  if (!/^-?\d+$/.test(text)) throw new RangeError(`${text} is not a whole number of base units`);
  return BigInt(text);
}

// Seller payouts in the books, two-phase (TigerBeetle's pending → posted / voided): a payout starts
// PENDING, moving whole minor units (cents) of the seller's SELLER_PAYABLE into PAYOUTS_IN_TRANSIT —
// the sub-cent remainder stays accrued — then is POSTED once the processor has taken the money out of
// the platform balance (PAYOUTS_IN_TRANSIT → FIAT_CLEARING), or VOIDED with the amount back in
// SELLER_PAYABLE. One payout per seller is pending at a time (a partial unique index); a run finds
// the pending one and resumes it with the same idempotency keys before it starts another.
import { randomBytes } from "node:crypto";
import type { FiatPayout } from "../generated/prisma/client.js";
import { accountId } from "./accounts.js";
import type { Asset } from "./asset.js";
import { baseToMinor } from "./currency.js";
import { payoutPending, payoutPosted, payoutVoided } from "./flows.js";
import { inTransaction, postEntry, type Db } from "./postings.js";

export type PayoutRecord = {
  id: string;
  processor: string;
  seller: string;
  destination: string;
  asset: Asset;
  currency: string;
  /** Base units (millionths), a whole number of minor units. */
  amount: bigint;
  amountMinor: bigint;
  status: "PENDING" | "POSTED" | "VOIDED";
  transferRef: string | null;
  payoutRef: string | null;
  reversalRef: string | null;
  error: string | null;
};

/** Registers (or moves) where a seller is paid out. */
export async function setSellerDestination(db: Db, seller: string, destination: string): Promise<void> {
  await db.fiatSeller.upsert({ where: { seller }, create: { seller, destination }, update: { destination, updatedAt: new Date() } });
}

export async function sellersWithDestination(db: Db): Promise<{ seller: string; destination: string }[]> {
  return db.fiatSeller.findMany({ orderBy: { seller: "asc" }, select: { seller: true, destination: true } });
}

/**
 * The seller's pending payout, or a new one when SELLER_PAYABLE has reached `threshold` (base
 * units): its whole minor units, booked PAYOUT_PENDING. Undefined when there is nothing to pay.
 */
export async function startPayout(
  db: Db,
  options: { processor: string; seller: string; destination: string; asset: Asset; currency: string; threshold: bigint },
): Promise<PayoutRecord | undefined> {
  return inTransaction(db, async (tx) => {
    const pending = await tx.fiatPayout.findFirst({ where: { seller: options.seller, status: "PENDING" } });
    if (pending) return record(pending);
    const payable = accountId.sellerPayable(options.seller, options.asset);
    // The seller's account row is the lock two payout runners meet on.
    const [row] = await tx.$queryRaw<{ balance: string }[]>`
      SELECT (credits - debits)::text AS balance FROM ledger_account WHERE id = ${payable} FOR NO KEY UPDATE`;
    const balance = row ? BigInt(row.balance) : 0n;
    if (balance <= 0n || balance < options.threshold) return undefined;
    const { minor } = baseToMinor(options.currency, balance);
    if (minor === 0n) return undefined;
    const amount = balance - baseToMinor(options.currency, balance).remainder;
    const id = `po_${randomBytes(8).toString("hex")}`;
    const created = await tx.fiatPayout.create({
      data: {
        id,
        processor: options.processor,
        seller: options.seller,
        destination: options.destination,
        asset: options.asset,
        currency: options.currency,
        amount: amount.toString(),
        amountMinor: minor.toString(),
      },
    });
    await postEntry(tx, {
      idempotencyKey: `payout:${id}:pending`,
      ...payoutPending({ processor: options.processor, seller: options.seller, asset: options.asset, amount }),
      metadata: { payoutId: id, amountMinor: minor.toString(), destination: options.destination },
    });
    return record(created);
  });
}

/** Remembers what the processor answered so far, so a resumed payout skips the calls that succeeded. */
export async function notePayoutProgress(db: Db, id: string, progress: { transferRef?: string; payoutRef?: string; error?: string | null }): Promise<void> {
  await db.fiatPayout.update({ where: { id }, data: progress });
}

/** The money left the platform balance: PAYOUTS_IN_TRANSIT → FIAT_CLEARING. Idempotent. */
export async function postPayout(db: Db, id: string): Promise<PayoutRecord> {
  return inTransaction(db, async (tx) => {
    const payout = record(await tx.fiatPayout.findUniqueOrThrow({ where: { id } }));
    if (payout.status !== "PENDING") return payout;
    await postEntry(tx, {
      idempotencyKey: `payout:${id}:posted`,
      ...payoutPosted({ processor: payout.processor, asset: payout.asset, amount: payout.amount }),
      metadata: { payoutId: id, transferRef: payout.transferRef, payoutRef: payout.payoutRef },
    });
    return record(await tx.fiatPayout.update({ where: { id }, data: { status: "POSTED", error: null } }));
  });
}

/** The payout failed for good: the amount goes back to SELLER_PAYABLE. Idempotent. */
export async function voidPayout(db: Db, id: string, reason: string, reversalRef?: string): Promise<PayoutRecord> {
  return inTransaction(db, async (tx) => {
    const payout = record(await tx.fiatPayout.findUniqueOrThrow({ where: { id } }));
    if (payout.status !== "PENDING") return payout;
    await postEntry(tx, {
      idempotencyKey: `payout:${id}:voided`,
      ...payoutVoided({ processor: payout.processor, seller: payout.seller, asset: payout.asset, amount: payout.amount }),
      metadata: { payoutId: id, reason, ...(reversalRef && { reversalRef }) },
    });
    return record(await tx.fiatPayout.update({ where: { id }, data: { status: "VOIDED", error: reason, reversalRef: reversalRef ?? null } }));
  });
}

function record(row: FiatPayout): PayoutRecord {
  return {
    id: row.id,
    processor: row.processor,
    seller: row.seller,
    destination: row.destination,
    asset: row.asset as Asset,
    currency: row.currency,
    amount: BigInt(row.amount.toFixed()),
    amountMinor: BigInt(row.amountMinor.toFixed()),
    status: row.status as PayoutRecord["status"],
    transferRef: row.transferRef,
    payoutRef: row.payoutRef,
    reversalRef: row.reversalRef,
    error: row.error,
  };
}

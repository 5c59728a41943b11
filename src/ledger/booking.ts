// Booking accepted vouchers into the journal, per channel in aggregate. The accept statement writes a
// payment row and raises the channel's accepted total; booking later moves the difference between
// that total and what the journal already holds (channel.booked_cumulative) from CHANNEL_AVAILABLE
// to CHANNEL_OWED in one entry per channel — or back, when voids brought the total down. Balances
// are exactly those of one entry per voucher; the journal just has an entry per channel per booking
// instead of one per request.
//
// Who books: the gateway for the channels it accepted on (a few times a second), the chain mirror
// for the channels whose events it books (a claim must see every accepted voucher as owed), a void
// for its channel, and a sweep of every channel at start-up, by the settlement worker and before
// reconciliation — so a gateway that died between accepting and booking loses nothing, it only
// leaves the journal behind its voucher store until the next sweep.
import type { PrismaClient } from "../generated/prisma/client.js";
import { LedgerError, postgresError } from "./errors.js";
import { voucherVoided } from "./flows.js";
import { inTransaction, postEntry, type JsonObject, type Tx } from "./postings.js";
import { sqlOf, type Sql } from "./sql.js";

// Rows locked in id order, like every other writer of channel rows. One entry per channel, keyed
// `vouchers:<channelId>:<booking_seq>`; the channel's accounts exist since its registration.
const BOOK = `
WITH due AS (
  SELECT c.id, c.asset, c.accepted_cumulative - c.booked_cumulative AS delta, c.booked_cumulative AS booked_from,
         c.accepted_cumulative AS booked_to, c.booking_seq + 1 AS seq
  FROM channel c
  WHERE c.accepted_cumulative <> c.booked_cumulative AND ($1::text[] IS NULL OR c.id = ANY($1::text[]))
  ORDER BY c.id
  LIMIT $2
  FOR NO KEY UPDATE OF c
), e AS (
  SELECT due.*, gen_random_uuid() AS entry_id FROM due
), moved AS (
  UPDATE channel c SET booked_cumulative = e.booked_to, booking_seq = e.seq FROM e WHERE c.id = e.id
), entries AS (
  INSERT INTO journal_entry (id, idempotency_key, kind, metadata, posting_count)
  SELECT entry_id, 'vouchers:' || id || ':' || seq,
         (CASE WHEN delta > 0 THEN 'VOUCHER_ACCEPTED' ELSE 'VOUCHER_VOIDED' END)::entry_kind,
         jsonb_build_object('bookedFrom', booked_from::text, 'bookedTo', booked_to::text), 2
  FROM e
), postings AS (
  INSERT INTO posting (entry_id, account_id, asset, side, amount)
  SELECT entry_id, 'channel:' || id || ':available', asset, (CASE WHEN delta > 0 THEN 'DEBIT' ELSE 'CREDIT' END)::side, abs(delta) FROM e
  UNION ALL
  SELECT entry_id, 'channel:' || id || ':owed', asset, (CASE WHEN delta > 0 THEN 'CREDIT' ELSE 'DEBIT' END)::side, abs(delta) FROM e
)
SELECT count(*)::int AS channels FROM e`;

/** Channels booked per statement: bounds one statement's locks and size during a sweep. */
const SWEEP_CHUNK = 5_000;

export type BookingResult = {
  /** Channels whose gap was booked. */
  booked: number;
  /** Channels that could not be booked (an account's balance constraint refused it), with why. */
  failed: { channelId: string; reason: string }[];
};

/**
 * Books every channel whose accepted total is ahead of (or, after voids, behind) the journal: the
 * given channels, or all of them. Safe to run from any number of processes at once: each channel's
 * gap is booked once, under its row lock.
 *
 * One channel the books cannot absorb (say its accepted total was edited below what was claimed)
 * must not stop the others: when a statement over many channels fails on a balance constraint, each
 * is booked alone and the ones that fail are returned. Inside a caller's transaction (`isolate:
 * false`) a failure aborts the transaction, so it is thrown instead.
 */
export async function bookAccepted(sql: Sql, channelIds?: readonly string[], { isolate = true } = {}): Promise<BookingResult> {
  const result: BookingResult = { booked: 0, failed: [] };
  if (channelIds && channelIds.length === 0) return result;
  const ids = channelIds ? [...new Set(channelIds.map((id) => id.toLowerCase()))].sort() : null;
  for (;;) {
    let booked: number;
    try {
      [{ channels: booked }] = (await sql.query<{ channels: number }>(BOOK, [ids, SWEEP_CHUNK], "paychan_book_accepted")) as [{ channels: number }];
    } catch (error) {
      if (!isolate || postgresError(error)?.code !== "23514") throw error;
      return bookEachAlone(sql, ids);
    }
    result.booked += booked;
    if (booked < SWEEP_CHUNK) return result;
  }
}

async function bookEachAlone(sql: Sql, ids: string[] | null): Promise<BookingResult> {
  const due = await sql.query<{ id: string }>(
    `SELECT id FROM channel WHERE accepted_cumulative <> booked_cumulative AND ($1::text[] IS NULL OR id = ANY($1::text[])) ORDER BY id`,
    [ids],
  );
  const result: BookingResult = { booked: 0, failed: [] };
  for (const { id } of due) {
    try {
      const [row] = await sql.query<{ channels: number }>(BOOK, [[id], 1], "paychan_book_accepted");
      result.booked += row!.channels;
    } catch (error) {
      if (postgresError(error)?.code !== "23514") throw error;
      result.failed.push({ channelId: id, reason: postgresError(error)!.message });
    }
  }
  return result;
}

export type VoidResult = { paymentId: string; voidEntryId: string; replayed: boolean };

/**
 * Voids an accepted charge (the paid request failed): books the channel so the charge is in the
 * journal, then reverses exactly its price as a VOUCHER_VOIDED entry (key `voucher-void:<paymentId>`
 * unless given), marks the payment VOIDED and takes its price off the channel's accepted and booked
 * totals. The metered usage its voucher paid off is owed again. The voucher stays held. Idempotent
 * under the same key.
 */
export async function voidPayment(
  prisma: PrismaClient | Tx,
  paymentId: string,
  options: { idempotencyKey?: string; metadata?: JsonObject } = {},
): Promise<VoidResult> {
  const idempotencyKey = options.idempotencyKey ?? `voucher-void:${paymentId}`;
  return inTransaction(prisma, async (tx) => {
    const found = await tx.payment.findUnique({ where: { id: paymentId }, select: { channelId: true } });
    if (!found) throw new LedgerError("PAYMENT_NOT_FOUND", `There is no payment ${paymentId} to void.`);
    const [channel] = await tx.$queryRaw<{ asset: string }[]>`SELECT asset FROM channel WHERE id = ${found.channelId} FOR NO KEY UPDATE`;
    const payment = (await tx.payment.findUnique({ where: { id: paymentId }, include: { voidEntry: true } }))!;
    if (payment.status === "VOIDED") {
      if (payment.voidEntry?.idempotencyKey === idempotencyKey) return { paymentId, voidEntryId: payment.voidEntry.id, replayed: true };
      throw new LedgerError("PAYMENT_ALREADY_VOIDED", `Payment ${paymentId} was already voided.`);
    }
    await bookAccepted(sqlOf(tx), [found.channelId], { isolate: false });
    const price = BigInt(payment.price.toFixed());
    const { entry } = await postEntry(tx, {
      idempotencyKey,
      ...voucherVoided({ channelId: found.channelId as `0x${string}`, asset: channel!.asset as never, amount: price }),
      metadata: { ...options.metadata, paymentId, cumulativeAmount: payment.cumulativeAmount.toFixed() },
    });
    await tx.payment.update({ where: { id: paymentId }, data: { status: "VOIDED", voidEntryId: entry.id } });
    await tx.$executeRaw`
      UPDATE channel SET accepted_cumulative = accepted_cumulative - ${price.toString()}::numeric,
                         booked_cumulative = booked_cumulative - ${price.toString()}::numeric,
                         usage_owed = usage_owed + ${payment.owedPaid.toFixed()}::numeric, updated_at = now()
      WHERE id = ${found.channelId}`;
    return { paymentId, voidEntryId: entry.id, replayed: false };
  });
}
